"""Metrics beyond running means: any Keras metric, gather-then-score with
bounded memory, and a confusion matrix.

All three are :class:`~infer_callbacks.Inferencer` subclasses: they see numpy
arrays one batch (or one device slice) at a time and report scalars at the
end of each validation run.

- :class:`KerasMetric` streams batches into a ``keras.metrics.Metric``
  (AUC, MeanIoU, Precision at thresholds, ...). State: the metric's own.
- :class:`GatherOutputs` keeps every sample's outputs, in dataset order, and
  scores them at the end with any function (scikit-learn's
  ``average_precision_score``, ...). State: the whole set, spilled to a
  temporary directory above ``max_memory_mb``.
- :class:`ConfusionMatrix` counts ``(label, prediction)`` pairs. State:
  ``num_classes**2`` integers. Reports per-class recall and precision and
  an image of the matrix for TensorBoard.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import shutil
import tempfile
import warnings
import weakref
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .inferencer import Inferencer, _names, element_keys

__all__ = ["KerasMetric", "GatherOutputs", "ConfusionMatrix"]


def _describe(names: Sequence[str], arrays: Sequence[Any]) -> str:
    parts = []
    for name, value in zip(names, arrays):
        value = np.asarray(value)
        parts.append(f"{name!r} shape {value.shape} {value.dtype}")
    return ", ".join(parts)


def _batch_length(names: Sequence[str], arrays: Sequence[np.ndarray], who: str) -> int:
    """The common batch dimension of ``arrays``; raises if they differ."""
    lengths = []
    for name, value in zip(names, arrays):
        if np.ndim(value) == 0:
            raise ValueError(
                f"{who} needs fetches with a batch dimension, but {name!r} is a scalar "
                f"(shape ()). Fetch a per-example tensor instead.")
        lengths.append(len(value))
    if len(set(lengths)) > 1:
        raise ValueError(
            f"{who}: the fetches have different batch dimensions in one batch: "
            f"{_describe(names, arrays)}. Every fetch must have one row per example; "
            "reshape or tile it in the tower.")
    return lengths[0]


# --------------------------------------------------------------------------
# KerasMetric


def _stable_name(metric: Any) -> str:
    """``metric.name`` without the ``_<n>`` Keras appends to automatic names
    of later instances (``auc_1``, ``auc_2``...), so the reported key does not
    depend on how many metrics were created before."""
    name = metric.name
    match = re.fullmatch(r"(.+)_\d+", name)
    if match is None:
        return name
    try:
        from keras.src.utils.naming import to_snake_case
    except ImportError:  # private Keras API moved: keep the name as it is
        return name
    return match.group(1) if match.group(1) == to_snake_case(type(metric).__name__) else name


def _short(e: Exception, limit: int = 600) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


class KerasMetric(Inferencer):
    """Any ``keras.metrics.Metric`` as an Inferencer.

    The metric is reset at the start of every validation run, updated with
    every non-empty batch (``metric.update_state(*fetched)``) and read once
    at the end (``metric.result()``). Metrics whose state is a sum of
    per-example terms (AUC, MeanIoU, Precision, Recall, Mean, ...) therefore
    give the same number whatever the batch split.

    Args:
        metric: a ``keras.metrics.Metric`` instance, e.g.
            ``keras.metrics.AUC(from_logits=True)``.
        fetches: the tensor names passed to ``update_state``, **in the order
            of its parameters** (Keras: ``y_true, y_pred[, sample_weight]``),
            e.g. ``["label", "output"]``; or a dict from parameter name to
            tensor name, e.g. ``{"y_true": "label", "y_pred": "output"}``.
        name: the reported name (default: ``metric.name``, without the
            ``_1``, ``_2``... Keras adds to automatic names of later
            instances: ``keras.metrics.AUC()`` is always ``auc``).
        prefix: the key is ``<prefix>_<name>``; ``''`` for just ``<name>``.
        element_names: names of the elements of a vector result (the key of
            element ``i`` is ``<prefix>_<name>_<element_names[i]>``). By
            default a metric with a list of ``thresholds`` (Precision,
            Recall, ...) names them ``at_<threshold>``, any other vector
            result by its index.
        compiled: run ``update_state`` in a ``tf.function`` (traced at most a
            few times: shapes are generalized), 2-6x faster per batch than
            eager, as ``model.compile(metrics=...)`` also traces it. The
            first batch always runs eagerly (metrics that build their state
            lazily do it there); a metric that fails to trace falls back to
            eager by itself. Pass ``False`` for a metric written for eager
            execution only (one that keeps Python counters).

    A scalar result is reported as ``<prefix>_<name>``; a vector or matrix
    result as one scalar per element.

    Example:

    >>> import keras
    >>> auc = KerasMetric(keras.metrics.AUC(), ["label", "prob"])
    >>> auc.before_inference()
    >>> auc.on_fetches([np.array([0, 1, 1]), np.array([0.2, 0.9, 0.6])], 3)
    >>> auc.after_inference()
    {'validation_auc': 1.0}
    """

    def __init__(self, metric: Any, fetches: Sequence[str] | Mapping[str, str] | str,
                 name: str | None = None, prefix: str = "validation", *,
                 element_names: Sequence[str] | None = None, compiled: bool = True):
        import keras

        if isinstance(metric, type) and issubclass(metric, keras.metrics.Metric):
            raise TypeError(
                f"KerasMetric needs a metric instance, not the class {metric.__name__}. "
                f"Pass e.g. KerasMetric(keras.metrics.{metric.__name__}(), {fetches!r}).")
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                "KerasMetric needs a keras.metrics.Metric instance such as "
                f"keras.metrics.AUC(). Received: {metric!r} of type {type(metric).__name__}.")
        self.metric = metric
        if isinstance(fetches, Mapping):
            self._keywords = [str(k) for k in fetches]
            self.fetches = _names(list(fetches.values()), "fetches")
        else:
            self._keywords = None
            self.fetches = _names(fetches, "fetches")
            self._warn_swapped_order()
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")
        self.name = name or _stable_name(metric)
        self.prefix = prefix
        self.element_names = None if element_names is None else [str(e) for e in element_names]
        self.compiled = bool(compiled)
        self._traced: Any = None  # None: not yet; False: cannot trace; else the tf.function
        self._sample_weight_slot: int | None = None

    def _warn_swapped_order(self) -> None:
        if len(self.fetches) >= 2:
            second = self.fetches[1].lower()
            first = self.fetches[0].lower()
            if ("label" in second or second in ("y", "y_true", "target")) and "label" not in first:
                warnings.warn(
                    f"KerasMetric({self.metric.name}) passes the fetches to "
                    f"update_state(y_true, y_pred, ...) in order, so {self.fetches[1]!r} "
                    f"is used as y_pred and {self.fetches[0]!r} as y_true. If that is not "
                    f"intended, pass [{self.fetches[1]!r}, {self.fetches[0]!r}] or a dict "
                    "such as {'y_true': 'label', 'y_pred': 'output'}.",
                    UserWarning, stacklevel=3)

    @property
    def key(self) -> str:
        return f"{self.prefix}_{self.name}" if self.prefix else self.name

    def _before_inference(self) -> None:
        self.metric.reset_state()

    def _get_fetches(self) -> list[str]:
        return list(self.fetches)

    def _on_fetches(self, results) -> None:
        num_samples, _, sample_weight = self.batch_extras()
        if num_samples == 0 or all(np.ndim(r) > 0 and len(r) == 0 for r in results):
            return  # an empty device slice: nothing to add
        args, kwargs = (results, {}) if self._keywords is None else ((), dict(zip(self._keywords, results)))
        if sample_weight is not None and self._takes_set_weights(len(args), kwargs):
            kwargs["sample_weight"] = sample_weight
        if self.compiled and self._traced:
            import tensorflow as tf

            try:
                self._traced(*args, **kwargs)
                return
            except tf.errors.OpError as e:  # raised while running: bad values
                self._raise_rejected(results, e)
            except Exception:  # noqa: BLE001 - raised while tracing, before any update
                self._traced = False  # e.g. Python-side state: stay eager from now on
        try:
            self.metric.update_state(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised with the shapes
            self._raise_rejected(results, e)
        if self.compiled and self._traced is None:
            import tensorflow as tf

            self._traced = tf.function(self.metric.update_state, reduce_retracing=True)

    def _raise_rejected(self, results, e: Exception):
        raise ValueError(
            f"KerasMetric: {type(self.metric).__name__} {self.metric.name!r} rejected the "
            f"fetched values in update_state: {_describe(self.fetches, results)}. "
            f"Check the order of `fetches` (update_state takes "
            f"{self._signature()}) and the shapes the metric expects. "
            f"Original error: {type(e).__name__}: {_short(e)}") from e

    def _takes_set_weights(self, num_args: int, kwargs: dict) -> bool:
        """Whether to pass the validation set's sample weights: ``update_state``
        has a ``sample_weight`` parameter that the fetches do not fill."""
        if self._sample_weight_slot is None:
            try:
                params = list(inspect.signature(self.metric.update_state).parameters)
            except (TypeError, ValueError):
                params = []
            self._sample_weight_slot = params.index("sample_weight") if "sample_weight" in params else -1
        slot = self._sample_weight_slot
        return slot >= 0 and num_args <= slot and "sample_weight" not in kwargs

    def _signature(self) -> str:
        try:
            return str(inspect.signature(self.metric.update_state))
        except (TypeError, ValueError):
            return "(y_true, y_pred, sample_weight=None)"

    def _element_suffixes(self, shape: tuple) -> list[str] | None:
        size = int(np.prod(shape))
        if self.element_names is not None:
            if len(self.element_names) != size:
                raise ValueError(
                    f"KerasMetric({self.name!r}): `element_names` has {len(self.element_names)} "
                    f"names but the result has {size} elements (shape {shape}).")
            return list(self.element_names)
        thresholds = getattr(self.metric, "thresholds", None)
        if len(shape) == 1 and isinstance(thresholds, (list, tuple)) and len(thresholds) == size:
            short = [f"at_{float(t):g}" for t in thresholds]
            return short if len(set(short)) == size else [f"at_{float(t)!r}" for t in thresholds]
        return None

    def _keys(self, shape: tuple) -> list[str]:
        if shape == ():
            return [self.key]
        suffixes = self._element_suffixes(shape)
        if suffixes is None:  # by index, as Inferencer names the elements of any array result
            return element_keys(self.key, shape)
        return [f"{self.key}_{suffix}" for suffix in suffixes]

    def _after_inference(self) -> dict[str, float]:
        value = self.metric.result()
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if value.dtype.kind not in "biuf":
            warnings.warn(
                f"KerasMetric({self.name!r}): result() returned a non-numeric value of dtype "
                f"{value.dtype}; it is not reported. Report it with a custom Inferencer instead.",
                UserWarning, stacklevel=3)
            return {}
        keys = self._keys(value.shape)
        return {k: float(v) for k, v in zip(keys, value.ravel())}

    def result_names(self) -> list[str] | None:
        # A fresh metric's result() has the final shape for most metrics
        # (scalar, or one element per threshold); metrics that build their
        # state on the first update raise here, and the names stay unknown.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = self.metric.result()
            return self._keys(tuple(np.shape(value)))
        except Exception:  # noqa: BLE001 - only a hint for clash detection
            return None

    def __repr__(self) -> str:
        return f"KerasMetric({type(self.metric).__name__} {self.name!r}, {self.fetches!r})"


# --------------------------------------------------------------------------
# GatherOutputs


class GatherOutputs(Inferencer):
    """Keeps every sample's outputs in dataset order and scores them at the end.

    For metrics that need the whole set at once (average precision from
    scikit-learn, ranking metrics, calibration, ...). Batches are kept in the
    order the runner delivers them (dataset order; device slices in replica
    order under data-parallel validation). At the end of the run the batches
    are concatenated and ``score_fn({fetch_name: array})`` is called once;
    it returns ``{name: scalar}`` for the epoch's ``logs``.

    Memory: at most ``max_memory_mb`` of outputs is held in memory (plus one
    batch). When the next batch would exceed it, the held batches are
    appended to one raw file per fetch in a private temporary directory; at
    the end, the set is concatenated in memory only if that copy also fits in
    the budget. Otherwise ``score_fn`` receives read-only ``np.memmap``
    arrays of the files (valid only during the call; the pages it reads are
    page cache, which the kernel can reclaim). The directory is deleted after
    ``score_fn`` returns or raises, at the start of the next run, and when
    the inferencer is garbage collected or the interpreter exits.

    Args:
        fetches: tensor names to gather; all must have the same batch
            dimension in every batch.
        score_fn: ``score_fn(dict_of_arrays) -> dict[str, float]``.
        max_memory_mb: in-memory budget in MiB (> 0) before spilling to disk.
        tmpdir: where to create the spill directory (default: the system's
            temporary directory, ``$TMPDIR``).

    Example:

    >>> def score(out):
    ...     return {"val_mean_score": float(out["score"].mean())}
    >>> g = GatherOutputs(["score"], score)
    >>> g.before_inference()
    >>> g.on_fetches([np.array([0.5, 1.0])], 2); g.on_fetches([np.array([3.0])], 1)
    >>> g.after_inference()
    {'val_mean_score': 1.5}
    """

    def __init__(self, fetches: Sequence[str] | str, score_fn: Callable[[dict], Mapping[str, Any]],
                 *, max_memory_mb: float = 512, tmpdir: str | os.PathLike | None = None):
        self.fetches = _names(fetches, "fetches")
        if len(set(self.fetches)) != len(self.fetches):
            raise ValueError(f"`fetches` lists a name twice: {self.fetches!r}")
        if not callable(score_fn):
            raise TypeError(
                "`score_fn` must be a function of a dict of arrays returning "
                f"{{name: scalar}}. Received: {score_fn!r}")
        if (isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float))
                or not math.isfinite(max_memory_mb) or max_memory_mb <= 0):
            raise ValueError(
                "`max_memory_mb` must be a positive number of MiB (outputs above it "
                f"are spilled to disk). Received: max_memory_mb={max_memory_mb!r}")
        self.score_fn = score_fn
        self.max_memory_mb = max_memory_mb
        self.max_memory_bytes = int(max_memory_mb * 2**20)
        self.tmpdir = None if tmpdir is None else os.fspath(tmpdir)
        self._spill_dir: str | None = None
        self._finalizer = None
        self._reset()

    # -- state --------------------------------------------------------------

    def _reset(self) -> None:
        self._pieces: list[list[np.ndarray]] = [[] for _ in self.fetches]
        self._specs: list[tuple[tuple, np.dtype]] | None = None
        self._held_bytes = 0
        self._num_samples = 0
        self._spilled_samples = 0
        self._files: list[Any] | None = None
        #: statistics of the last run (for tests and benchmarks)
        self.num_spills = 0
        self.peak_held_bytes = 0

    @property
    def spill_dir(self) -> str | None:
        """The temporary directory of the current run, if it spilled."""
        return self._spill_dir

    def _cleanup(self) -> None:
        files, self._files = self._files, None
        for f in files or []:
            try:
                f.close()
            except OSError:
                pass
        if self._finalizer is not None:
            self._finalizer()  # removes the directory (once)
            self._finalizer = None
        self._spill_dir = None

    def _before_inference(self) -> None:
        self._cleanup()  # a run that raised half-way may have left files
        self._reset()

    def _get_fetches(self) -> list[str]:
        return list(self.fetches)

    # -- per batch ----------------------------------------------------------

    def _on_fetches(self, results) -> None:
        arrays = [np.asarray(r) for r in results]
        n = _batch_length(self.fetches, arrays, "GatherOutputs")
        specs = [(a.shape[1:], a.dtype) for a in arrays]
        if self._specs is None:
            self._specs = specs
        elif specs != self._specs:
            for name, (shape, dtype), (shape0, dtype0) in zip(self.fetches, specs, self._specs):
                if shape != shape0 or dtype != dtype0:
                    raise ValueError(
                        f"GatherOutputs: {name!r} changed from per-example shape {shape0} "
                        f"{dtype0} to {shape} {dtype} between batches; the gathered arrays "
                        "are concatenated, so pad it to a fixed shape in the tower or gather "
                        "it with a custom Inferencer.")
        if n == 0:
            return
        # Own copies: views would keep the runner's whole multi-batch buffers
        # alive and make the memory accounting wrong.
        arrays = [a if a.flags.owndata and a.flags.c_contiguous else np.array(a, order="C")
                  for a in arrays]
        size = sum(a.nbytes for a in arrays)
        if self._held_bytes and self._held_bytes + size > self.max_memory_bytes:
            self._spill()
        for pieces, a in zip(self._pieces, arrays):
            pieces.append(a)
        self._held_bytes += size
        self._num_samples += n
        self.peak_held_bytes = max(self.peak_held_bytes, self._held_bytes)
        if self._held_bytes > self.max_memory_bytes:  # one batch above the budget
            self._spill()

    def _spill(self) -> None:
        """Append the held batches to the per-fetch files."""
        if self._files is None:
            for name, (_, dtype) in zip(self.fetches, self._specs):
                if dtype.hasobject:
                    raise ValueError(
                        f"GatherOutputs cannot spill {name!r} (dtype {dtype}, e.g. strings) "
                        f"to disk; it would exceed max_memory_mb={self.max_memory_mb}. "
                        "Raise max_memory_mb or fetch numeric tensors.")
            self._spill_dir = tempfile.mkdtemp(prefix="infer_callbacks_gather_", dir=self.tmpdir)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._spill_dir, ignore_errors=True)
            self._files = [open(os.path.join(self._spill_dir, f"{i}.raw"), "wb")
                           for i in range(len(self.fetches))]
        for f, pieces in zip(self._files, self._pieces):
            for a in pieces:
                a.tofile(f)
            pieces.clear()
        self._spilled_samples = self._num_samples
        if self._held_bytes:
            self.num_spills += 1
        self._held_bytes = 0

    # -- end of run ---------------------------------------------------------

    def _gathered(self) -> dict[str, np.ndarray]:
        specs = self._specs or [((), np.dtype(np.float64))] * len(self.fetches)
        largest = max((sum(a.nbytes for a in pieces) for pieces in self._pieces), default=0)
        if self._files is None and self._held_bytes + largest > self.max_memory_bytes:
            # Concatenating would need one more copy of the largest fetch,
            # above the budget: spill instead, and hand out memmaps.
            self._spill()
        if self._files is None:
            out = {}
            for i, (name, (shape, dtype)) in enumerate(zip(self.fetches, specs)):
                pieces, self._pieces[i] = self._pieces[i], []
                out[name] = np.concatenate(pieces) if pieces else np.empty((0,) + shape, dtype)
                del pieces
            return out
        self._spill()
        for f in self._files:
            f.close()
        out = {}
        for i, (name, (shape, dtype)) in enumerate(zip(self.fetches, specs)):
            path = os.path.join(self._spill_dir, f"{i}.raw")
            full = (self._num_samples,) + shape
            if self._num_samples == 0 or dtype.itemsize == 0 or 0 in shape:
                out[name] = np.empty(full, dtype)
            else:
                out[name] = np.memmap(path, dtype=dtype, mode="r", shape=full)
        return out

    def _after_inference(self) -> dict[str, float]:
        try:
            gathered = self._gathered()
            scores = self.score_fn(gathered)
            del gathered
            return scores  # checked by Inferencer.after_inference
        finally:
            self._pieces = [[] for _ in self.fetches]
            self._held_bytes = 0
            self._cleanup()

    @property
    def num_samples(self) -> int:
        """How many samples the current (or last) run gathered."""
        return self._num_samples


# --------------------------------------------------------------------------
# ConfusionMatrix


def _is_one_hot(value: np.ndarray) -> bool:
    return value.size > 0 and bool(np.all((value == 0) | (value == 1))) and bool(np.all(value.sum(-1) == 1))


def _class_ids(value: np.ndarray, other: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    """Class ids from ids, one-hot labels or scores. The argmax over the last
    axis is taken when ``value`` has one more axis than ``other``, or when
    both have the same rank (at least 2), a last axis of ``num_classes`` and
    ``value`` is floating (one-hot labels next to scores)."""
    value = np.asarray(value)
    other = np.asarray(other)
    last_is_classes = value.ndim >= 1 and value.shape[-1] == num_classes
    if last_is_classes and value.ndim == other.ndim + 1:
        return np.argmax(value, axis=-1).astype(np.int64)  # scores or one-hot next to ids
    if last_is_classes and value.ndim == other.ndim >= 2 and other.shape[-1] == num_classes:
        # Same shapes: one-hot labels / scores, or class ids whose last axis
        # happens to be num_classes long. Only a tensor that is not exactly
        # one-hot per row *and* holds non-integers is unambiguous scores.
        one_hot = _is_one_hot(value)
        if one_hot or (value.dtype.kind == "f" and np.any(np.mod(value, 1) != 0)) or _is_one_hot(other):
            return np.argmax(value, axis=-1).astype(np.int64)
    if value.dtype.kind == "f":
        fractional = np.mod(value, 1) != 0
        if np.any(fractional):
            raise ValueError(
                f"ConfusionMatrix: {name!r} holds non-integer values (e.g. "
                f"{value[fractional].ravel()[0]!r}) but is not scores with a last axis of "
                f"num_classes={num_classes} (shape {value.shape}). Pass class ids, "
                "one-hot labels, or scores with one column per class.")
    elif value.dtype.kind not in "biu":
        raise ValueError(f"ConfusionMatrix: {name!r} must be numeric; got dtype {value.dtype}.")
    return value.astype(np.int64)


def render_matrix(matrix: np.ndarray, *, cell: int | None = None) -> np.ndarray:
    """A confusion matrix as an ``H x W x 3`` uint8 heat map (numpy only).

    Each row is normalized by its total (the true class's count), so the
    diagonal shows per-class recall: white is 0, dark blue is 1, on a
    square-root scale so that small confusions are visible. Cells are
    ``cell`` pixels wide (default: about 384 pixels in all, 1 to 32 per
    cell), with a one-pixel grey grid when cells are at least 6 pixels.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    totals = matrix.sum(axis=1, keepdims=True)
    frac = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    low = np.array([255.0, 255.0, 255.0])
    high = np.array([8.0, 48.0, 107.0])
    rgb = low + np.sqrt(frac)[..., None] * (high - low)  # n x n x 3; sqrt: small confusions show
    if cell is None:
        cell = int(min(32, max(1, 384 // max(n, 1))))
    image = np.kron(rgb, np.ones((cell, cell, 1)))
    if cell >= 6:
        image[::cell, :, :] = 160.0
        image[:, ::cell, :] = 160.0
        image = np.pad(image, ((0, 1), (0, 1), (0, 0)), constant_values=160.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class ConfusionMatrix(Inferencer):
    """Counts ``(label, prediction)`` pairs; reports the mean per-class recall
    and precision, per-class values to the monitors, and an image of the
    matrix for TensorBoard.

    Rows are true classes, columns predicted classes (scikit-learn's
    ``confusion_matrix`` convention). State: ``num_classes**2`` int64 counts,
    whatever the set size.

    Args:
        label: tensor of true class ids (any shape, e.g. per-pixel) or of
            one-hot labels (one more axis, of size ``num_classes``).
        pred: tensor of predicted class ids, or of scores/logits with one
            more axis of size ``num_classes`` (argmax is taken).
        num_classes: the number of classes; ids must be in ``[0, num_classes)``.
        prefix: ``logs`` get ``<prefix>_mean_recall`` (balanced accuracy) and
            ``<prefix>_mean_precision`` (macro averages over all classes);
            the monitors also get ``<prefix>_recall_<class>`` and
            ``<prefix>_precision_<class>`` (:meth:`monitor_only_results`).
        class_names: names used in the keys instead of the class ids.
        image: also produce an image ``<prefix>_confusion_matrix`` (rows
            normalized; written by ``TFEventWriter``).

    Recall (precision) of a class with no true (predicted) example is 0, as
    scikit-learn's ``zero_division=0``. The last matrix is :attr:`matrix`.
    Counts are not weighted by the set's sample weights.

    Example:

    >>> cm = ConfusionMatrix("label", "pred", num_classes=2, image=False)
    >>> cm.before_inference()
    >>> cm.on_fetches([np.array([0, 1, 1]), np.array([0, 1, 0])], 3)
    >>> cm.after_inference()
    {'validation_mean_recall': 0.75, 'validation_mean_precision': 0.75}
    >>> cm.monitor_only_results()
    {'validation_recall_0': 1.0, 'validation_recall_1': 0.5, 'validation_precision_0': 0.5, 'validation_precision_1': 1.0}
    """

    def __init__(self, label: str, pred: str, num_classes: int, *, prefix: str = "validation",
                 class_names: Sequence[str] | None = None, image: bool = True):
        self.label = _names(label, "label")[0]
        self.pred = _names(pred, "pred")[0]
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise ValueError(
                f"`num_classes` must be a positive integer. Received: num_classes={num_classes!r}")
        self.num_classes = int(num_classes)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != self.num_classes or len(set(class_names)) != len(class_names):
                raise ValueError(
                    f"`class_names` must be {self.num_classes} distinct names, one per class. "
                    f"Received {len(class_names)}: {class_names!r}")
        self.class_names = class_names
        self.prefix = prefix
        self.image = bool(image)
        self._matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """The confusion matrix of the current (or last) run (a copy)."""
        return self._matrix.copy()

    def _key(self, what: str, c: int) -> str:
        name = self.class_names[c] if self.class_names else str(c)
        return f"{self.prefix}_{what}_{name}" if self.prefix else f"{what}_{name}"

    @property
    def image_name(self) -> str:
        return f"{self.prefix}_confusion_matrix" if self.prefix else "confusion_matrix"

    def _before_inference(self) -> None:
        self._matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def _get_fetches(self) -> list[str]:
        return [self.label, self.pred]

    def _on_fetches(self, results) -> None:
        label, pred = np.asarray(results[0]), np.asarray(results[1])
        if label.size == 0 and pred.size == 0:
            return
        n = self.num_classes
        # Keras-style sparse labels (or ids) of shape (batch, 1)
        label = label[..., 0] if label.ndim >= 2 and label.shape[-1] == 1 else label
        pred = pred[..., 0] if pred.ndim >= 2 and pred.shape[-1] == 1 else pred
        label_ids = _class_ids(label, pred, n, self.label)
        pred_ids = _class_ids(pred, label, n, self.pred)
        if label_ids.shape != pred_ids.shape:
            raise ValueError(
                f"ConfusionMatrix: {self.label!r} (shape {label.shape}) and {self.pred!r} "
                f"(shape {pred.shape}) give {label_ids.shape} and {pred_ids.shape} class ids; "
                "they must match.")
        for name, ids in ((self.label, label_ids), (self.pred, pred_ids)):
            bad = (ids < 0) | (ids >= n)
            if np.any(bad):
                raise ValueError(
                    f"ConfusionMatrix: {name!r} has class id {int(ids[bad].ravel()[0])}, "
                    f"outside [0, num_classes={n}).")
        counts = np.bincount((label_ids * n + pred_ids).ravel(), minlength=n * n)
        self._matrix += counts.reshape(n, n)

    def _rates(self) -> tuple[np.ndarray, np.ndarray]:
        m = self._matrix
        tp = np.diag(m).astype(np.float64)
        true = m.sum(axis=1).astype(np.float64)
        predicted = m.sum(axis=0).astype(np.float64)
        recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        return recall, precision

    def _headline_keys(self) -> list[str]:
        return [self._plain_key("mean_recall"), self._plain_key("mean_precision")]

    def _plain_key(self, what: str) -> str:
        return f"{self.prefix}_{what}" if self.prefix else what

    def _after_inference(self) -> dict[str, float]:
        recall, precision = self._rates()
        return dict(zip(self._headline_keys(), (float(recall.mean()), float(precision.mean()))))

    def monitor_only_results(self) -> dict[str, float]:
        """Per-class recall and precision, for the monitors (not ``logs``)."""
        recall, precision = self._rates()
        out = {self._key("recall", c): float(recall[c]) for c in range(self.num_classes)}
        out.update({self._key("precision", c): float(precision[c]) for c in range(self.num_classes)})
        return out

    def after_inference_images(self) -> dict[str, np.ndarray]:
        if not self.image:
            return {}
        return {self.image_name: render_matrix(self._matrix)}

    def result_names(self) -> list[str]:
        return self._headline_keys()

    def __repr__(self) -> str:
        return f"ConfusionMatrix({self.label!r}, {self.pred!r}, num_classes={self.num_classes})"
