"""ConfusionMatrix against numpy / scikit-learn references over the whole set
at once, whatever the batch split; its image and the checks of images by
the monitor writers.

Unit tests drive the inferencer through the runner-facing methods on numpy
batches (the shared helpers of test_base.py). ConfusionMatrix in
``fit`` (logs, monitors, the TensorBoard image) is tested with the README
snippet in test_gather.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, precision_score, recall_score

from conftest import random_splits
from helpers.inferencers import check_split_invariance, feed, reference_confusion
from infer_callbacks.inferencers.confusion import ConfusionMatrix, render_matrix


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=30, deadline=None)
@given(data=st.data(), k=st.integers(1, 6), n=st.integers(1, 120))
def test_confusion_matrix_matches_numpy_and_sklearn(data, k, n):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    label = rng.integers(0, k, n)
    pred = rng.integers(0, k, n)
    sizes = random_splits(rng, n, data.draw(st.integers(1, 40)))
    recall = recall_score(label, pred, labels=range(k), average=None, zero_division=0)
    precision = precision_score(label, pred, labels=range(k), average=None, zero_division=0)
    per_class = {f"validation_recall_{c}": recall[c] for c in range(k)}
    per_class.update({f"validation_precision_{c}": precision[c] for c in range(k)})
    expected = {"validation_mean_recall": recall_score(label, pred, labels=range(k), average="macro",
                                                       zero_division=0),
                "validation_mean_precision": precision_score(label, pred, labels=range(k),
                                                             average="macro", zero_division=0)}
    cm = ConfusionMatrix("label", "pred", num_classes=k)
    assert sorted(cm.result_names()) == sorted(expected)
    check_split_invariance(lambda: cm, {"label": label, "pred": pred}, expected, sizes,
                           expected_monitor=per_class)
    assert sorted(cm.monitor_only_results()) == sorted(per_class)
    np.testing.assert_array_equal(cm.matrix, reference_confusion(label, pred, k))
    np.testing.assert_array_equal(cm.matrix, confusion_matrix(label, pred, labels=range(k)))


def test_confusion_matrix_from_logits_one_hot_and_maps(rng):
    n, k = 120, 4
    label = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    want = reference_confusion(label, logits.argmax(1), k)
    for lab in (label, np.eye(k, dtype=np.float32)[label], label.astype(np.float32)[:, None]):
        cm = ConfusionMatrix("label", "output", num_classes=k, class_names=list("abcd"))
        results, images = feed(cm, {"label": lab, "output": logits}, random_splits(rng, n, 25))
        np.testing.assert_array_equal(cm.matrix, want)
        assert set(results) == set(cm.result_names()) and "validation_recall_c" not in results
        assert "validation_recall_c" in cm.monitor_only_results()
    # per-pixel class ids (segmentation), one more axis of scores
    seg = rng.integers(0, k, (10, 5, 6))
    scores = rng.normal(size=(10, 5, 6, k))
    cm = ConfusionMatrix("label", "pred", num_classes=k)
    feed(cm, {"label": seg, "pred": scores}, [3, 0, 7])
    np.testing.assert_array_equal(cm.matrix, reference_confusion(seg.ravel(), scores.argmax(-1).ravel(), k))


def test_confusion_matrix_image_and_errors():
    cm = ConfusionMatrix("label", "pred", num_classes=3)
    _, images = feed(cm, {"label": np.array([0, 1, 2, 2]), "pred": np.array([0, 2, 2, 1])}, [4])
    image = images["validation_confusion_matrix"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    np.testing.assert_array_equal(image, render_matrix(cm.matrix))
    cell = (image.shape[0] - 1) // 3
    center = lambda r, c: image[r * cell + cell // 2, c * cell + cell // 2]  # noqa: E731
    assert center(0, 0).tolist() == [8, 48, 107]       # recall 1: darkest
    assert center(0, 1).tolist() == [255, 255, 255]    # 0: white
    assert center(1, 2).tolist() == [8, 48, 107]
    half = np.rint(255 + np.sqrt(0.5) * (np.array([8, 48, 107]) - 255))  # sqrt scale
    assert center(2, 2).tolist() == half.tolist()      # half of the row
    assert ConfusionMatrix("l", "p", 3, image=False).after_inference_images() == {}

    with pytest.raises(ValueError, match=r"'label' has class id 3, outside \[0, num_classes=3\)"):
        feed(ConfusionMatrix("label", "pred", 3), {"label": np.array([3]), "pred": np.array([0])}, [1])
    cm.before_inference()
    with pytest.raises(ValueError, match=r"'label' \(shape \(2,\)\) and 'pred' \(shape \(3,\)\)"):
        cm.on_fetches([np.zeros(2, int), np.zeros(3, int)], 2)
    with pytest.raises(ValueError, match="non-integer"):
        feed(ConfusionMatrix("label", "pred", 3), {"label": np.zeros(2), "pred": np.full(2, 0.4)}, [2])
    with pytest.raises(ValueError, match="num_classes=0"):
        ConfusionMatrix("label", "pred", 0)


def test_monitor_writers_check_images(tmp_path):
    from infer_callbacks import MonitorWriter, TFEventWriter

    with pytest.raises(ValueError, match=r"'bad'.*shape \(4, 4, 2\)"):
        TFEventWriter(tmp_path).write_images(1, 1, {"bad": np.zeros((4, 4, 2), np.uint8)})
    MonitorWriter().write_images(1, 1, {"ignored": np.zeros((2, 2, 3), np.uint8)})


def test_result_names_clash_detected_before_training():
    from infer_callbacks import InferenceRunner

    with pytest.raises(ValueError, match="validation_mean_recall"):
        InferenceRunner([(np.zeros((2, 1)), np.zeros(2))],
                        [ConfusionMatrix("label", "output", 2), ConfusionMatrix("label", "output", 2)])


def test_confusion_matrix_same_shape_class_ids_are_not_argmaxed():
    # Per-token class ids whose last axis happens to be num_classes long are
    # ids, not one-hot rows.
    ids = np.array([[0, 1, 2], [2, 2, 2]], dtype=np.float32)
    cm = ConfusionMatrix("label", "pred", num_classes=3)
    cm.before_inference()
    cm.on_fetches([ids, ids], 2)
    cm.after_inference()
    np.testing.assert_array_equal(cm.matrix, np.diag([1, 1, 4]))
    # One-hot labels (integers) next to float scores are argmaxed.
    onehot = np.eye(3, dtype=np.int32)[[0, 2, 1]]
    scores = np.array([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]], dtype=np.float32)
    cm.before_inference()
    cm.on_fetches([onehot, scores], 3)
    cm.after_inference()
    np.testing.assert_array_equal(cm.matrix, np.eye(3, dtype=np.int64))
