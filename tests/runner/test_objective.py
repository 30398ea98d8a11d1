"""Objective: one key made of several, seen by every callback at the epoch
end whatever its place in the list (Keras's EarlyStopping before the runner),
in mid-epoch rows, under Keras's names; the improvement rules any/all/first.
Both backends (the suite runs under KERAS_BACKEND=jax too)."""

from __future__ import annotations

import copy
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import (ClassificationError, InferenceRunner, JSONWriter, MinSaver, Monitors, Objective,
                             PeriodicTrigger, ScalarStats)


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 0.5).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _model(lr=0.05):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class Seen(keras.callbacks.Callback):
    """Records what its on_epoch_end sees of ``key``."""

    def __init__(self, key):
        super().__init__()
        self.key, self.values = key, []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(logs.get(self.key))


def test_early_stopping_before_the_runner_sees_the_weighted_sum(tmp_path):
    seen = Seen("validation_objective")
    stop = keras.callbacks.EarlyStopping("validation_objective", mode="min", patience=1)
    saver = MinSaver("validation_objective", checkpoint_dir=tmp_path)
    objective = Objective("validation_objective", {"validation_loss": 1.0, "validation_error": 2.0})
    runner = InferenceRunner(_data(seed=1), [ScalarStats("loss"), ClassificationError()], verbose=False)
    # The objective and the runner last: every other callback comes before them.
    history = _model(lr=2.0).fit(_data(), epochs=12, verbose=0, callbacks=[seen, stop, saver, objective, runner])
    h = history.history
    expected = np.array(h["validation_loss"]) + 2 * np.array(h["validation_error"])
    np.testing.assert_allclose(h["validation_objective"], expected, rtol=1e-6)
    np.testing.assert_allclose(seen.values, expected, rtol=1e-6)  # not None: seen by a callback before it
    assert stop.best == pytest.approx(min(expected))
    assert len(expected) < 12 and stop.stopped_epoch > 0  # a large step: it stopped on the objective
    assert saver.best == pytest.approx(min(expected))


def test_keras_names_and_a_function_of_the_logs():
    """The inputs are found under Keras's names; keras_names=True publishes val_X."""
    runner = InferenceRunner(_data(seed=1), [ScalarStats("loss"), ClassificationError()], keras_names=True,
                             verbose=False)
    product = Objective("validation_product", lambda logs: logs["validation_loss"] * (1 + logs["val_error"]),
                        keras_names=True)
    summed = Objective("objective", {"validation_loss": 0.5, "validation_error": 0.5})
    stop = keras.callbacks.EarlyStopping("val_product", mode="min", patience=5)
    history = _model().fit(_data(), epochs=2, verbose=0, callbacks=[stop, product, summed, runner])
    h = history.history
    np.testing.assert_allclose(h["val_product"], np.array(h["val_loss"]) * (1 + np.array(h["val_error"])),
                               rtol=1e-6)
    np.testing.assert_allclose(h["objective"], 0.5 * np.array(h["val_loss"]) + 0.5 * np.array(h["val_error"]),
                               rtol=1e-6)
    assert "validation_product" not in h


def test_mid_epoch_runs_get_the_objective_in_their_rows(tmp_path):
    """every_k_steps=4 on 6-step epochs: mid-epoch runs at steps 4, 8; the
    rows at those steps in stats.json hold the objective too."""
    runner = PeriodicTrigger(InferenceRunner(_data(seed=1), ScalarStats("loss"), verbose=False), every_k_steps=4)
    objective = Objective("validation_objective", {"validation_loss": 3.0})
    _model().fit(_data(), epochs=2, verbose=0, callbacks=[
        Monitors([JSONWriter(tmp_path)]), objective, runner])
    rows = json.loads((tmp_path / "stats.json").read_text())
    measured = [r for r in rows if "validation_loss" in r]
    assert [r["global_step"] for r in measured] == [4, 8, 12]
    for r in measured:
        assert r["validation_objective"] == pytest.approx(3.0 * r["validation_loss"], rel=1e-6)


