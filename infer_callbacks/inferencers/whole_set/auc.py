"""``AUC``: the exact area under the ROC or precision-recall curve over the
whole validation set, as scikit-learn computes it.

Keras's ``keras.metrics.AUC`` buckets scores into ``num_thresholds``
thresholds; this one keeps every distinct score (``state.ScoreRuns``: sorted
runs, spilled to disk beyond ``max_memory_mb``), so it equals
``sklearn.metrics.roc_auc_score`` / ``average_precision_score`` on the whole
set, ties and sample weights included, whatever the batch split.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.whole_set.state import ScoreRuns, SpillDir, average_precision, roc_auc

__all__ = ["AUC"]

_CURVES = ("ROC", "PR")
_AVERAGES = ("macro", "micro", "weighted")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class AUC(Inferencer):
    """Exact ROC AUC or average precision (PR AUC) over the whole set.

    Binary: scores ``[B]`` or ``[B, 1]`` (probabilities or logits: only the
    order matters) and labels ``[B]`` in {0, 1} (or {-1, 1}, bool).
    Several classes: scores ``[B, C]`` with class ids ``[B]`` (one-vs-rest)
    or indicators ``[B, C]`` (multi-label), averaged as scikit-learn's
    ``average``: ``'macro'`` (the mean over classes), ``'weighted'`` (by
    each class's positive weight) or ``'micro'`` (every (sample, class)
    pair as one binary problem). Classes without positives or negatives in
    the set are left out of the average, with a warning (scikit-learn would
    raise). The batch's sample weights weight the samples, as in
    scikit-learn's ``sample_weight``.

    Ties count as scikit-learn counts them (trapezoids for ROC; one
    threshold per distinct score for PR). A set with no positives (or, for
    ROC, no negatives) gives NaN with a warning, never an error.

    Args:
        label: the labels' fetch name.
        score: the scores' fetch name (the model's output by default).
        curve: ``'ROC'`` or ``'PR'`` (average precision).
        average: how classes combine (see above).
        from_logits: apply a softmax to ``[B, C]`` scores with class-id
            labels (the one case where it changes the order; match what
            scikit-learn is given: probabilities).
        per_class: also report ``<key>_<c>`` per class.
        name: the key's suffix (default ``'auc'`` for ROC, ``'pr_auc'``).
        prefix: the key's prefix: ``<prefix>_<name>``.
        max_memory_mb: the state's memory budget before it spills sorted
            runs to disk (every distinct score is kept: about 20 bytes a
            sample and class).
        tmpdir: where the spill directory goes (default ``$TMPDIR``).

    Example:

    >>> auc = AUC("label", "score")
    >>> auc.before_inference()
    >>> auc.on_fetches([np.array([0, 1, 1]), np.array([0.1, 0.4, 0.4])], 3)
    >>> auc.on_fetches([np.array([0]), np.array([0.4])], 1)
    >>> auc.after_inference()
    {'validation_auc': 0.75}
    """

    def __init__(self, label: str = "label", score: str = "output", *, curve: str = "ROC",
                 average: str = "macro", from_logits: bool = False, per_class: bool = False,
                 name: str | None = None, prefix: str = "validation", max_memory_mb: float = 64,
                 tmpdir: str | os.PathLike | None = None):
        if not isinstance(curve, str) or curve.upper() not in _CURVES:
            raise ValueError(f"`curve` must be one of {_CURVES!r}. Received: curve={curve!r}. "
                             f"Valid: 'ROC', 'PR'")
        if average not in _AVERAGES:
            raise ValueError(f"`average` must be one of {_AVERAGES!r}. Received: average={average!r}")
        for arg, value in (("label", label), ("score", score)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"`{arg}` must be a fetch name (a non-empty string). Received: {arg}={value!r}")
        if (isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float))
                or not math.isfinite(max_memory_mb) or max_memory_mb <= 0):
            raise ValueError("`max_memory_mb` must be a positive number of MiB. "
                             f"Received: max_memory_mb={max_memory_mb!r}")
        self.label, self.score = label, score
        self.curve, self.average = curve.upper(), average
        self.from_logits, self.per_class = bool(from_logits), bool(per_class)
        self.name = name or ("auc" if self.curve == "ROC" else "pr_auc")
        self.prefix, self.max_memory_mb = prefix, max_memory_mb
        self.tmpdir = None if tmpdir is None else os.fspath(tmpdir)
        self._runs: list[ScoreRuns] | None = None
        self._spill: SpillDir | None = None

    _RUN_STATE = {**Inferencer._RUN_STATE, "_runs": lambda: None, "_spill": lambda: None}

    @property
    def key(self) -> str:
        return f"{self.prefix}_{self.name}" if self.prefix else self.name

    def _get_fetches(self) -> list[str]:
        return [self.label, self.score]

    def result_names(self) -> list[str] | None:
        return None if self.per_class else [self.key]

    def _before_inference(self) -> None:
        self._close()
        self._spill = SpillDir(self.tmpdir, prefix="infer_callbacks_auc_")
        self._runs = None  # made at the first batch, when the number of classes is known
        self._mode = None

    def _close(self) -> None:
        for runs in self._runs or []:
            runs.close()
        if self._spill is not None:
            self._spill.close()

    def _make(self, count: int) -> list[ScoreRuns]:
        budget = int(self.max_memory_mb * 2**20) // count
        return [ScoreRuns(max_memory_bytes=budget, spill=self._spill) for _ in range(count)]

    def _on_fetches(self, results) -> None:
        label, score = np.asarray(results[0]), np.asarray(results[1])
        weight = self._sample_weight_for(score)
        if score.ndim == 2 and score.shape[1] == 1:
            score = score[:, 0]
        if label.ndim == 2 and label.shape[1] == 1 and score.ndim == 1:
            label = label[:, 0]
        if score.ndim == 1 and label.shape == score.shape:
            mode, classes = "binary", 1
        elif score.ndim == 2 and label.shape == score.shape:
            mode, classes = "multilabel", score.shape[1]
        elif score.ndim == 2 and (label.ndim == 1 or (label.ndim == 2 and label.shape[1] == 1)) \
                and len(label) == len(score):
            mode, classes = "multiclass", score.shape[1]
            label = label.reshape(-1)
        else:
            raise ValueError(
                f"AUC needs scores [B], [B, 1] or [B, C] with labels [B] (binary, or class ids) or "
                f"[B, C] (indicators). Received: {self.score!r} with shape {score.shape} and "
                f"{self.label!r} with shape {label.shape}.")
        if self._runs is None:
            self._mode, self._classes = mode, classes
            micro = self.average == "micro" and mode != "binary"
            self._runs = self._make(1 if micro else classes)
        elif (mode, classes) != (self._mode, self._classes):
            raise ValueError(f"AUC: the batches changed from {self._mode} with {self._classes} score "
                             f"column(s) to {mode} with {classes}; every batch must have the same layout.")
        if not len(score):
            return
        if mode == "binary":
            self._runs[0].add(score, self._binary(label), weight)
            return
        if mode == "multiclass":
            if label.dtype.kind == "f" and np.any(label != np.round(label)):
                raise ValueError(f"AUC: {self.label!r} must hold class ids for scores [B, C]; it has "
                                 f"non-integer values such as {label[label != np.round(label)][0]!r}.")
            ids = label.astype(np.int64)
            if ids.min() < 0 or ids.max() >= classes:
                raise ValueError(f"AUC: {self.label!r} has class ids outside [0, {classes}) "
                                 f"(min {ids.min()}, max {ids.max()}) for scores with {classes} columns.")
            positive = ids[:, None] == np.arange(classes)
            if self.from_logits:
                score = _softmax(score.astype(np.float64))
        else:
            positive = self._binary(label)
        if len(self._runs) == 1 and classes > 1:  # micro: every (sample, class) pair
            w = None if weight is None else np.repeat(weight, classes)
            self._runs[0].add(score.ravel(), positive.ravel(), w)
            return
        for c, runs in enumerate(self._runs):
            runs.add(score[:, c], positive[:, c], weight)

    def _binary(self, label: np.ndarray) -> np.ndarray:
        if label.dtype == bool:
            return label
        bad = (label != 0) & (label != 1) & (label != -1)
        if np.any(bad):
            raise ValueError(f"AUC: binary labels {self.label!r} must be 0/1 (or -1/1, bool). "
                             f"Received values such as {label[bad].ravel()[0]!r}.")
        return label == 1

    def _value(self, runs: ScoreRuns) -> float:
        return roc_auc(runs) if self.curve == "ROC" else average_precision(runs)

    def _after_inference(self) -> dict[str, float]:
        try:
            return self._results()
        finally:
            self._close()
            self._runs = None

    def _results(self) -> dict[str, Any]:
        if not self._runs:
            return {self.key: float("nan")}
        nan = sum(r.num_nan for r in self._runs)
        if nan:
            warnings.warn(f"AUC: {nan} NaN score(s) in {self.score!r}; {self.key} is reported as NaN.",
                          RuntimeWarning, stacklevel=3)
            return {self.key: float("nan")}
        values = [self._value(r) for r in self._runs]
        out: dict[str, float] = {}
        if len(values) == 1:
            out[self.key] = values[0]
            if not math.isfinite(values[0]):
                warnings.warn(f"AUC: {self.key} is undefined (the set has no positives"
                              f"{'' if self.curve == 'PR' else ' or no negatives'}); reported as NaN.",
                              RuntimeWarning, stacklevel=3)
            return out
        defined = [c for c, v in enumerate(values) if math.isfinite(v)]
        if len(defined) < len(values):
            warnings.warn(f"AUC: classes {[c for c in range(len(values)) if c not in defined]} have no "
                          f"positives (or negatives) in the set; {self.key} averages the other classes.",
                          RuntimeWarning, stacklevel=3)
        if not defined:
            out[self.key] = float("nan")
        elif self.average == "weighted":
            w = np.array([self._runs[c].total_pos for c in defined])
            out[self.key] = float(np.dot(w, [values[c] for c in defined]) / w.sum())
        else:
            out[self.key] = float(np.mean([values[c] for c in defined]))
        if self.per_class:
            out.update({f"{self.key}_{c}": v for c, v in enumerate(values)})
        return out

    def __repr__(self) -> str:
        return f"AUC({self.label!r}, {self.score!r}, curve={self.curve!r})"
