"""tensorpack's stats counters against numpy, scikit-learn and Keras."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infer_callbacks.stats import Accuracy, BinaryStatistics, OnlineMoments, RatioCounter, StatCounter

floats = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=50))
def test_stat_counter_scalars_like_tensorpack(values):
    s = StatCounter(keep_samples=True)
    for v in values:
        s.feed(v)
    assert s.count == len(values)
    np.testing.assert_allclose([s.sum, s.average], [np.sum(values), np.mean(values)], rtol=1e-9, atol=1e-6)
    assert (s.max, s.min) == (max(values), min(values))
    assert s.samples() == values


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.lists(floats, min_size=0, max_size=6), min_size=1, max_size=20))
def test_stat_counter_arrays_of_any_length_average_all_elements(rows):
    s = StatCounter()
    for row in rows:
        s.feed(np.array(row, dtype=np.float32))
    flat = np.concatenate([np.array(r, dtype=np.float32) for r in rows]).astype(np.float64)
    assert s.count == len(rows) and s.weight == flat.size
    if flat.size:
        np.testing.assert_allclose(s.average, flat.mean(), rtol=1e-9, atol=1e-9)
        assert s.max == flat.max() and s.min == flat.min()


def test_stat_counter_weights_empty_and_reset():
    s = StatCounter()
    with pytest.raises(ValueError, match="average of an empty counter"):
        s.average
    with pytest.raises(ValueError, match="keep_samples=True"):
        s.samples()
    s.feed(2.0, weight=10)  # a batch mean of 10 samples
    s.feed(np.array([[1.0, 3.0], [5.0, 7.0]]), weight=np.array([1.0, 0.0]))  # one weight per row
    assert s.average == pytest.approx((20 + 4) / 12) and s.sum == pytest.approx(24.0)
    with pytest.raises(ValueError, match=r"weight of shape \(3,\)"):
        s.feed(np.ones(2), weight=np.ones(3))
    with pytest.raises(ValueError, match="needs numbers"):
        s.feed("x")
    s.reset()
    assert s.count == 0


def test_ratio_counter_count_and_total_as_tensorpack():
    r = RatioCounter()
    assert r.ratio == 0 and r.count == 0 and r.total == 0
    r.feed(3, 10)
    r.feed(1)
    assert (r.count, r.total, r.ratio) == (4, 11, 4 / 11)
    a = Accuracy()
    a.feed(np.int64(9), np.int64(12))
    assert a.accuracy == 0.75 and a.ratio == 0.75
    a.reset()
    assert a.total == 0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 2**31), weighted=st.booleans())
def test_binary_statistics_matches_sklearn(n, seed, weighted):
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(seed)
    pred, label = rng.integers(0, 2, (n, 3)), rng.random((n, 3)) < 0.5
    w = rng.random(n) if weighted else None
    b = BinaryStatistics()
    b.feed(pred[: n // 2], label[: n // 2], None if w is None else w[: n // 2])
    b.feed(pred[n // 2:] == 1, label[n // 2:].astype(np.int8), None if w is None else w[n // 2:])
    flat_w = None if w is None else np.repeat(w, 3)
    (tn, fp), (fn, tp) = confusion_matrix(label.ravel(), pred.ravel(), labels=[0, 1], sample_weight=flat_w)
    got = [b.corr_pos, b.corr_neg, b.nr_pred_pos, b.nr_pred_neg, b.nr_pos, b.nr_neg]
    np.testing.assert_allclose(got, [tp, tn, tp + fp, tn + fn, tp + fn, tn + fp], rtol=1e-9)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    np.testing.assert_allclose([b.precision, b.recall], [precision, recall], rtol=1e-9)
    np.testing.assert_allclose([b.false_positive, b.false_negative],
                               [1 - precision if tp + fp else 0.0, 1 - recall if tp + fn else 0.0])


def test_binary_statistics_errors_and_empty():
    b = BinaryStatistics()
    assert (b.precision, b.recall, b.false_positive, b.false_negative) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"shape \(2,\) but label has shape \(3,\)"):
        b.feed(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="0/1 values in pred, got 0.7"):
        b.feed(np.array([0.7]), np.array([1]))


def test_online_moments_match_numpy(rng):
    x = rng.normal(size=(30, 4))
    m = OnlineMoments()
    assert np.isnan(OnlineMoments().variance)
    for row in x:
        m.feed(row)
    np.testing.assert_allclose(m.mean, x.mean(0))
    np.testing.assert_allclose(m.variance, x.var(0, ddof=1))
    np.testing.assert_allclose(m.std, x.std(0, ddof=1))


@pytest.fixture
def rng():
    return np.random.default_rng(7)