def _feed(objective, rows):
    """Drive the objective's epoch end by hand with ``rows`` of logs; the values it publishes."""
    out = []
    for epoch, row in enumerate(rows):
        logs = dict(row)
        objective.on_epoch_begin(epoch)
        objective.on_epoch_end(epoch, logs)
        out.append(logs.get(objective.key))
    return out


@pytest.mark.parametrize("rule, improvements", [
    ("any", [1, 2, 3, 3, 4]),     # stalls only when neither improves (epoch 4)
    ("all", [1, 1, 1, 1, 2]),     # both improve: epochs 1 and 5
    ("first", [1, 2, 2, 2, 3]),   # the loss improves: epochs 1, 2, 5
])
def test_improvement_rules(rule, improvements):
    rows = [{"validation_loss": 1.0, "validation_bleu": 10.0},
            {"validation_loss": 0.9, "validation_bleu": 9.0},   # loss better, bleu worse
            {"validation_loss": 0.95, "validation_bleu": 11.0},  # loss worse, bleu better
            {"validation_loss": 0.9, "validation_bleu": 11.0},   # ties: not an improvement
            {"validation_loss": 0.5, "validation_bleu": 12.0}]   # both better
    objective = Objective("validation_stall", {"validation_loss": "min", "validation_bleu": "max"}, rule=rule)
    assert _feed(objective, rows) == [-float(n) for n in improvements]
    assert objective.improvements == improvements[-1]


def test_a_carried_measurement_counts_once_and_a_missing_input_publishes_nothing():
    objective = Objective("v", {"a": "min"}, rule="any")
    assert _feed(objective, [{"a": 1.0}, {"a": 1.0}, {"b": 0.0}, {"a": 0.5}]) == [-1.0, -1.0, None, -2.0]


def test_early_stopping_on_a_rule_stops_after_patience_stalls():
    objective = Objective("validation_stall", {"a": "min", "b": "max"}, rule="all")
    stop = keras.callbacks.EarlyStopping("validation_stall", mode="min", patience=2)
    stop.set_model(_model())
    stop.on_train_begin()
    rows = [{"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 2.0}, {"a": 0.4, "b": 1.0}, {"a": 0.3, "b": 1.5},
            {"a": 0.2, "b": 3.0}]
    for epoch, row in enumerate(rows):
        logs = dict(row)
        objective.on_epoch_end(epoch, logs)
        stop.on_epoch_end(epoch, logs)
        if stop.model.stop_training:
            break
    assert epoch == 3  # improvements at epochs 1, 2; stalls at 3, 4


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(name="", weights_or_fn={"a": 1.0}), ValueError, "name=''"),
    (dict(name="o", weights_or_fn={}), TypeError, "non-empty dict"),
    (dict(name="o", weights_or_fn={"a": "x"}), ValueError, "finite numbers"),
    (dict(name="o", weights_or_fn={"a": 1.0}, rule="any"), ValueError, "'min' or 'max'"),
    (dict(name="o", weights_or_fn={"a": "min"}, rule="most"), ValueError, "rule='most'"),
    (dict(name="o", weights_or_fn={"a": 1.0}, mode="best"), ValueError, "mode='best'"),
    (dict(name="o", weights_or_fn=lambda logs: 0.0, rule="any"), ValueError, "not a function"),
    (dict(name="o", weights_or_fn={"a": "min"}, rule="any", mode="max"), ValueError, "mode='min'"),
])
def test_errors_name_the_bad_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        Objective(**kwargs)


def test_deepcopy_has_no_state_and_a_taken_key_is_refused():
    objective = Objective("validation_loss2", {"validation_loss": 2.0})
    _feed(objective, [{"validation_loss": 1.0}])
    twin = copy.deepcopy(objective)
    assert objective.value == 2.0 and twin.value is None and twin.weights_or_fn == objective.weights_or_fn
    with pytest.raises(ValueError, match="already hold"):
        _feed(Objective("validation_loss", {"validation_loss": 2.0}), [{"validation_loss": 1.0}])
