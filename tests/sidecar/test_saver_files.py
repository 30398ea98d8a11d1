"""SidecarEvaluator on ModelSaver's Keras-format checkpoints (what the
savers write on JAX, or with checkpoint_format="keras" on TensorFlow), on
both backends: exactly the checkpoints ``checkpoints.json`` lists, in order,
with their epoch and global step, never MinSaver's file beside them; each
row equals Keras's ``evaluate`` after Keras's ``load_weights`` of that
checkpoint; one deleted by ``max_to_keep`` before its turn is skipped with a
warning; the command line reads them too."""

from __future__ import annotations

import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import ClassificationError, MinSaver, ModelSaver, ScalarStats
from infer_callbacks.sidecar.cli import main as cli_main
from infer_callbacks.sidecar.evaluator import STATE_FILENAME, SidecarEvaluator

STEPS_PER_EPOCH = 3  # 48 training samples, batch 16
# The savers' Keras files: the default on JAX, asked for on TensorFlow.
FORMAT = {} if keras.backend.backend() == "jax" else {"checkpoint_format": "keras"}

_rng = np.random.default_rng(5)
X_TRAIN = _rng.normal(size=(48, 4)).astype("float32")
Y_TRAIN = _rng.integers(0, 3, 48)
X_VAL = _rng.normal(size=(40, 4)).astype("float32")
Y_VAL = _rng.integers(0, 3, 40)


def build_model() -> keras.Model:
    return classifier(seed=None, hidden=8, activation="softmax", optimizer=keras.optimizers.SGD(0.5),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def val_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((X_VAL, Y_VAL)).batch(16)  # 16, 16, 8


def fit(model, ckdir, epochs: int, *, initial_epoch: int = 0, max_to_keep: int = 5, best: bool = False):
    callbacks = [ModelSaver(ckdir, max_to_keep=max_to_keep, **FORMAT)]
    if best:
        callbacks.append(MinSaver("loss", **FORMAT))  # in ModelSaver's directory
    model.fit(X_TRAIN, Y_TRAIN, batch_size=16, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=callbacks)


def sidecar(ckdir, logdir, **kwargs) -> SidecarEvaluator:
    return SidecarEvaluator(build_model(), val_data(), [ScalarStats("loss"), ClassificationError()], ckdir,
                            logdir=logdir, poll_seconds=0.02, **kwargs)


def check_numbers(rows, ckdir) -> None:
    """Each row against Keras's evaluate on the checkpoint, loaded by Keras."""
    model = build_model()
    for r in rows:
        model.load_weights(os.path.join(ckdir, r["checkpoint"]))
        loss, accuracy = model.evaluate(X_VAL, Y_VAL, batch_size=40, verbose=0)
        np.testing.assert_allclose(r["validation_loss"], loss, rtol=1e-5)
        np.testing.assert_allclose(r["validation_error"], 1 - accuracy, atol=1e-7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs of ModelSaver + MinSaver in one directory."""
    keras.utils.set_random_seed(3)
    ckdir = tmp_path_factory.mktemp("saver_files") / "ckpt"
    fit(build_model(), ckdir, 3, best=True)
    assert glob.glob(str(ckdir / "min-loss-*.weights.h5")), os.listdir(ckdir)  # the best file is there
    return ckdir


def test_listed_checkpoints_in_order_with_epoch_and_step_and_no_best_file(trained, tmp_path):
    ev = sidecar(trained, tmp_path / "log")
    assert ev.checkpoint_format == "keras"  # auto: checkpoints.json
    rows = ev.run()
    assert ev.stop_reason == "finished"  # ModelSaver's training_finished marker
    assert [r["checkpoint"] for r in rows] == [f"ckpt-{s}.weights.h5" for s in (3, 6, 9)]
    assert [(r["epoch_num"], r["global_step"]) for r in rows] == [(1, 3), (2, 6), (3, 9)]
    assert ev.last_evaluated == 9
    check_numbers(rows, trained)
    with open(tmp_path / "log" / "stats.json") as f:
        assert [(s["epoch_num"], s["global_step"]) for s in json.load(f)] == [(1, 3), (2, 6), (3, 9)]
    assert sidecar(trained, tmp_path / "log").run() == []  # a restart: nothing twice


def test_a_directory_watched_before_checkpoints_json_exists(trained, tmp_path):
    """Started on an empty directory (checkpoint_format="keras"), the
    sidecar reads checkpoints.json once it appears."""
    ckdir = tmp_path / "ckpt"
    os.makedirs(ckdir)
    ev = sidecar(ckdir, tmp_path / "log", checkpoint_format="keras", max_evaluations=3)
    shutil.copytree(trained, ckdir, dirs_exist_ok=True)
    rows = ev.run()
    assert [(r["epoch_num"], r["global_step"]) for r in rows] == [(1, 3), (2, 6), (3, 9)]


def test_checkpoint_deleted_by_max_to_keep_before_its_turn_is_skipped(tmp_path):
    keras.utils.set_random_seed(3)
    ckdir, logdir = tmp_path / "ckpt", tmp_path / "log"
    model = build_model()
    fit(model, ckdir, 2, max_to_keep=2)  # ckpt-3, ckpt-6
    rows = sidecar(ckdir, logdir, max_evaluations=1).run()  # ckpt-3; ckpt-6 seen, not evaluated
    assert [r["checkpoint"] for r in rows] == ["ckpt-3.weights.h5"]
    fit(model, ckdir, 4, initial_epoch=2, max_to_keep=2)  # a resume: ckpt-9, ckpt-12; ckpt-6 deleted
    assert not os.path.exists(ckdir / "ckpt-6.weights.h5")
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint 'ckpt-6.weights.h5'.*max_to_keep"):
        rows = sidecar(ckdir, logdir).run()
    assert [(r["checkpoint"], r["epoch_num"], r["global_step"]) for r in rows] == [
        ("ckpt-9.weights.h5", 3, 9), ("ckpt-12.weights.h5", 4, 12)]
    check_numbers(rows, ckdir)
    with open(logdir / STATE_FILENAME) as f:
        state = json.load(f)
    assert state["skipped"] == ["ckpt-6.weights.h5"]
    assert state["evaluated"] == [f"ckpt-{s}.weights.h5" for s in (3, 9, 12)]


def test_command_line_reads_them(trained, tmp_path):
    logdir = tmp_path / "log"
    status = cli_main(["--model", "test_saver_files:build_model", "--input", "test_saver_files:val_data",
                       "--checkpoint-dir", str(trained), "--logdir", str(logdir), "--poll-seconds", "0.02",
                       "--checkpoint-format", "keras"])
    assert status == 0
    with open(logdir / "stats.json") as f:
        stats = json.load(f)
    assert [(s["epoch_num"], s["global_step"]) for s in stats] == [(1, 3), (2, 6), (3, 9)]
    check_numbers([dict(s, checkpoint=f"ckpt-{s['global_step']}.weights.h5") for s in stats], trained)
