"""The Inferencer protocol and the built-ins (ScalarStats, ClassificationError,
BinaryClassificationStats), driven through the runner-facing methods on numpy
batches and compared with numpy / scikit-learn / Keras over the whole set.

``run_inferencer`` and ``check_split_invariance`` are the shared helpers
(torchmetrics' MetricTester idea) that test_keras_metric.py, test_gather.py and
test_confusion.py use too, with ``feed`` and ``random_splits``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infer_callbacks.builtins import BinaryClassificationStats, ClassificationError, ScalarStats
from infer_callbacks.context import RunContext
from infer_callbacks.inferencer import Inferencer
from infer_callbacks.stats import BinaryStatistics, StatCounter

# --------------------------------------------------------------------------
# Shared helpers


def run_inferencer(inf, arrays, sizes, *, exact=None, sample_weight=None, ctx=None):
    """One validation run of ``inf`` as the runner drives it.

    ``arrays``: fetch name -> per-example array; ``sizes``: batch sizes (0 is
    an empty replica slice); ``exact``: name -> ``(num, den)`` per-example
    arrays; ``sample_weight``: ``[N]``. Returns ``(logs, monitor_only, images)``.
    """
    names = inf.get_fetches()
    ctx = ctx or RunContext(epoch_num=1, global_step=10)
    inf.setup_run(ctx)
    inf.set_run_context(ctx)
    inf.before_inference()
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        extras = None if exact is None else [
            (exact[k][0][part], exact[k][1][part]) if k in exact else None for k in names]
        inf.on_fetches([arrays[k][part] for k in names], size, exact=extras,
                       sample_weight=None if sample_weight is None else sample_weight[part])
        start += size
    assert start == len(next(iter(arrays.values()))), "batch sizes must cover the set"
    logs = inf.after_inference()
    return logs, inf.monitor_only_results(), inf.after_inference_images()


def check_split_invariance(make, arrays, expected, sizes, *, expected_monitor=None, exact=None,
                           sample_weight=None, rtol=1e-9):
    """A fresh inferencer fed ``sizes`` and one fed the whole set in one batch
    both report ``expected`` (numpy over the whole set), and agree."""
    n = len(next(iter(arrays.values())))
    outs = [run_inferencer(make(), arrays, s, exact=exact, sample_weight=sample_weight)
            for s in (sizes, [n])]
    for logs, monitor, _ in outs:
        assert set(logs) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(logs[key], value, rtol=rtol, atol=1e-12, err_msg=key)
        for key, value in (expected_monitor or {}).items():
            np.testing.assert_allclose(monitor[key], value, rtol=rtol, atol=1e-12, err_msg=key)
    np.testing.assert_allclose([outs[0][0][k] for k in expected], [outs[1][0][k] for k in expected],
                               rtol=rtol)
    return outs[0][0]


def feed(inf, arrays, sizes, **kwargs):
    """One validation run of ``inf``: ``(logs, images)``."""
    logs, _, images = run_inferencer(inf, arrays, sizes, **kwargs)
    return logs, images


def random_splits(rng, n, max_batch):
    """Random batch sizes in [0, max_batch] covering ``n`` (0: an empty replica slice)."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(0, max_batch + 1)))
    sizes[-1] -= sum(sizes) - n
    return sizes


@st.composite
def splits(draw, n, max_cuts=20):
    """Random batch sizes covering ``n`` samples (repeated cuts: empty slices)."""
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=max_cuts)))
    return np.diff([0, *cuts, n]).tolist()


def exact_value(num, den):
    num, den = num.reshape(len(num), -1).sum(0), den.reshape(len(den), -1).sum(0)
    return float(np.sum(np.divide(num, den, out=np.zeros_like(num), where=den != 0)))


# --------------------------------------------------------------------------
# ScalarStats


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


# --------------------------------------------------------------------------
# ClassificationError


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


# --------------------------------------------------------------------------
# BinaryClassificationStats


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


# --------------------------------------------------------------------------
# Ports of tensorpack client patterns


class MultiLabelPR(Inferencer):
    """Multi-label precision/recall with tensorpack's BinaryStatistics."""

    def __init__(self, names=("prob", "label"), threshold=0.5):
        self.names, self.threshold = list(names), threshold

    def _get_fetches(self):
        return self.names

    def _before_inference(self):
        self.stat = BinaryStatistics()

    def _on_fetches(self, outputs):
        prob, label = outputs
        self.stat.feed((prob > self.threshold).astype(np.int32), label)

    def _after_inference(self):
        return {"precision": self.stat.precision, "recall": self.stat.recall,
                "false_negative": self.stat.false_negative}


def test_multilabel_binary_statistics_client(rng):
    from sklearn.metrics import precision_score, recall_score

    prob, label = rng.random((90, 5)), rng.integers(0, 2, (90, 5))
    recall = recall_score(label, prob > 0.5, average="micro")
    check_split_invariance(MultiLabelPR, {"prob": prob, "label": label},
                           {"precision": precision_score(label, prob > 0.5, average="micro"),
                            "recall": recall, "false_negative": 1 - recall}, [10, 0, 45, 35])


class PerBatchF1(Inferencer):
    """A per-batch scikit-learn metric averaged with a StatCounter (tensorpack habit)."""

    def _get_fetches(self):
        return ["pred", "label"]

    def _before_inference(self):
        self.f1 = StatCounter()

    def _on_fetches(self, outputs):
        from sklearn.metrics import f1_score

        pred, label = outputs
        if len(label):
            self.f1.feed(f1_score(label, pred, average="macro"))

    def _after_inference(self):
        return {"val_batch_f1": self.f1.average}


