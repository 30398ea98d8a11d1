"""The built-in inferencers (ScalarStats, ClassificationError,
BinaryClassificationStats), driven through the runner-facing methods on numpy
batches and compared with numpy / scikit-learn / Keras over the whole set.
The shared drivers are in helpers/inferencers.py and conftest.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import check_inferencer, random_splits
from helpers.inferencers import check_split_invariance, run_inferencer
from infer_callbacks.inferencers.scalar import BinaryClassificationStats, ClassificationError, ScalarStats
from infer_callbacks.stats import BinaryStatistics, StatCounter


@st.composite
def splits(draw, n, max_cuts=20):
    """Random batch sizes covering ``n`` samples (repeated cuts: empty slices)."""
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=max_cuts)))
    return np.diff([0, *cuts, n]).tolist()


def exact_value(num, den):
    num, den = num.reshape(len(num), -1).sum(0), den.reshape(len(den), -1).sum(0)
    return float(np.sum(np.divide(num, den, out=np.zeros_like(num), where=den != 0)))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 200))
def test_scalar_stats_mean_of_all_elements(data, n):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    loss = rng.exponential(size=n).astype(np.float32)
    err = (rng.random((n, 3)) * 10).astype(np.float32)
    check_split_invariance(lambda: ScalarStats(["loss", "err:0"]), {"loss": loss, "err:0": err},
                           {"validation_loss": loss.mean(dtype=np.float64),
                            "validation_err": err.mean(dtype=np.float64)}, data.draw(splits(n)),
                           rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 200), k=st.integers(1, 3))
def test_scalar_stats_exact_pairs_and_sample_weights(data, n, k):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    per_example = rng.random(n)
    num = rng.random((n, k)) * (rng.random((n, k)) < 0.7)
    den = (rng.random((n, k)) < 0.8).astype(np.float64)
    weight = rng.random(n)
    sizes = data.draw(splits(n))
    # The exact pair wins over the plain values; sum over columns of ratios.
    check_split_invariance(lambda: ScalarStats("loss"), {"loss": per_example},
                           {"validation_loss": exact_value(num, den)}, sizes,
                           exact={"loss": (num, den)}, sample_weight=weight)
    # No pair: weighted like keras.metrics.Mean(values, sample_weight).
    err = rng.random((n, 2))
    check_split_invariance(lambda: ScalarStats("err", prefix="val"), {"err": err},
                           {"val_err": np.average(err, weights=np.repeat(weight[:, None], 2, 1))},
                           sizes, sample_weight=weight)


def test_scalar_stats_weighted_like_keras_mean(rng):
    import keras

    values, weight = rng.random((50, 4)), rng.random(50)
    mean = keras.metrics.Mean()
    mean.update_state(values, sample_weight=weight)
    logs, _, _ = run_inferencer(ScalarStats("v"), {"v": values}, [20, 0, 30], sample_weight=weight)
    np.testing.assert_allclose(logs["validation_v"], float(mean.result()), rtol=1e-6)


def test_scalar_per_batch_is_weighted_by_sample_count(rng):
    per_example = rng.normal(size=23)
    s = ScalarStats("cost")
    s.before_inference()
    for lo, hi in ((0, 10), (10, 20), (20, 23)):
        s.on_fetches([np.float32(per_example[lo:hi].mean())], hi - lo)
    s.on_fetches([np.float32(np.nan)], 0)  # an empty slice's NaN mean has weight 0
    np.testing.assert_allclose(s.after_inference()["validation_cost"], per_example.mean(), rtol=1e-6)
    assert s.stats[0].count == 3 and isinstance(s.stats[0], StatCounter)


def test_scalar_stats_reset_and_nan_warning():
    s = ScalarStats("x", prefix="")
    for values in ([1.0, 3.0], [10.0]):
        s.before_inference()
        s.on_fetches([np.array(values)], len(values))
        assert s.after_inference() == {"x": np.mean(values)}
    s.before_inference()
    s.on_fetches([np.array([1.0, np.nan])], 2)
    with pytest.warns(RuntimeWarning, match="'x'"):
        assert np.isnan(s.after_inference()["x"])


class PercentStats(ScalarStats):
    """A tensorpack-style subclass: overrides the template method, calls super."""

    def _on_fetches(self, outputs):
        self.batches = getattr(self, "batches", 0) + 1
        super()._on_fetches([np.asarray(o) * 100 for o in outputs])


def test_subclass_overriding_on_fetches_is_called_and_its_values_used(rng):
    acc = rng.random(30)
    num, den = rng.random(30), np.ones(30)
    inf = PercentStats("acc")
    logs, _, _ = run_inferencer(inf, {"acc": acc}, [7, 0, 23], exact={"acc": (num, den)})
    # The subclass handed other arrays to super(): those are averaged, not the exact pair.
    np.testing.assert_allclose(logs["validation_acc"], 100 * acc.mean())
    assert inf.batches == 3 and inf.stats[0].count == 2


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 200))
def test_classification_error(data, n):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    wrong = rng.random(n) < rng.random()
    weight = rng.random(n)
    sizes = data.draw(splits(n))
    check_split_invariance(ClassificationError, {"wrong-top1": wrong},
                           {"validation_error": wrong.mean()}, sizes)
    check_split_invariance(ClassificationError, {"wrong-top1": wrong},
                           {"validation_error": np.average(wrong, weights=weight)}, sizes,
                           sample_weight=weight)
    valid = rng.random(n) < 0.9  # exact pair: per-token counts, masks and weights
    num, den = weight * wrong * valid * 3, weight * valid * 3
    check_split_invariance(ClassificationError, {"wrong-top1": wrong},
                           {"validation_error": exact_value(num, den)}, sizes,
                           exact={"wrong-top1": (num, den)}, sample_weight=weight)


class AllReduceClassificationError(ClassificationError):
    """tensorpack's Horovod pattern: read err_stat.total / count in
    _after_inference and reduce them across workers (here: another shard)."""

    def __init__(self, other_shard):
        super().__init__()
        self.other_shard = other_shard

    def _after_inference(self):
        tot = self.err_stat.total + self.other_shard[0]
        cnt = self.err_stat.count + self.other_shard[1]
        return {self.summary_name: cnt * 1. / tot}


def test_subclass_reading_err_stat(rng):
    wrong = rng.random(40) < 0.3
    logs, _, _ = run_inferencer(AllReduceClassificationError((60.0, 6.0)), {"wrong-top1": wrong}, [16, 24])
    np.testing.assert_allclose(logs["validation_error"], (wrong.sum() + 6) / 100)


def test_classification_error_rejects_scalar_per_batch():
    e = ClassificationError()
    e.before_inference()
    with pytest.raises(ValueError, match="per-example vector for 'wrong-top1'"):
        e.on_fetches([np.float32(0.5)], 4)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 200))
def test_binary_stats_matches_sklearn(data, n):
    from sklearn.metrics import precision_score, recall_score

    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    pred = (rng.random(n) < 0.4).astype(np.int32)
    label = rng.random(n) < 0.5
    weight = rng.random(n)
    sizes = data.draw(splits(n))
    for w in (None, weight):
        expected = {"val_precision": precision_score(label, pred, sample_weight=w, zero_division=0),
                    "val_recall": recall_score(label, pred, sample_weight=w, zero_division=0)}
        check_split_invariance(lambda: BinaryClassificationStats("pred", "label"),
                               {"pred": pred[:, None], "label": label}, expected, sizes,
                               sample_weight=w)


def test_binary_stats_weighted_like_keras(rng):
    import keras

    pred, label, weight = rng.integers(0, 2, 80), rng.integers(0, 2, 80), rng.random(80)
    want = {}
    for name, metric in (("val_precision", keras.metrics.Precision()), ("val_recall", keras.metrics.Recall())):
        metric.update_state(label, pred, sample_weight=weight)
        want[name] = float(metric.result())
    inf = BinaryClassificationStats("pred", "label")
    logs, _, _ = run_inferencer(inf, {"pred": pred, "label": label}, [33, 47], sample_weight=weight)
    assert logs == pytest.approx(want, rel=1e-6)
    assert isinstance(inf.stat, BinaryStatistics) and inf.stat.nr_pos == pytest.approx(weight[label == 1].sum())


def test_binary_stats_rejects_scores():
    b = BinaryClassificationStats("prob", "label")
    b.before_inference()
    with pytest.raises(ValueError, match="'prob'.*0/1 values"):
        b.on_fetches([np.array([0.2, 0.9]), np.array([0, 1])], 2)


def test_subclass_without_super_init_works():
    class Bare(ScalarStats):
        def __init__(self):  # tensorpack subclasses often skip super().__init__()
            self.names, self.prefix = ["x"], "p"

    logs, _, _ = run_inferencer(Bare(), {"x": np.arange(4.0)}, [4])
    assert logs == {"p_x": 1.5}


@pytest.mark.parametrize("names", [[], "", [""], [3]])
def test_bad_names(names):
    with pytest.raises(ValueError, match="names"):
        ScalarStats(names)


def test_builtins_any_random_split_equal_numpy_over_the_whole_set(rng):
    n = 53
    loss = rng.random(n)
    wrong = (rng.random(n) < 0.3).astype("float32")
    pred, label = rng.integers(0, 2, n), rng.integers(0, 2, n)
    for make, arrays, reference in [
        (lambda: ScalarStats("loss"), {"loss": loss}, {"validation_loss": loss.mean()}),
        (ClassificationError, {"wrong-top1": wrong}, {"validation_error": wrong.mean(dtype=np.float64)}),
        (lambda: BinaryClassificationStats("pred", "label"), {"pred": pred, "label": label},
         {"val_precision": (pred & label).sum() / max(pred.sum(), 1),
          "val_recall": (pred & label).sum() / max(label.sum(), 1)}),
    ]:
        check_inferencer(make, arrays, reference, random_splits(rng, n, 9))
