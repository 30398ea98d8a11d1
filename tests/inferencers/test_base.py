"""The Inferencer protocol and ports of tensorpack client patterns, driven
through the runner-facing methods on numpy batches and compared with numpy /
scikit-learn over the whole set (the built-ins: test_scalar.py). The shared
drivers (``run_inferencer``, ``check_split_invariance``) are in
helpers/inferencers.py.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from helpers.inferencers import check_split_invariance, run_inferencer
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.context import RunContext
from infer_callbacks.stats import BinaryStatistics, StatCounter

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
