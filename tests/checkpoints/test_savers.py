"""MinSaver / MaxSaver keep the best epoch whatever their place in the
callback list, remember the best value across a restart, and work under Keras
`fit` and inside a step trigger too (ModelSaver itself: test_model_saver.py).
On both backends (TensorFlow checkpoints under TensorFlow, Keras
``.weights.h5`` files under JAX): the helpers below name checkpoints by their
stem and read either format."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf  # tf.data input: both backends' fit take it

from helpers.savers import STEPS, Scripted, fit, model, resumable, stems  # noqa: F401
from infer_callbacks import InferenceRunner, MaxSaver, MinSaver, ModelSaver, PeriodicTrigger, ScalarStats
from infer_callbacks.checkpoints import any_format as checkpoint


@pytest.mark.parametrize("saver_first", [True, False])
def test_min_saver_picks_best_epoch_in_any_order(tmp_path, saver_first):
    scripted = Scripted([3.0, 1.0, 2.0])
    saver = MinSaver("score", checkpoint_dir=tmp_path)
    callbacks = [saver, scripted] if saver_first else [scripted, saver]
    net = fit(callbacks, 3)
    state = json.loads((tmp_path / "min-score.json").read_text())
    assert state["best"] == 1.0 and state["epoch"] == 2 and saver.best_epoch == 2
    # Only the best checkpoint is kept (no temporary files), and it holds epoch 2's weights.
    assert stems(tmp_path, "min-score-") == ["min-score-2"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    info = checkpoint.restore(net, saver.checkpoint_path)
    assert (info.epoch, info.global_step) == (2, 2 * STEPS)
    for a, b in zip(net.get_weights(), scripted.weights[2]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(scripted.weights[2][0], scripted.weights[3][0])


def test_best_value_survives_resume(tmp_path):
    first = MaxSaver("score", checkpoint_dir=tmp_path)
    fit([first, Scripted([0.5, 0.9])], 2)
    assert first.best == 0.9 and first.best_epoch == 2
    # Resume from the best checkpoint (epoch 2, its global step): 0.7 at epoch 3 is
    # below the remembered 0.9 (not saved); 0.95 at epoch 4 is.
    second = MaxSaver("score", checkpoint_dir=tmp_path)
    scripted = Scripted([0.7, 0.95])

    class Check(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                state = json.loads((tmp_path / "max-score.json").read_text())
                assert (state["best"], state["epoch"]) == (0.9, 2)

    net, done = resumable(first.checkpoint_path)
    assert done == 2
    fit([second, Check(), scripted], 4, net, initial_epoch=done)
    state = json.loads((tmp_path / "max-score.json").read_text())
    assert (state["best"], state["epoch"]) == (0.95, 4)
    assert stems(tmp_path) == ["max-score-4"]
    mismatched = MinSaver("score", checkpoint_dir=tmp_path, filename="max-score")
    mismatched.set_model(net)  # at the recorded step: a resume, which must match
    with pytest.raises(ValueError, match="not the min"):
        mismatched.on_train_begin()


def test_min_saver_under_fit_before_the_runner(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    y = (x.sum(1) > 0).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    saver = MinSaver("validation_loss", checkpoint_dir=tmp_path)
    runner = InferenceRunner(ds, ScalarStats("loss"), verbose=False)
    history = model.fit(ds, epochs=3, verbose=0, shuffle=False, callbacks=[saver, runner])
    losses = history.history["validation_loss"]
    assert saver.best == pytest.approx(min(losses))
    assert saver.best_epoch == int(np.argmin(losses)) + 1
    assert stems(tmp_path) == [f"min-validation_loss-{saver.best_epoch}"]
    assert checkpoint.restore(model, saver.checkpoint_path).epoch == saver.best_epoch


def test_min_saver_uses_model_saver_dir_and_needs_one(tmp_path):
    saver = MinSaver("score")
    fit([saver, ModelSaver(tmp_path), Scripted([1.0])], 1)
    assert (tmp_path / "min-score.json").exists()
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit([MinSaver("score"), Scripted([1.0])], 1)


def test_tensorpack_argument_names():
    saver = MinSaver(monitor_stat="val-error", reverse=True, filename="best", checkpoint_dir="x")
    assert (saver.mode, saver.monitor, saver.monitor_stat, saver.filename) == ("max", "val-error", "val-error", "best")
    saver = MaxSaver("accuracy", "best-acc")  # tensorpack: MaxSaver(monitor_stat, filename)
    assert (saver.mode, saver.filename) == ("max", "best-acc")
    assert MinSaver("loss").filename == "min-loss"
    with pytest.raises(ValueError, match="monitor_stat='b'"):
        MinSaver("a", monitor_stat="b")
    with pytest.raises(TypeError, match=r"ModelSaver\(checkpoint_dir=..., max_to_keep=3\)"):
        ModelSaver(3)
    with pytest.raises(ValueError, match="var_collections"):
        ModelSaver("x", var_collections=["trainable"])


def test_savers_inside_a_step_trigger(tmp_path):
    """tensorpack's PeriodicTrigger(MaxSaver(...), every_k_steps=...): the
    ModelSaver saves at global steps 10, 20, ...; MaxSaver decides on the logs
    that carry the statistic (here from a scripted producer every 10 steps)."""

    class EveryTen(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step, self.weights = 0, {}

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % 10 == 0:
                logs["score"] = {10: 1.0, 20: 3.0, 30: 2.0}.get(self.step, 0.5)
                self.weights[self.step] = [w.copy() for w in self.model.get_weights()]

    producer = EveryTen()
    best = MaxSaver(monitor_stat="score", checkpoint_dir=tmp_path)
    net = fit([producer, PeriodicTrigger(ModelSaver(tmp_path, max_to_keep=10), every_k_steps=10),
               PeriodicTrigger(best, every_k_steps=10)], 4)
    infos = checkpoint.list_checkpoints(tmp_path)
    assert [i.global_step for i in infos][:5] == [10, 20, 30, 40, 50]
    assert [i.epoch for i in infos][:5] == [1, 2, 3, 4, 4]  # 13 steps per epoch
    state = json.loads((tmp_path / "max-score.json").read_text())
    assert (state["best"], state["global_step"]) == (3.0, 20)
    checkpoint.restore(net, best.checkpoint_path)
    for a, b in zip(net.get_weights(), producer.weights[20]):
        np.testing.assert_array_equal(a, b)


def test_best_saver_can_save_given_weights(tmp_path):
    """What asynchronous validation needs: save the snapshot it measured,
    not the model's current weights."""
    saver = MinSaver("score", checkpoint_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="'score' is not in the logs of epoch 1"):
        net = fit([saver], 1)
    snapshot = [np.full(w.shape, 0.25, w.dtype) for w in net.get_weights()]
    current = net.get_weights()
    saver._save(0, 1.0, weights=snapshot)
    for a, b in zip(net.get_weights(), current):  # the model keeps its own weights
        np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="holds no optimizer state"):
        checkpoint.restore(net, saver.checkpoint_path, optimizer=net.optimizer)
    for w in net.get_weights():
        np.testing.assert_array_equal(w, 0.25)
    assert not np.array_equal(current[0], snapshot[0])
