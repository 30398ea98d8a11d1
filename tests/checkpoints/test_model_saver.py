"""ModelSaver keeps the latest N checkpoints, writes the "finished" marker
(removed when training starts again), and training resumes from its
directory with the weights, the optimizer's state and the epoch: a resumed
fit continues exactly as an uninterrupted one (both backends; the trainer
host's resume is TensorFlow-only)."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from helpers.savers import STEPS, fit, model, stems
from helpers.trainer import Linear, Recorder, train_ds
from infer_callbacks import ModelSaver, SimpleTrainer, TrainConfig, launch_train_with_config
from infer_callbacks.checkpoints import any_format, layout as checkpoint


def test_a_resumed_fit_continues_exactly_as_an_uninterrupted_one(tmp_path):
    ckdir = tmp_path / "ckpt"
    whole = fit([], 4)
    fit([ModelSaver(ckdir, max_to_keep=2)], 2)
    assert stems(ckdir, "ckpt-") == sorted([f"ckpt-{STEPS}", f"ckpt-{2 * STEPS}"])  # ckpt-<global step>
    assert [(i.epoch, i.global_step) for i in any_format.list_checkpoints(ckdir)] == [(1, STEPS), (2, 2 * STEPS)]
    resumed = model(99)  # other initial weights: everything comes from the checkpoint
    done = ModelSaver.restore(resumed, ckdir)
    assert done == 2 and int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 2 * STEPS
    fit([ModelSaver(ckdir, max_to_keep=2)], 4, resumed, initial_epoch=done)
    for a, b in zip(resumed.get_weights() + [keras.ops.convert_to_numpy(v) for v in resumed.optimizer.variables],
                    whole.get_weights() + [keras.ops.convert_to_numpy(v) for v in whole.optimizer.variables]):
        np.testing.assert_array_equal(a, b)  # weights and Adam's moments
    assert [(i.epoch, i.global_step) for i in any_format.list_checkpoints(ckdir)] == [
        (3, 3 * STEPS), (4, 4 * STEPS)]  # kept the latest 2, in place (a resume)
    assert stems(ckdir, "ckpt-") == sorted([f"ckpt-{3 * STEPS}", f"ckpt-{4 * STEPS}"])
    assert not [n for n in os.listdir(ckdir) if n.startswith((".", "run-"))]
    marker = checkpoint.read_finished_marker(ckdir)
    assert (marker["epoch"], marker["global_step"]) == (4, 4 * STEPS)
    assert marker["checkpoint"].startswith(f"ckpt-{4 * STEPS}")


@pytest.mark.tensorflow_only("the ModelDesc trainer host (session_init=dir) needs TensorFlow")
def test_model_saver_keeps_n_and_resumes(tmp_path):
    ckdir = tmp_path / "ckpt"
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=4, verbose=0,
                                         callbacks=[ModelSaver(ckdir, max_to_keep=2)]), trainer)
    names = sorted(n for n in os.listdir(ckdir) if n.endswith(".index"))
    assert names == [f"ckpt-{3 * STEPS}.index", f"ckpt-{4 * STEPS}.index"]  # ckpt-<global step>
    infos = checkpoint.list_checkpoints(ckdir)
    assert [(i.epoch, i.global_step) for i in infos] == [(3, 3 * STEPS), (4, 4 * STEPS)]
    assert checkpoint.read_finished_marker(ckdir) == {
        "epoch": 4, "global_step": 4 * STEPS, "checkpoint": f"ckpt-{4 * STEPS}"}
    saved = [v.numpy().copy() for v in trainer.model.weights]
    steps = int(trainer.model.optimizer.iterations.numpy())

    class AtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [w.copy() for w in self.model.get_weights()]
            self.iterations = int(self.model.optimizer.iterations.numpy())

    rec, start = Recorder(), AtStart()
    resumed = SimpleTrainer()
    history = launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=6, verbose=0,
                                                   session_init=str(ckdir), callbacks=[start, rec]), resumed)
    assert [i for n, i, _ in rec.calls if n == "epoch_begin"] == [4, 5]  # epochs 5 and 6
    assert len(history.history["loss"]) == 2
    for a, b in zip(start.weights, saved):
        np.testing.assert_array_equal(a, b)
    assert start.iterations == steps  # the optimizer's state came back too
    with pytest.raises(FileNotFoundError, match="nothing"):
        launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=1, verbose=0,
                                             session_init=str(tmp_path / "nothing")), SimpleTrainer())


def test_model_saver_saves_again_in_a_second_fit(tmp_path):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    net.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    saver = ModelSaver(tmp_path / "ckpt")
    for _ in range(2):
        net.fit(train_ds(), epochs=1, verbose=0, callbacks=[saver])
    final = [w.copy() for w in net.get_weights()]
    fresh = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    fresh.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fresh.optimizer.build(fresh.trainable_variables)
    ModelSaver.restore(fresh, tmp_path / "ckpt")
    for a, b in zip(fresh.get_weights(), final):
        np.testing.assert_array_equal(a, b)


def test_finished_marker_is_removed_when_training_starts_again(tmp_path):
    seen = []

    class Look(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(checkpoint.read_finished_marker(tmp_path))

    saver, net = ModelSaver(tmp_path), model()
    for epochs in (1, 2):  # the same model trained on: a resume
        fit([saver, Look()], epochs, net, initial_epoch=epochs - 1)
    assert seen == [None, None]  # epoch 1, then epoch 2 of the resumed fit
    assert checkpoint.read_finished_marker(tmp_path)["epoch"] == 2
