"""KerasMetric against numpy / scikit-learn / Keras over the whole set at once,
whatever the batch split.

The tests drive the inferencer through the runner-facing methods on numpy
batches (the shared helpers of test_base.py); KerasMetric in ``fit``
is part of the end-to-end tests in test_gather.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import precision_score, roc_auc_score

from conftest import random_splits
from helpers.inferencers import check_split_invariance, feed, numpy_mean_iou
from infer_callbacks.inferencers.keras_metric import KerasMetric


def test_keras_auc_matches_sklearn_roc_auc(rng):
    n = 600
    label = rng.integers(0, 2, n)
    logits = (rng.normal(size=n) + 1.2 * label).astype(np.float32)
    expected = roc_auc_score(label, logits)
    for seed in range(2):
        sizes = random_splits(np.random.default_rng(seed), n, 70)
        # AUC bins scores into 200 thresholds: agreement within that approximation.
        check_split_invariance(lambda: KerasMetric(keras.metrics.AUC(from_logits=True), ["label", "output"]),
                         {"label": label, "output": logits}, {"validation_auc": expected},
                         sizes, rtol=5e-3)


def test_keras_mean_iou_matches_numpy_on_segmentation_maps(rng):
    n, k = 90, 5
    label = rng.integers(0, k, (n, 6, 7))
    pred = np.where(rng.random((n, 6, 7)) < 0.6, label, rng.integers(0, k, (n, 6, 7)))
    sizes = random_splits(rng, n, 13)
    check_split_invariance(lambda: KerasMetric(keras.metrics.MeanIoU(num_classes=k), ["label", "pred"],
                                         name="miou"),
                     {"label": label, "pred": pred},
                     {"validation_miou": numpy_mean_iou(label, pred, k)}, sizes, rtol=1e-6)


def test_keras_vector_result_is_one_scalar_per_threshold(rng):
    n = 300
    label = rng.integers(0, 2, n)
    prob = np.clip(0.35 * label + rng.random(n) * 0.7, 0, 1).astype(np.float32)
    thresholds = [0.3, 0.5, 0.7]
    expected = {f"val_precision_at_{t:g}": precision_score(label, prob > t) for t in thresholds}
    make = lambda: KerasMetric(keras.metrics.Precision(thresholds=thresholds),  # noqa: E731
                               ["label", "prob"], prefix="val")
    assert make().result_names() == list(expected)
    check_split_invariance(make, {"label": label, "prob": prob}, expected,
                     random_splits(rng, n, 40), rtol=1e-6)


def test_keras_per_class_vector_and_keyword_fetches(rng):
    n, k = 200, 3
    label = rng.integers(0, k, n)
    onehot = np.eye(k, dtype=np.float32)[label]
    scores = (onehot + rng.random((n, k))).astype(np.float32)
    pred_onehot = np.eye(k, dtype=np.float32)[scores.argmax(1)]
    from sklearn.metrics import f1_score

    expected = f1_score(label, scores.argmax(1), average=None)
    make = lambda: KerasMetric(keras.metrics.F1Score(average=None, threshold=0.5),  # noqa: E731
                               {"y_true": "label", "y_pred": "pred"},
                               element_names=["cat", "dog", "bird"])
    check_split_invariance(make, {"label": onehot, "pred": pred_onehot},
                     {f"validation_f1_score_{c}": v for c, v in zip(["cat", "dog", "bird"], expected)},
                     random_splits(rng, n, 30), rtol=1e-5)


def test_keras_metric_sample_weight_and_reset_between_runs(rng):
    metric = KerasMetric(keras.metrics.Mean(name="loss"), ["loss", "weight"])
    a, wa = rng.random(50), rng.random(50)
    b, wb = rng.random(20), rng.random(20)
    first, _ = feed(metric, {"loss": a, "weight": wa}, [0, 17, 33, 0])
    second, _ = feed(metric, {"loss": b, "weight": wb}, [20])
    np.testing.assert_allclose(first["validation_loss"], np.average(a, weights=wa), rtol=1e-6)
    np.testing.assert_allclose(second["validation_loss"], np.average(b, weights=wb), rtol=1e-6)


def test_keras_metric_uses_the_sets_sample_weights(rng):
    label, prob, weight = rng.integers(0, 2, 120), rng.random(120).astype(np.float32), rng.random(120)
    auc = keras.metrics.AUC()
    auc.update_state(label, prob, sample_weight=weight)
    logs, _ = feed(KerasMetric(keras.metrics.AUC(), ["label", "prob"]), {"label": label, "prob": prob},
                   [50, 0, 70], sample_weight=weight)
    np.testing.assert_allclose(logs["validation_auc"], float(auc.result()), rtol=1e-6)
    # update_state without a sample_weight parameter: the weights are not passed.
    logs, _ = feed(KerasMetric(PythonSideMean(), ["prob"]), {"prob": prob}, [120], sample_weight=weight)
    np.testing.assert_allclose(logs["validation_py_mean"], prob.mean(), rtol=1e-6)


@pytest.mark.parametrize("good_batches", [0, 3])  # eager (first batch), then compiled
def test_keras_metric_rejecting_shapes_names_metric_and_shapes(good_batches):
    metric = KerasMetric(keras.metrics.MeanIoU(num_classes=3, name="my_iou"), ["label", "pred"])
    metric.before_inference()
    for size in range(2, 2 + good_batches):
        metric.on_fetches([np.zeros(size, np.int64), np.ones(size, np.int64)], size)
    with pytest.raises(ValueError, match=r"my_iou.*'label' shape \(5,\).*'pred' shape \(4,\)"):
        metric.on_fetches([np.zeros(5, np.int64), np.zeros(4, np.int64)], 5)


class PythonSideMean(keras.metrics.Metric):
    """A metric that cannot be traced: it keeps Python floats."""

    def __init__(self):
        super().__init__(name="py_mean")
        self.reset_state()

    def update_state(self, values):
        self.total += float(np.sum(np.asarray(values)))
        self.count += int(np.size(values))

    def reset_state(self):
        self.total, self.count = 0.0, 0

    def result(self):
        return self.total / max(self.count, 1)


@pytest.mark.parametrize("compiled", [True, False])
def test_keras_metric_compiled_or_eager_same_numbers(rng, compiled):
    n = 300
    label = rng.integers(0, 2, n)
    prob = rng.random(n).astype(np.float32)
    sizes = random_splits(rng, n, 40)
    auc = check_split_invariance(
        lambda: KerasMetric(keras.metrics.AUC(), ["label", "prob"], compiled=compiled),
        {"label": label, "prob": prob}, {"validation_auc": roc_auc_score(label, prob)}, sizes, rtol=5e-3)
    eager = check_split_invariance(lambda: KerasMetric(keras.metrics.AUC(), ["label", "prob"], compiled=False),
                             {"label": label, "prob": prob}, auc, sizes, rtol=1e-6)
    assert eager == pytest.approx(auc, rel=1e-6)
    values = rng.random(n)
    inf = KerasMetric(PythonSideMean(), ["values"], compiled=compiled)
    check_split_invariance(lambda: inf, {"values": values}, {"validation_py_mean": values.mean()}, sizes)
    assert inf._traced is (False if compiled else None)  # fell back to eager by itself


def test_keras_metric_bad_arguments():
    with pytest.raises(TypeError, match=r"instance.*keras.metrics.AUC\(\)"):
        KerasMetric(keras.metrics.AUC, ["label", "output"])
    with pytest.raises(TypeError, match="keras.metrics.Metric"):
        KerasMetric("auc", ["label", "output"])
    with pytest.warns(UserWarning, match="y_pred"):
        KerasMetric(keras.metrics.AUC(), ["output", "label"])
