"""The ``Inferencer`` plugin protocol and the scalar built-ins.

Inferencers see numpy arrays only; the runner owns TensorFlow.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Sequence

import numpy as np

__all__ = ["Inferencer", "ScalarStats", "ClassificationError", "BinaryClassificationStats"]


class Inferencer:
    """Turns per-batch tensors into epoch-level numbers.

    The runner drives every inferencer through one validation run like this::

        inf.before_inference()                   # -> _before_inference()
        names = inf.get_fetches()                # -> _get_fetches(), once
        for batch in validation_set:             # (per device slice under
            inf.on_fetches(results, num_samples) #  data-parallel validation)
                                                 # -> _on_fetches(results)
        logs.update(inf.after_inference())       # -> _after_inference()

    ``results`` is a list of numpy arrays in the order of ``_get_fetches()``.
    ``_after_inference`` returns ``{name: scalar}`` (or ``None``); the runner
    puts those into the epoch's ``logs``, where History, EarlyStopping and the
    monitors find them.

    Example, a tensorpack-style custom inferencer:

    >>> class MaxAbsError(Inferencer):
    ...     def _before_inference(self):
    ...         self.worst = 0.0
    ...     def _get_fetches(self):
    ...         return ["output", "label"]
    ...     def _on_fetches(self, results):
    ...         pred, label = results
    ...         if len(pred):
    ...             self.worst = max(self.worst, float(np.abs(pred.ravel() - label.ravel()).max()))
    ...     def _after_inference(self):
    ...         return {"validation_max_abs_error": self.worst}

    Override the underscore hooks; the runner calls the public ones.
    """

    def _before_inference(self) -> None:
        """Reset state; called at the start of every validation run."""

    def _get_fetches(self) -> list[str]:
        """Names of the tensors this inferencer needs, in order."""
        raise NotImplementedError(
            f"{type(self).__name__} must override `_get_fetches()` to return the "
            "list of tensor names it needs."
        )

    def _on_fetches(self, results: list[np.ndarray]) -> None:
        """Consume one batch of fetched values (numpy, in fetch order)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override `_on_fetches(results)`."
        )

    def _after_inference(self) -> dict[str, float] | None:
        """Return the run's results as ``{name: scalar}``, or ``None``."""
        return None

    # -- public API called by the runner ------------------------------------

    def before_inference(self) -> None:
        self._before_inference()

    def get_fetches(self) -> list[str]:
        fetches = self._get_fetches()
        if isinstance(fetches, str) or not isinstance(fetches, (list, tuple)):
            raise TypeError(
                f"{type(self).__name__}._get_fetches() must return a list of tensor "
                f"names. It returned {fetches!r}."
            )
        if not fetches:
            raise ValueError(
                f"{type(self).__name__}._get_fetches() returned an empty list; an "
                "inferencer needs at least one tensor name."
            )
        for name in fetches:
            if not isinstance(name, str):
                raise TypeError(
                    f"{type(self).__name__}._get_fetches() must return strings. "
                    f"It returned {name!r} in {list(fetches)!r}."
                )
        return list(fetches)

    def on_fetches(self, results: list[np.ndarray], num_samples: int | None = None) -> None:
        """Called by the runner once per batch; ``num_samples`` is the batch's
        sample count (``None`` when the batch has no batch dimension)."""
        self._on_fetches(results)

    def after_inference(self) -> dict[str, float]:
        results = self._after_inference()
        if results is None:
            return {}
        if not isinstance(results, dict):
            raise TypeError(
                f"{type(self).__name__}._after_inference() must return a dict of "
                f"{{name: scalar}} or None. It returned {type(results).__name__}: {results!r}."
            )
        clean = {}
        for key, value in results.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{type(self).__name__}._after_inference() returned a non-string "
                    f"key {key!r}; result names must be strings."
                )
            clean[key] = _as_scalar(value, f"{type(self).__name__}._after_inference()[{key!r}]")
        return clean

    def after_inference_images(self) -> dict[str, np.ndarray]:
        """Images to show in TensorBoard for this run, ``{name: HxWxC uint8
        array}``; called by the runner just before ``after_inference``.
        Default: none."""
        return {}

    def result_names(self) -> list[str] | None:
        """The keys ``_after_inference`` will return, when known in advance
        (used to detect clashes before training). ``None`` if unknown."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._get_fetches_safe())})"

    def _get_fetches_safe(self) -> list[str]:
        try:
            return [repr(n) for n in self._get_fetches()]
        except Exception:  # noqa: BLE001 - only for repr
            return []


def _as_scalar(value: Any, where: str) -> float:
    if isinstance(value, (numbers.Real, np.number, np.bool_)) and not isinstance(value, complex):
        return float(value)
    array = np.asarray(value) if not hasattr(value, "numpy") else np.asarray(value.numpy())
    if array.shape == () and array.dtype.kind in "biuf":
        return float(array)
    raise ValueError(
        f"{where} must be a scalar (a Python or numpy number). Received a value of "
        f"type {type(value).__name__} with shape {getattr(array, 'shape', None)}; "
        "reduce it to one number or report each element under its own name."
    )


def _names(names: str | Sequence[str], arg: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"`{arg}` must be a tensor name or a non-empty list of names. Received: {names!r}")
    return names


def _warn_nonfinite(total: float, name: str, key: str) -> None:
    if not math.isfinite(total):
        warnings.warn(
            f"Tensor {name!r} had NaN or infinite values during validation; "
            f"{key} is reported as {total}.",
            RuntimeWarning,
            stacklevel=3,
        )


class ScalarStats(Inferencer):
    """The mean of each named tensor over the whole validation set.

    A per-example tensor (leading dimension = batch) is averaged over all its
    elements, so the result equals ``np.mean`` over the concatenated set. A
    scalar per batch (e.g. a batch's mean cost) is weighted by the batch's
    sample count. Sums are float64. Reports ``<prefix>_<name>``.

    Args:
        names: a tensor name or a list of names.
        prefix: the prefix of the reported keys.

    Example:

    >>> s = ScalarStats("loss")
    >>> s.before_inference()
    >>> s.on_fetches([np.array([1.0, 2.0])], 2); s.on_fetches([np.array([6.0])], 1)
    >>> s.after_inference()
    {'validation_loss': 3.0}
    """

    def __init__(self, names: str | Sequence[str], prefix: str = "validation"):
        self.names = _names(names, "names")
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def _before_inference(self) -> None:
        self._sums = np.zeros(len(self.names), np.float64)
        self._counts = np.zeros(len(self.names), np.float64)

    def _get_fetches(self) -> list[str]:
        return list(self.names)

    def on_fetches(self, results, num_samples=None) -> None:
        for i, value in enumerate(results):
            value = np.asarray(value)
            if value.ndim == 0:
                weight = 1 if num_samples is None or num_samples < 0 else int(num_samples)
                if weight:
                    self._sums[i] += float(value) * weight
                    self._counts[i] += weight
            else:
                self._sums[i] += np.sum(value, dtype=np.float64)
                self._counts[i] += value.size

    def _on_fetches(self, results) -> None:
        self.on_fetches(results)

    def _after_inference(self) -> dict[str, float]:
        out = {}
        for i, name in enumerate(self.names):
            key = self._key(name)
            out[key] = float(self._sums[i] / self._counts[i]) if self._counts[i] else float("nan")
            _warn_nonfinite(out[key], name, key)
        return out

    def result_names(self) -> list[str]:
        return [self._key(n) for n in self.names]


class ClassificationError(Inferencer):
    """The fraction of wrong predictions over the whole set.

    Fetches a per-example vector that is 1 (or True) where the prediction is
    wrong, e.g. the ``wrong-top1`` that the default Keras tower exposes, and
    reports its sample-weighted mean.

    Args:
        wrong_tensor_name: the per-example "is wrong" tensor.
        summary_name: the reported key.

    Example:

    >>> e = ClassificationError()
    >>> e.before_inference()
    >>> e.on_fetches([np.array([1, 0, 0])], 3); e.on_fetches([np.array([1])], 1)
    >>> e.after_inference()
    {'validation_error': 0.5}
    """

    def __init__(self, wrong_tensor_name: str = "wrong-top1", summary_name: str = "validation_error"):
        self.wrong_tensor_name = _names(wrong_tensor_name, "wrong_tensor_name")[0]
        self.summary_name = summary_name

    def _before_inference(self) -> None:
        self._wrong = 0.0
        self._count = 0

    def _get_fetches(self) -> list[str]:
        return [self.wrong_tensor_name]

    def on_fetches(self, results, num_samples=None) -> None:
        wrong = np.asarray(results[0])
        if wrong.ndim == 0:
            raise ValueError(
                f"ClassificationError needs a per-example vector for "
                f"{self.wrong_tensor_name!r}, but the tower gave a scalar per batch. "
                "Return the unreduced 0/1 vector (shape [batch]) from the tower."
            )
        if num_samples is not None and num_samples >= 0 and wrong.shape[0] != num_samples:
            raise ValueError(
                f"{self.wrong_tensor_name!r} has leading dimension {wrong.shape[0]} but "
                f"the batch has {num_samples} samples; ClassificationError needs one "
                "value per example."
            )
        self._wrong += np.sum(wrong, dtype=np.float64)
        self._count += wrong.size

    def _on_fetches(self, results) -> None:
        self.on_fetches(results)

    def _after_inference(self) -> dict[str, float]:
        value = self._wrong / self._count if self._count else float("nan")
        _warn_nonfinite(value, self.wrong_tensor_name, self.summary_name)
        return {self.summary_name: float(value)}

    def result_names(self) -> list[str]:
        return [self.summary_name]


class BinaryClassificationStats(Inferencer):
    """Precision and recall of binary 0/1 predictions over the whole set.

    Args:
        pred_tensor_name: predicted labels (0/1 or bool, one per example).
        label_tensor_name: true labels (0/1 or bool).
        prefix: the reported keys are ``<prefix>_precision`` and
            ``<prefix>_recall``.

    Precision is 0 when nothing was predicted positive, recall is 0 when
    there is no positive label (as in tensorpack).

    Example:

    >>> b = BinaryClassificationStats("pred", "label")
    >>> b.before_inference()
    >>> b.on_fetches([np.array([1, 1, 0]), np.array([1, 0, 1])], 3)
    >>> b.after_inference()
    {'val_precision': 0.5, 'val_recall': 0.5}
    """

    def __init__(self, pred_tensor_name: str, label_tensor_name: str, prefix: str = "val"):
        self.pred_tensor_name = _names(pred_tensor_name, "pred_tensor_name")[0]
        self.label_tensor_name = _names(label_tensor_name, "label_tensor_name")[0]
        self.prefix = prefix

    def _before_inference(self) -> None:
        self._tp = 0
        self._pred_pos = 0
        self._label_pos = 0

    def _get_fetches(self) -> list[str]:
        return [self.pred_tensor_name, self.label_tensor_name]

    def _binary(self, value: np.ndarray, name: str) -> np.ndarray:
        value = np.asarray(value)
        if value.dtype != np.bool_:
            bad = (value != 0) & (value != 1)
            if np.any(bad):
                raise ValueError(
                    f"BinaryClassificationStats needs 0/1 values in {name!r}, got "
                    f"{value[bad].ravel()[0]!r}. Threshold scores in the tower, e.g. "
                    "tf.cast(prob > 0.5, tf.int32)."
                )
        return value.astype(bool)

    def on_fetches(self, results, num_samples=None) -> None:
        pred = self._binary(results[0], self.pred_tensor_name)
        label = self._binary(results[1], self.label_tensor_name)
        if pred.size != label.size:
            raise ValueError(
                f"{self.pred_tensor_name!r} has {pred.size} values but "
                f"{self.label_tensor_name!r} has {label.size}; they must match."
            )
        pred, label = pred.ravel(), label.ravel()
        self._tp += int(np.count_nonzero(pred & label))
        self._pred_pos += int(np.count_nonzero(pred))
        self._label_pos += int(np.count_nonzero(label))

    def _on_fetches(self, results) -> None:
        self.on_fetches(results)

    def _after_inference(self) -> dict[str, float]:
        precision = self._tp / self._pred_pos if self._pred_pos else 0.0
        recall = self._tp / self._label_pos if self._label_pos else 0.0
        return {f"{self.prefix}_precision": float(precision), f"{self.prefix}_recall": float(recall)}

    def result_names(self) -> list[str]:
        return [f"{self.prefix}_precision", f"{self.prefix}_recall"]
