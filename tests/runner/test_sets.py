"""Several named validation sets in one runner, their combination, and
limit_batches: each set's numbers equal Keras's evaluate of that set alone
(and one runner per set), the combined key equals the combination of the
per-set keys."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import BACKEND
from infer_callbacks import (ClassificationError, DataParallelInferenceRunner, InferenceRunner, ScalarStats)


def _data(n, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 0.5).astype("int32")
    return x + noise * rng.normal(size=x.shape).astype("float32"), y


def _ds(x, y, batch):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    return model


CLEAN, NOISY = _data(70, 1), _data(45, 2, noise=1.0)
TRAIN = _data(128, 3)


def _sets(batch=16):
    return {"clean": _ds(*CLEAN, batch), "noisy": _ds(*NOISY, batch)}


def _evaluate(model, x, y, batch=16):
    loss, acc = model.evaluate(_ds(x, y, batch), verbose=0)
    return loss, 1.0 - acc


@pytest.mark.parametrize("combine, expected", [
    ("mean", lambda c, n: (c + n) / 2),
    ("min", min),
    ("max", max),
    ({"clean": 0.75, "noisy": 0.25}, lambda c, n: 0.75 * c + 0.25 * n),
    (lambda values: values["noisy"] - values["clean"], lambda c, n: n - c),
])
def test_each_set_equals_evaluate_of_that_set_and_the_combination_combines(combine, expected):
    model = _model()
    runner = InferenceRunner(_sets(), [ScalarStats("loss"), ClassificationError()], combine=combine,
                             verbose=False)
    history = model.fit(_ds(*TRAIN, 32), epochs=2, verbose=0, callbacks=[runner])
    (c_loss, c_err), (n_loss, n_err) = _evaluate(model, *CLEAN), _evaluate(model, *NOISY)
    h = {k: v[-1] for k, v in history.history.items()}
    np.testing.assert_allclose(h["validation_clean_loss"], c_loss, rtol=1e-5)
    np.testing.assert_allclose(h["validation_noisy_loss"], n_loss, rtol=1e-5)
    np.testing.assert_allclose(h["validation_clean_error"], c_err, atol=1e-7)
    np.testing.assert_allclose(h["validation_noisy_error"], n_err, atol=1e-7)
    np.testing.assert_allclose(h["validation_loss"], expected(h["validation_clean_loss"],
                                                              h["validation_noisy_loss"]), rtol=1e-6)
    np.testing.assert_allclose(h["validation_error"], expected(h["validation_clean_error"],
                                                               h["validation_noisy_error"]), rtol=1e-6)
    assert runner.samples_per_set == {"clean": 70, "noisy": 45} and runner.num_samples_last_run == 115
    # Two sets of one structure share the step: TensorFlow traces one; JAX
    # compiles full batches in calls of 1 and 4 and each set's partial last
    # batch alone (a step per set would take 5)
    assert 1 <= runner.tracing_count <= (1 if BACKEND == "tensorflow" else 4)


def test_sets_equal_one_runner_per_set_and_copy_the_inferencers():
    model = _model()
    infs = [ScalarStats("loss"), ClassificationError()]
    both = InferenceRunner(_sets(), infs, verbose=False)
    alone = {name: InferenceRunner(ds, [ScalarStats("loss"), ClassificationError()], verbose=False,
                                   tower_name=name) for name, ds in _sets().items()}
    model.fit(_ds(*TRAIN, 32), epochs=1, verbose=0)
    for runner in [both, *alone.values()]:
        runner.set_model(model)
    got = both.trigger()
    for name, runner in alone.items():
        for key, value in runner.trigger().items():
            assert got[key.replace("validation_", f"validation_{name}_")] == pytest.approx(value, rel=1e-9)
    assert "validation_loss" not in got  # no combination asked for
    assert both.sets[0].infs is infs or both.sets[0].infs == infs  # the first set keeps the user's objects
    assert all(a is not b for a, b in zip(both.sets[0].infs, both.sets[1].infs))


def test_sets_of_different_structures_trace_once_each():
    model = _model()
    x, y = CLEAN
    runner = InferenceRunner({"data": _ds(x, y, 16), "python": [(x[:30], y[:30]), (x[30:], y[30:])]},
                             ScalarStats("loss"), verbose=False)
    runner.set_model(model)
    counts = []
    for _ in range(2):
        got = runner.trigger()
        counts.append(runner.tracing_count)
    # Each structure its own step: TensorFlow traces one each; JAX compiles per
    # batch shape and call size (the dataset's full batches in calls of 1 and 4,
    # its partial last batch, the two Python batches of 30 and 40 rows).
    # The second run compiles nothing.
    assert counts[1] == counts[0] and 2 <= counts[0] <= (2 if BACKEND == "tensorflow" else 5)
    np.testing.assert_allclose(got["validation_python_loss"], got["validation_data_loss"], rtol=1e-5)


def test_limit_batches_validates_the_same_first_batches_exactly():
    model = _model()
    x, y = CLEAN
    runner = InferenceRunner(_ds(x, y, 16), [ScalarStats("loss")], limit_batches=2, verbose=False)
    fraction = InferenceRunner(_ds(x, y, 16), [ScalarStats("loss")], limit_batches=0.5, verbose=False)
    python = InferenceRunner(lambda: iter([(x[i:i + 16], y[i:i + 16]) for i in range(0, 70, 16)]),
                             [ScalarStats("loss")], limit_batches=2, verbose=False)
    model.fit(_ds(*TRAIN, 32), epochs=1, verbose=0)
    expected = model.evaluate(_ds(x[:32], y[:32], 16), verbose=0)[0]
    for r in (runner, fraction, python):  # 5 batches: half is 2
        r.set_model(model)
        for _ in range(2):  # the same batches every run
            got = r.trigger()
            np.testing.assert_allclose(got["validation_loss"], expected, rtol=1e-5)
            assert got["validation_num_samples"] == 32


def test_sets_with_keras_names_asynchronous_and_data_parallel():
    model = _model()
    runners = [
        InferenceRunner(_sets(), ScalarStats("loss"), combine="mean", keras_names=True, verbose=False),
        InferenceRunner(_sets(), ScalarStats("loss", prefix="validation_async"), combine="mean",
                        asynchronous=True, verbose=False),
        DataParallelInferenceRunner(_sets(), ScalarStats("loss", prefix="validation_dp"), gpus=["/cpu:0"],
                                    combine="mean", verbose=False),
    ]
    history = model.fit(_ds(*TRAIN, 32), epochs=2, verbose=0, callbacks=[
        *runners, keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)])  # mode="auto" understands it
    (c_loss, _), (n_loss, _) = _evaluate(model, *CLEAN), _evaluate(model, *NOISY)
    h = {k: v[-1] for k, v in history.history.items()}
    np.testing.assert_allclose([h["val_clean_loss"], h["val_noisy_loss"], h["val_loss"]],
                               [c_loss, n_loss, (c_loss + n_loss) / 2], rtol=1e-5)
    # The last epoch of an asynchronous runner is validated in the foreground.
    assert runners[1].last_results["validation_clean_async_loss"] == pytest.approx(c_loss, rel=1e-5)
    np.testing.assert_allclose([h["validation_noisy_dp_loss"], h["validation_dp_loss"]],
                               [n_loss, (c_loss + n_loss) / 2], rtol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(input={}), ValueError, "empty dict"),
    (dict(input={"": None}), ValueError, "letters, digits"),
    (dict(input={"a b": None}), ValueError, "'a b'"),
    (dict(input={1: None}), ValueError, "Received: 1"),
    (dict(input={"a": "X", "a_b": "X"}), ValueError, "'a' and 'a_b'"),
    (dict(combine="mean"), ValueError, "several named validation sets"),
    (dict(input={"a": "X", "b": "X"}, combine="median"), ValueError, "combine='median'"),
    (dict(input={"a": "X", "b": "X"}, combine={"a": 1.0}), ValueError, r"missing: \['b'\]"),
    (dict(input={"a": "X", "b": "X"}, combine={"a": 1.0, "b": "x"}), TypeError, "must be numbers"),
    (dict(limit_batches=0), ValueError, "limit_batches=0"),
    (dict(limit_batches=1.5), ValueError, "limit_batches=1.5"),
    (dict(input=lambda: iter([(CLEAN[0][:4], CLEAN[1][:4])]), limit_batches=0.5), ValueError,
     "does not tell its length"),
])
def test_bad_sets_and_limits_are_refused_at_construction(kwargs, error, match):
    ds = _ds(*CLEAN, 16)
    kwargs = dict(kwargs)
    source = kwargs.pop("input", ds)
    if isinstance(source, dict):
        source = {k: (ds if v == "X" else v) for k, v in source.items()}
    with pytest.raises(error, match=match):
        InferenceRunner(source, ScalarStats("loss"), **kwargs)


@pytest.mark.parametrize("how, reference", [
    ("mean", np.mean), ("min", np.min), ("max", np.max),
    ({"a": 0.5, "b": 0.25, "c": 2.0}, lambda v: 0.5 * v[0] + 0.25 * v[1] + 2.0 * v[2]),
])
def test_combination_of_three_sets_is_not_a_median(how, reference):
    """Three sets whose mean, median, min and max all differ (with two sets
    the mean is the median: a median passed the two-set tests)."""
    from infer_callbacks.runner.sets import Combination
    per_set = {"a": {"loss": 1.0, "error": 0.1}, "b": {"loss": 2.0, "error": 0.2}, "c": {"loss": 9.0, "error": 0.9}}
    out = Combination(how, ["a", "b", "c"])(per_set)
    assert out["loss"] == pytest.approx(reference([1.0, 2.0, 9.0]))
    assert out["error"] == pytest.approx(reference([0.1, 0.2, 0.9]))
    if how == "mean":
        assert out["loss"] != pytest.approx(np.median([1.0, 2.0, 9.0]))


def test_mean_of_three_sets_under_fit():
    model = _model()
    third = _data(30, 4, noise=3.0)
    sets = {**_sets(), "noisier": _ds(*third, 16)}
    runner = InferenceRunner(sets, ScalarStats("loss"), combine="mean", verbose=False)
    history = model.fit(_ds(*TRAIN, 32), epochs=1, verbose=0, callbacks=[runner])
    h = {k: v[-1] for k, v in history.history.items()}
    per_set = [h[f"validation_{n}_loss"] for n in ("clean", "noisy", "noisier")]
    assert np.median(per_set) != pytest.approx(np.mean(per_set), rel=1e-3)
    np.testing.assert_allclose(h["validation_loss"], np.mean(per_set), rtol=1e-6)
    np.testing.assert_allclose(h["validation_noisier_loss"], model.evaluate(_ds(*third, 16), verbose=0)[0],
                               rtol=1e-5)
