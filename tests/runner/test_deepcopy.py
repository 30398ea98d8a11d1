"""Every callback deep-copies as Keras's own do (keras-tuner copies callbacks
for every trial): a copy shares the input, carries a copy of the
configuration and no run state, and validates whatever model it is given."""

from __future__ import annotations

import copy
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import (
    ClassificationError,
    InferenceRunner,
    JSONWriter,
    KerasMetric,
    MinSaver,
    ModelSaver,
    Monitors,
    PeriodicTrigger,
    ScalarPrinter,
    ScalarStats,
    TFEventWriter,
)


def _data(n=53, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype("float32"), rng.integers(0, 4, size=n).astype("int32")


def _model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])
    return model


def _infs():
    return [ScalarStats("loss"), ClassificationError(),
            KerasMetric(keras.metrics.SparseCategoricalAccuracy(), ["label", "output"], name="acc")]


def _evaluate(model, x, y):
    loss, acc = model.evaluate(x, y, batch_size=16, verbose=0)
    return {"validation_loss": loss, "validation_error": 1 - acc, "validation_acc": acc}


def _check(results, expected):
    assert set(expected) <= set(results)
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("kind", ["tf.data", "list of batches"])
def test_a_copy_of_a_used_runner_validates_another_model_and_leaves_the_original_alone(kind):
    x, y = _data()
    xt, yt = _data(64, seed=1)
    if kind == "tf.data":
        val = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    else:
        val = [(x[i:i + 16], y[i:i + 16]) for i in range(0, len(x), 16)]
    runner = InferenceRunner(val, _infs(), verbose=False)
    first = _model(seed=1)
    first.fit(xt, yt, epochs=1, batch_size=16, verbose=0, callbacks=[runner])
    before = dict(runner.last_results)
    _check(before, _evaluate(first, x, y))

    clone = copy.deepcopy(runner)
    # No run state: no model, no results, no traced step; its own lock and inferencers.
    assert clone.model is None and clone.params is None
    assert clone.last_results == {} and clone.tracing_count == 0 and clone.pop_reports() == []
    assert all(a is not b for a, b in zip(clone.infs, runner.infs))
    if kind == "tf.data":
        assert clone.input.dataset is runner.input.dataset  # the input is shared, not copied

    second = _model(seed=2)
    second.fit(xt, yt, epochs=2, batch_size=16, verbose=0, callbacks=[clone])
    _check(clone.last_results, _evaluate(second, x, y))
    assert clone.last_results["validation_loss"] != pytest.approx(before["validation_loss"])
    assert runner.last_results == before  # the original is unaffected
    assert len(runner.pop_reports()) == 1 and len(clone.pop_reports()) == 2

    # The original still validates its own model after the copy ran.
    first.fit(xt, yt, epochs=1, batch_size=16, verbose=0, callbacks=[runner])
    _check(runner.last_results, _evaluate(first, x, y))


def test_a_dataflow_is_shared_and_reset_once():
    x, y = _data()

    class DataFlow:
        resets = 0

        def reset_state(self):
            DataFlow.resets += 1

        def __len__(self):
            return 4

        def __iter__(self):
            for i in range(0, len(x), 16):
                yield x[i:i + 16], y[i:i + 16]

    flow = DataFlow()
    runner = InferenceRunner(flow, ScalarStats("loss"), verbose=False)
    clone = copy.deepcopy(runner)
    model = _model(seed=3)
    clone.set_model(model)
    results = clone.trigger()
    _check(results, {"validation_loss": _evaluate(model, x, y)["validation_loss"]})
    assert DataFlow.resets == 1


def test_every_callback_of_a_search_copies_and_the_copies_run_on_their_own(tmp_path):
    x, y = _data()
    xt, yt = _data(64, seed=1)
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    callbacks = [
        InferenceRunner(val, _infs(), verbose=False),
        Monitors([ScalarPrinter(), JSONWriter(tmp_path / "logs", overwrite=True), TFEventWriter(tmp_path / "logs")]),
        ModelSaver(tmp_path / "ckpt"),
        MinSaver("validation_loss"),
        PeriodicTrigger(InferenceRunner(val, ScalarStats("loss", prefix="every2"), verbose=False),
                        every_k_epochs=2),
    ]
    _model(seed=1).fit(xt, yt, epochs=2, verbose=0, callbacks=callbacks)
    old_history = [dict(row) for row in callbacks[1].history]
    old_best = callbacks[3].best

    copies = copy.deepcopy(callbacks)
    runner, monitors, saver, best, trigger = copies
    assert monitors.history == [] and best.best is None and saver.saved == []
    assert trigger.callback is not callbacks[4].callback and trigger.every_k_epochs == 2
    assert all(w is not v for w, v in zip(monitors.writers, callbacks[1].writers))

    model = _model(seed=5)
    model.fit(xt, yt, epochs=2, verbose=0, callbacks=copies)
    expected = _evaluate(model, x, y)
    _check(runner.last_results, expected)
    np.testing.assert_allclose(trigger.callback.last_results["every2_loss"], expected["validation_loss"], rtol=1e-5)
    assert [row["epoch_num"] for row in monitors.history] == [1, 2]
    np.testing.assert_allclose(monitors.history[-1]["validation_loss"], expected["validation_loss"], rtol=1e-5)
    assert best.best == pytest.approx(min(r["validation_loss"] for r in monitors.history))
    assert callbacks[1].history == old_history and callbacks[3].best == old_best
    with open(os.path.join(best.checkpoint_dir, best.filename + ".json")) as f:
        assert json.load(f)["best"] == pytest.approx(best.best)