def test_per_batch_sklearn_metric_client(rng):
    from sklearn.metrics import f1_score

    pred, label = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    logs, _, _ = run_inferencer(PerBatchF1(), {"pred": pred, "label": label}, [20, 0, 20, 20])
    want = np.mean([f1_score(label[i:i + 20], pred[i:i + 20], average="macro") for i in (0, 20, 40)])
    np.testing.assert_allclose(logs["val_batch_f1"], want)


class PredictionWriter(Inferencer):
    """Writes one file per epoch and puts a scalar through the trainer's monitors."""

    def __init__(self, outdir):
        self.outdir = outdir

    def _get_fetches(self):
        return ["output"]

    def _before_inference(self):
        self.rows = []

    def _on_fetches(self, outputs):
        self.rows.append(outputs[0])

    def _after_inference(self):
        rows = np.concatenate(self.rows)
        np.savetxt(os.path.join(self.outdir, f"pred-epoch{self.epoch_num}.txt"), rows)
        self.trainer.monitors.put_scalar("val_rows", len(rows))
        assert self.trainer.monitors.get_latest("val_rows") == len(rows)


def test_client_using_epoch_num_and_monitors(tmp_path):
    inf = PredictionWriter(str(tmp_path))
    for epoch in (1, 2):
        ctx = RunContext(model="m", epoch_num=epoch, global_step=100 * epoch)
        logs, _, _ = run_inferencer(inf, {"output": np.arange(5.0) * epoch}, [2, 3], ctx=ctx)
        assert logs == {}
        assert ctx.trainer.monitors.drain() == ({"val_rows": 5.0}, {})
        np.testing.assert_array_equal(np.loadtxt(tmp_path / f"pred-epoch{epoch}.txt"), np.arange(5.0) * epoch)
    assert inf.model == "m" and inf.global_step == 200 and inf.is_chief


# --------------------------------------------------------------------------
# The protocol


class Custom(Inferencer):
    def __init__(self, fetches=("x",), result=None):
        self.fetches, self.result = fetches, result
        self.calls = []

    def _get_fetches(self):
        return self.fetches

    def _setup_graph(self):
        self.calls.append("setup")

    def _before_train(self):
        self.calls.append("before_train")

    def _after_train(self):
        self.calls.append("after_train")

    def _on_fetches(self, results):
        self.calls.append(self.batch_extras())

    def _after_inference(self):
        return self.result


def test_hooks_context_and_chief_only():
    inf = Custom()
    assert inf.chief_only is False and inf.set_chief_only() is inf and inf.chief_only
    with pytest.raises(RuntimeError, match="epoch_num"):
        inf.epoch_num
    model_a, model_b = object.__new__(type("A", (), {})), object.__new__(type("B", (), {}))
    for model in (model_a, model_a, model_b):
        inf.setup_run(RunContext(model=model))
    inf.before_train()
    inf.on_fetches([np.zeros(2)], 2, exact=[(np.ones(2), np.ones(2))], sample_weight=[1.0, 2.0])
    inf.after_train()
    assert inf.calls[:3] == ["setup", "setup", "before_train"] and inf.calls[-1] == "after_train"
    num_samples, exact, weight = inf.calls[3]
    assert num_samples == 2 and len(exact) == 1 and weight.tolist() == [1.0, 2.0]


def test_renamed_tensorpack_hooks_warn_once():
    class Old(Inferencer):
        def _get_output_tensors(self):
            return ["x"]

        def _datapoint(self, results):
            self.seen = results

    inf = Old()
    with pytest.warns(UserWarning, match="_get_output_tensors"):
        assert inf.get_fetches() == ["x"]
    with pytest.warns(UserWarning, match="_datapoint"):
        inf.on_fetches([np.ones(1)], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inf.get_fetches()
        inf.on_fetches([np.ones(1)], 1)


def test_tensors_from_get_fetches_explain_what_to_write():
    import tensorflow as tf

    with pytest.raises(TypeError, match="return the tensor names as strings, e.g. 'wrong-top1'"):
        Custom([tf.constant(1.0)]).get_fetches()


@pytest.mark.parametrize("fetches, error, match", [
    ("x", TypeError, "a list, even for one name"),
    ([], ValueError, "empty list"),
    ([1], TypeError, "non-empty strings"),
])
def test_bad_fetch_lists(fetches, error, match):
    with pytest.raises(error, match=match):
        Custom(fetches).get_fetches()


@pytest.mark.parametrize("result, logs, match", [
    ({"a": np.float32(2), "b": 3, "c": np.array(4.5)}, {"a": 2.0, "b": 3.0, "c": 4.5}, None),
    (None, {}, None),
    ({"a": np.array([1.0, 2.0])}, {"a_0": 1.0, "a_1": 2.0}, r"Custom\('x'\).*'a'.*shape \(2,\)"),
    ({"a": np.eye(2)[:1]}, {"a_0_0": 1.0, "a_0_1": 0.0}, "one key per element"),
    ({"a": "high", "b": 1}, {"b": 1.0}, "'a'.*not a number"),
    ({1: 2.0}, {"1": 2.0}, "non-string key 1"),
    ([1.0], {}, "not a dict"),
])
def test_results_never_raise(result, logs, match):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Custom(result=result).after_inference() == logs
    if match is None:
        assert not caught
    else:
        assert len(caught) == 1 and __import__("re").search(match, str(caught[0].message))


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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
