"""ConfusionMatrix: count ``(label, prediction)`` pairs.

State: ``num_classes**2`` integers, whatever the set size. Reports the mean
per-class recall and precision to ``logs``, per-class values to the
monitors, and an image of the matrix (:func:`render_matrix`) for
TensorBoard.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.fetches import tensor_names

__all__ = ["ConfusionMatrix"]


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
        self.label = tensor_names(label, "label")[0]
        self.pred = tensor_names(pred, "pred")[0]
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

    def load_matrix(self, matrix: np.ndarray) -> None:
        """Replace this run's counts (e.g. by the sum over processes)."""
        self._matrix = np.asarray(matrix, np.int64).reshape(self.num_classes, self.num_classes)

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
