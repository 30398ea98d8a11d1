"""tensorpack's built-in inferencers: ``ScalarStats``, ``ClassificationError``,
``BinaryClassificationStats``.

Their state is tensorpack's (``self.err_stat``, ``self.stat``, and a
:class:`~infer_callbacks.stats.StatCounter` per name in ``self.stats``), and
their work is done in the template methods (``_before_inference``,
``_on_fetches``, ``_after_inference``), so tensorpack subclasses that read the
state or override a hook and call ``super()`` keep working.

What differs from tensorpack on purpose (exact numbers, DESIGN decision 3):

- A tower output ``n`` that comes with an exact pair ``n#num`` / ``n#den``
  (the Keras tower's ``loss``, ``<output>_loss``, ``wrong-top1``) is reduced
  exactly over the whole set: ``sum_k(sum num_k / sum den_k)``, so masks,
  several outputs and sample weights mean what they mean in ``evaluate``.
- ``ScalarStats`` weights a per-batch scalar by the batch's sample count (a
  batch mean becomes the per-sample mean; tensorpack averaged batch means)
  and averages per-example tensors over all their elements.
- With a validation set of ``(x, y, sample_weight)`` and no exact pair, values
  are weighted like Keras metrics: ``sum(w * v) / sum(w)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.exact_sum import ExactSum
from infer_callbacks.inferencers.fetches import tensor_names
from infer_callbacks.inferencers.stats import BinaryStatistics, RatioCounter, StatCounter

__all__ = ["ScalarStats", "ClassificationError", "BinaryClassificationStats"]


def _warn_nonfinite(value: float, name: str, key: str) -> None:
    if not math.isfinite(value):
        warnings.warn(f"Tensor {name!r} had NaN or infinite values during validation; "
                      f"{key} is reported as {value}.", RuntimeWarning, stacklevel=4)


class ScalarStats(Inferencer):
    """The mean of each named tensor over the whole validation set.

    Reports ``<prefix>_<name>`` (``name`` without a ``:0`` suffix). The
    value is, in this order of preference: the exact reduction of the
    tower's ``name#num``/``name#den`` pair; for a per-example tensor, the
    mean of all its elements (weighted by the set's sample weights, as
    ``keras.metrics.Mean``); for a scalar per batch, the mean weighted by
    each batch's sample count. Sums are float64.

    State: ``self.stats``, one :class:`~infer_callbacks.stats.StatCounter`
    per name (in ``names`` order), fed each batch's values (tensorpack's
    ``stats`` was a list of batches; ``stats[i].average`` is the reported
    value unless an exact pair was used).

    Args:
        names: a tensor name or a list of names.
        prefix: the prefix of the reported keys (``''``: just the name).

    Example:

    >>> s = ScalarStats("loss")
    >>> s.before_inference()
    >>> s.on_fetches([np.array([1.0, 2.0])], 2); s.on_fetches([np.array([6.0])], 1)
    >>> s.after_inference()
    {'validation_loss': 3.0}
    """

    def __init__(self, names: str | Sequence[str], prefix: str = "validation"):
        self.names = tensor_names(names, "names")
        self.prefix = prefix
        self.stats = [StatCounter() for _ in self.names]
        self._exact = [None for _ in self.names]

    def state(self) -> dict[str, np.ndarray]:
        """This run's state as named arrays (each name's counter and exact column sums)."""
        out = {}
        for i, (stat, exact) in enumerate(zip(self.stats, self._exact)):
            out[f"{i}/stat"] = stat.state()
            if exact is not None and exact.num is not None:
                out[f"{i}/num"], out[f"{i}/den"] = exact.num, exact.den
        return out

    def load_states(self, states, summed) -> None:
        """Become the merge of several runs' :meth:`state` (``summed(key)``:
        the element-wise sum of one key over them, ``None`` where absent)."""
        for i, stat in enumerate(self.stats):
            stat.load_states([st[f"{i}/stat"] for st in states])
            num, den = summed(f"{i}/num"), summed(f"{i}/den")
            self._exact[i] = None if num is None else ExactSum.of(num, den)

    def _key(self, name: str) -> str:
        name = name[:-2] if name.endswith(":0") else name
        return f"{self.prefix}_{name}" if self.prefix else name

    def _before_inference(self) -> None:
        self.stats = [StatCounter() for _ in self.names]
        self._exact = [None for _ in self.names]

    def _get_fetches(self) -> list[str]:
        return list(self.names)

    def _on_fetches(self, results) -> None:
        num_samples = self.batch_extras()[0]
        for i, raw in enumerate(results):
            value = np.asarray(raw)
            pair = self._exact_pair(i, raw)
            if pair is not None:
                if self._exact[i] is None:
                    self._exact[i] = ExactSum()
                self._exact[i].feed(pair, self.names[i])
            if value.ndim == 0:
                weight = 1 if num_samples is None else num_samples
                if weight:
                    self.stats[i].feed(value, weight=weight)
            elif value.size:
                self.stats[i].feed(value, weight=self._sample_weight_for(value))

    def _after_inference(self) -> dict[str, float]:
        out = {}
        for name, stat, exact in zip(self.names, self.stats, self._exact):
            key = self._key(name)
            if exact is not None:
                out[key] = exact.value
            else:
                out[key] = stat.average if stat.weight else float("nan")
            _warn_nonfinite(out[key], name, key)
        return out

    def accepts_blocks(self) -> bool:
        return type(self) is ScalarStats  # sums only; subclasses see every batch

    def result_names(self) -> list[str]:
        return [self._key(n) for n in self.names]


class ClassificationError(Inferencer):
    """The fraction of wrong predictions over the whole set.

    Fetches a per-example vector that is 1 (or True) where the prediction is
    wrong, e.g. the ``wrong-top1`` of the default Keras tower (a "correct"
    vector gives the accuracy instead). ``self.err_stat`` is a
    :class:`~infer_callbacks.stats.RatioCounter` fed ``(wrong, samples)``
    per batch, as in tensorpack (weighted sums with the tower's exact pair or
    the set's sample weights), so subclasses can read ``err_stat.count`` and
    ``err_stat.total``.

    Args:
        wrong_tensor_name: the per-example "is wrong" tensor.
        summary_name: the reported key.

    Example:

    >>> e = ClassificationError()
    >>> e.before_inference()
    >>> e.on_fetches([np.array([1, 0, 0])], 3); e.on_fetches([np.array([1])], 1)
    >>> e.after_inference(), e.err_stat.count, e.err_stat.total
    ({'validation_error': 0.5}, 2.0, 4.0)
    """

    def __init__(self, wrong_tensor_name: str = "wrong-top1", summary_name: str = "validation_error"):
        self.wrong_tensor_name = tensor_names(wrong_tensor_name, "wrong_tensor_name")[0]
        self.summary_name = summary_name
        self.err_stat = RatioCounter()

    def _before_inference(self) -> None:
        self.err_stat = RatioCounter()

    def _get_fetches(self) -> list[str]:
        return [self.wrong_tensor_name]

    def _on_fetches(self, outputs) -> None:
        wrong = np.asarray(outputs[0])
        num_samples = self.batch_extras()[0]
        if wrong.ndim == 0:
            raise ValueError(
                f"ClassificationError needs a per-example vector for {self.wrong_tensor_name!r}, "
                "but the tower gave a scalar per batch. Return the unreduced 0/1 vector "
                "(shape [batch]) from the tower.")
        if num_samples is not None and wrong.shape[0] != num_samples:
            raise ValueError(
                f"{self.wrong_tensor_name!r} has leading dimension {wrong.shape[0]} but the batch "
                f"has {num_samples} samples; ClassificationError needs one value per example.")
        pair = self._exact_pair(0, outputs[0])
        if pair is not None:  # columns pooled (the Keras tower gives one)
            self.err_stat.feed(np.sum(pair[0], dtype=np.float64), np.sum(pair[1], dtype=np.float64))
            return
        w = self._sample_weight_for(wrong)
        if w is None:
            self.err_stat.feed(np.sum(wrong, dtype=np.float64), wrong.size)
        else:
            w = np.broadcast_to(w.reshape(w.shape + (1,) * (wrong.ndim - 1)), wrong.shape)
            self.err_stat.feed(np.sum(w * wrong, dtype=np.float64), np.sum(w, dtype=np.float64))

    def _after_inference(self) -> dict[str, float]:
        if not self.err_stat.total:
            warnings.warn(f"{self!r} saw no samples (or only zero weights); {self.summary_name} "
                          "is reported as 0, as tensorpack's RatioCounter and Keras do.",
                          RuntimeWarning, stacklevel=3)
        value = self.err_stat.ratio
        _warn_nonfinite(value, self.wrong_tensor_name, self.summary_name)
        return {self.summary_name: value}

    def accepts_blocks(self) -> bool:
        return type(self) is ClassificationError  # sums only; subclasses see every batch

    def result_names(self) -> list[str]:
        return [self.summary_name]


class BinaryClassificationStats(Inferencer):
    """Precision and recall of 0/1 predictions over the whole set.

    ``self.stat`` is a :class:`~infer_callbacks.stats.BinaryStatistics`
    (tensorpack's), fed every batch, weighted by the set's sample weights
    when it has them (then equal to ``keras.metrics.Precision`` /
    ``Recall`` with that ``sample_weight``). Precision is 0 when nothing was
    predicted positive, recall 0 when no label is positive.

    Args:
        pred_tensor_name: predicted labels (0/1 or bool, any shape).
        label_tensor_name: true labels (0/1 or bool, as many values).
        prefix: the keys are ``<prefix>_precision`` and ``<prefix>_recall``.
            tensorpack's default ``'val'`` is also Keras's prefix for
            ``compile(metrics=[Precision()])``; the runner reports such a clash.

    Example:

    >>> b = BinaryClassificationStats("pred", "label")
    >>> b.before_inference()
    >>> b.on_fetches([np.array([1, 1, 0]), np.array([1, 0, 1])], 3)
    >>> b.after_inference()
    {'val_precision': 0.5, 'val_recall': 0.5}
    """

    def __init__(self, pred_tensor_name: str, label_tensor_name: str, prefix: str = "val"):
        self.pred_tensor_name = tensor_names(pred_tensor_name, "pred_tensor_name")[0]
        self.label_tensor_name = tensor_names(label_tensor_name, "label_tensor_name")[0]
        self.prefix = prefix
        self.stat = BinaryStatistics()

    def _before_inference(self) -> None:
        self.stat = BinaryStatistics()

    def _get_fetches(self) -> list[str]:
        return [self.pred_tensor_name, self.label_tensor_name]

    def _on_fetches(self, outputs) -> None:
        pred, label = np.asarray(outputs[0]), np.asarray(outputs[1])
        if pred.size != label.size:
            raise ValueError(f"{self.pred_tensor_name!r} has {pred.size} values (shape {pred.shape}) "
                             f"but {self.label_tensor_name!r} has {label.size} (shape {label.shape}); "
                             "they must match.")
        w = self._sample_weight_for(pred)
        pred = pred.reshape(label.shape)  # e.g. [B, 1] against [B]
        try:
            self.stat.feed(pred, label, sample_weight=w)
        except ValueError as e:
            name = self.pred_tensor_name if "in pred" in str(e) else self.label_tensor_name
            raise ValueError(f"BinaryClassificationStats, tensor {name!r}: {e} Threshold scores in "
                             "the tower, e.g. tf.cast(prob > 0.5, tf.int32).") from None

    def _after_inference(self) -> dict[str, float]:
        return {f"{self.prefix}_precision": float(self.stat.precision),
                f"{self.prefix}_recall": float(self.stat.recall)}

    def accepts_blocks(self) -> bool:
        return type(self) is BinaryClassificationStats  # sums only; subclasses see every batch

    def result_names(self) -> list[str]:
        return [f"{self.prefix}_precision", f"{self.prefix}_recall"]
