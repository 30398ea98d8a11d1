"""KerasMetric: any ``keras.metrics.Metric`` as an Inferencer.

Batches stream into the metric (``update_state``), which is reset at the
start of every validation run and read once at the end (``result()``), so
AUC, MeanIoU, Precision at thresholds, ... report exact numbers over the
whole set. State: the metric's own.
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from infer_callbacks._util import describe_arrays
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.fetches import tensor_names
from infer_callbacks.inferencers.results import element_keys

__all__ = ["KerasMetric"]


def _stable_name(metric: Any) -> str:
    """``metric.name`` without the ``_<n>`` Keras appends to automatic names
    of later instances (``auc_1``, ``auc_2``...), so the reported key does not
    depend on how many metrics were created before."""
    name = metric.name
    match = re.fullmatch(r"(.+)_\d+", name)
    if match is None:
        return name
    return match.group(1) if match.group(1) == _snake(type(metric).__name__) else name


def _snake(class_name: str) -> str:
    """``AUC`` -> ``auc``, ``SparseCategoricalAccuracy`` ->
    ``sparse_categorical_accuracy``: the automatic name Keras gives a metric."""
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", class_name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words).lower()


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
            self.fetches = tensor_names(list(fetches.values()), "fetches")
        else:
            self._keywords = None
            self.fetches = tensor_names(fetches, "fetches")
            self._warn_swapped_order()
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")
        self.name = name or _stable_name(metric)
        self.prefix = prefix
        self.element_names = None if element_names is None else [str(e) for e in element_names]
        self.compiled = bool(compiled)
        self._traced: Any = None  # None: not yet; False: cannot trace; else the tf.function
        self._sample_weight_slot: int | None = None

    _RUN_STATE = {**Inferencer._RUN_STATE, "_traced": lambda: None}  # a copy traces anew

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
            f"fetched values in update_state: {describe_arrays(self.fetches, results)}. "
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
