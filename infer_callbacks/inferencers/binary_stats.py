"""tensorpack's ``BinaryStatistics``: precision, recall and the error rates
of 0/1 decisions, optionally weighted as Keras weights a validation set.
Importable from :mod:`infer_callbacks.stats` as in tensorpack."""

from __future__ import annotations

from typing import Any

import numpy as np

from infer_callbacks.inferencers.sample_weights import weights_like

__all__ = ["BinaryStatistics"]


def _binary(value: Any, what: str) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype != np.bool_:
        if value.dtype.kind not in "biuf":
            raise ValueError(f"BinaryStatistics needs 0/1 values in {what}; got dtype {value.dtype}.")
        bad = (value != 0) & (value != 1)
        if np.any(bad):
            raise ValueError(
                f"BinaryStatistics needs 0/1 values in {what}, got {value[bad].ravel()[0].item()!r}. "
                "Threshold scores first, e.g. (prob > 0.5).")
    return value.astype(bool)


class BinaryStatistics:
    """Precision, recall, false positive and false negative rates of 0/1
    decisions (any shape, e.g. multi-label ``[batch, labels]``).

    Attributes ``nr_pos``, ``nr_neg`` (labels), ``nr_pred_pos``,
    ``nr_pred_neg`` (predictions), ``corr_pos``, ``corr_neg`` (correct
    positives / negatives) are counts, or sums of sample weights when
    ``sample_weight`` is given (then precision and recall equal
    ``keras.metrics.Precision`` / ``Recall`` with that ``sample_weight``).
    A rate with nothing to divide by is 0, as in tensorpack.

    Example:

    >>> b = BinaryStatistics()
    >>> b.feed(np.array([[1, 0], [1, 1]]), np.array([[1, 1], [0, 1]]))
    >>> b.precision, b.recall
    (0.6666666666666666, 0.6666666666666666)
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.nr_pos = 0.0
        self.nr_neg = 0.0
        self.nr_pred_pos = 0.0
        self.nr_pred_neg = 0.0
        self.corr_pos = 0.0
        self.corr_neg = 0.0

    def feed(self, pred: Any, label: Any, sample_weight: Any = None) -> None:
        """Add 0/1 (or bool) predictions and labels of the same shape.

        Args:
            pred: predicted labels.
            label: true labels, same shape as ``pred``.
            sample_weight: optional weight per row (leading dimension) or per element.
        """
        pred, label = _binary(pred, "pred"), _binary(label, "label")
        if pred.shape != label.shape:
            raise ValueError(f"BinaryStatistics.feed: pred has shape {pred.shape} but label has "
                             f"shape {label.shape}; they must match.")
        w = (np.ones(pred.shape) if sample_weight is None
             else weights_like(sample_weight, pred, "BinaryStatistics.feed"))
        self.nr_pos += float(np.sum(w[label]))
        self.nr_neg += float(np.sum(w[~label]))
        self.nr_pred_pos += float(np.sum(w[pred]))
        self.nr_pred_neg += float(np.sum(w[~pred]))
        self.corr_pos += float(np.sum(w[pred & label]))
        self.corr_neg += float(np.sum(w[~pred & ~label]))

    @property
    def precision(self) -> float:
        return self.corr_pos / self.nr_pred_pos if self.nr_pred_pos else 0.0

    @property
    def recall(self) -> float:
        return self.corr_pos / self.nr_pos if self.nr_pos else 0.0

    @property
    def false_positive(self) -> float:
        """``1 - precision`` (0 when nothing was predicted positive)."""
        return 1.0 - self.precision if self.nr_pred_pos else 0.0

    @property
    def false_negative(self) -> float:
        """``1 - recall`` (0 when no label is positive)."""
        return 1.0 - self.recall if self.nr_pos else 0.0
