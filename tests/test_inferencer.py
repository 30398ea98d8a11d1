"""The built-in inferencers against numpy over the whole set at once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import check_inferencer, random_splits
from infer_callbacks import BinaryClassificationStats, ClassificationError, Inferencer, ScalarStats


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), max_batch=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_scalar_stats_any_split_equals_whole_set_mean(n, max_batch, seed):
    rng = np.random.default_rng(seed)
    loss = rng.exponential(size=n).astype(np.float32)
    err = (rng.random((n, 3)) * 10).astype(np.float32)  # extra dims: mean over all elements
    check_inferencer(lambda: ScalarStats(["loss", "err"]), {"loss": loss, "err": err},
                     {"validation_loss": np.mean(loss, dtype=np.float64),
                      "validation_err": np.mean(err, dtype=np.float64)},
                     random_splits(rng, n, max_batch))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), max_batch=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_classification_error_any_split(n, max_batch, seed):
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < rng.random()
    check_inferencer(ClassificationError, {"wrong-top1": wrong},
                     {"validation_error": wrong.mean()}, random_splits(rng, n, max_batch))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), max_batch=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_binary_stats_any_split(n, max_batch, seed):
    rng = np.random.default_rng(seed)
    pred = (rng.random(n) < 0.4).astype(np.int32)
    label = rng.random(n) < 0.5
    tp = np.sum(pred.astype(bool) & label)
    precision = tp / pred.sum() if pred.sum() else 0.0
    recall = tp / label.sum() if label.sum() else 0.0
    check_inferencer(lambda: BinaryClassificationStats("pred", "label"), {"pred": pred, "label": label},
                     {"val_precision": precision, "val_recall": recall}, random_splits(rng, n, max_batch))


def test_scalar_per_batch_is_weighted_by_sample_count():
    # A tower returning the batch's mean cost (a scalar per batch): the exact
    # result weights each batch by its size, unlike tensorpack's mean of means.
    rng = np.random.default_rng(0)
    per_example = rng.normal(size=23)
    sizes = [10, 10, 3]
    s = ScalarStats("cost")
    s.before_inference()
    start = 0
    for size in sizes:
        s.on_fetches([np.float32(per_example[start:start + size].mean())], size)
        start += size
    s.on_fetches([np.float32(np.nan)], 0)  # an empty slice's NaN mean has weight 0
    got = s.after_inference()["validation_cost"]
    np.testing.assert_allclose(got, per_example.mean(), rtol=1e-6)
    mean_of_means = np.mean([per_example[:10].mean(), per_example[10:20].mean(), per_example[20:].mean()])
    assert abs(got - mean_of_means) > 1e-3


def test_state_resets_between_runs():
    s = ScalarStats("x", prefix="val")
    for values in ([1.0, 3.0], [10.0]):
        s.before_inference()
        s.on_fetches([np.array(values)], len(values))
        assert s.after_inference() == {"val_x": np.mean(values)}


def test_nan_reported_with_warning_naming_tensor():
    s = ScalarStats("loss")
    s.before_inference()
    s.on_fetches([np.array([1.0, np.nan])], 2)
    with pytest.warns(RuntimeWarning, match="'loss'"):
        assert np.isnan(s.after_inference()["validation_loss"])


def test_classification_error_rejects_scalar_per_batch():
    e = ClassificationError()
    e.before_inference()
    with pytest.raises(ValueError, match="per-example vector for 'wrong-top1'"):
        e.on_fetches([np.float32(0.5)], 4)


def test_binary_stats_rejects_scores():
    b = BinaryClassificationStats("prob", "label")
    b.before_inference()
    with pytest.raises(ValueError, match="0/1 values in 'prob'"):
        b.on_fetches([np.array([0.2, 0.9]), np.array([0, 1])], 2)


@pytest.mark.parametrize("names", [[], "", [""], [3]])
def test_bad_names(names):
    with pytest.raises(ValueError, match="names"):
        ScalarStats(names)


class _Custom(Inferencer):
    def __init__(self, fetches=("x",), result=None):
        self.fetches, self.result = fetches, result

    def _get_fetches(self):
        return self.fetches

    def _on_fetches(self, results):
        pass

    def _after_inference(self):
        return self.result


@pytest.mark.parametrize("fetches, error, match", [
    ("x", TypeError, "must return a list of tensor names"),
    ([], ValueError, "empty list"),
    ([1], TypeError, "must return strings"),
])
def test_bad_fetch_lists(fetches, error, match):
    with pytest.raises(error, match=match):
        _Custom(fetches).get_fetches()


@pytest.mark.parametrize("result, error, match", [
    ([1.0], TypeError, "must return a dict"),
    ({"a": np.ones(3)}, ValueError, r"\['a'\] must be a scalar.*shape \(3,\)"),
    ({"a": "high"}, ValueError, "must be a scalar"),
    ({1: 2.0}, TypeError, "non-string key 1"),
])
def test_bad_results(result, error, match):
    with pytest.raises(error, match=match):
        _Custom(result=result).after_inference()


def test_good_results_become_floats():
    assert _Custom(result={"a": np.float32(2), "b": 3, "c": np.array(4.5)}).after_inference() == \
        {"a": 2.0, "b": 3.0, "c": 4.5}
    assert _Custom(result=None).after_inference() == {}
