"""Re-runs into the same checkpoint directory: a new run keeps the earlier
run's checkpoints and best model (moved into ``run-<N>/``) and measures its
own best; a resume continues the directory in place. Both backends
(TensorFlow checkpoints, or Keras files under JAX)."""

from __future__ import annotations

import json
import os
import warnings

import keras
import numpy as np
import pytest

from helpers.savers import STEPS, stems
from helpers.trainer import train_ds, val_ds
from infer_callbacks import MinSaver, ModelSaver
from infer_callbacks.checkpoints import any_format as checkpoint
from infer_callbacks.checkpoints.layout import read_finished_marker


def dense_classifier(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit(model, ckdir, epochs, initial_epoch=0):
    return model.fit(train_ds(), validation_data=val_ds(), epochs=epochs, initial_epoch=initial_epoch,
                     verbose=0, callbacks=[ModelSaver(ckdir, max_to_keep=2), MinSaver("val_loss")])


def _restored(ckdir_or_prefix):
    fresh = dense_classifier(99)
    fresh.optimizer.build(fresh.trainable_variables)
    ModelSaver.restore(fresh, ckdir_or_prefix)
    return fresh.get_weights()


def _assert_same(weights_a, weights_b):
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


def _state(path):
    with open(path) as f:
        return json.load(f)


def test_a_new_run_keeps_the_earlier_runs_checkpoints_and_measures_its_own_best(tmp_path):
    ckdir = tmp_path / "ckpt"
    first = dense_classifier(0)
    history1 = _fit(first, ckdir, 3)
    first_weights = first.get_weights()
    first_best = _state(ckdir / "min-val_loss.json")
    first_listed = [(i.epoch, i.global_step) for i in checkpoint.list_checkpoints(ckdir)]
    assert first_listed == [(2, 2 * STEPS), (3, 3 * STEPS)]

    second = dense_classifier(1)  # a fresh model at global step 0: a new run
    with pytest.warns(RuntimeWarning, match=r"another run \(this run starts at global step 0: nothing was restored\).*run-1"):
        history2 = _fit(second, ckdir, 2)

    # The first run's files, whole and readable, in run-1.
    kept = ckdir / "run-1"
    assert [(i.epoch, i.global_step) for i in checkpoint.list_checkpoints(kept)] == first_listed
    _assert_same(_restored(kept), first_weights)
    assert _state(kept / "min-val_loss.json") == first_best
    assert first_best["best"] == pytest.approx(min(history1.history["val_loss"]), rel=1e-6)
    _restored(kept / first_best["checkpoint"])  # the best checkpoint moved with its state file
    assert read_finished_marker(kept)["global_step"] == 3 * STEPS

    # The second run's own checkpoints and best, measured on its own history.
    assert [(i.epoch, i.global_step) for i in checkpoint.list_checkpoints(ckdir)] == [
        (1, STEPS), (2, 2 * STEPS)]
    _assert_same(_restored(ckdir), second.get_weights())
    best = _state(ckdir / "min-val_loss.json")
    losses = history2.history["val_loss"]
    assert best["epoch"] == int(np.argmin(losses)) + 1
    assert best["best"] == pytest.approx(min(losses), rel=1e-6)
    assert stems(ckdir, "min-val_loss-") == [f"min-val_loss-{best['epoch']}"]

    # A third run never overwrites an earlier one kept aside.
    with pytest.warns(RuntimeWarning, match="run-2"):
        _fit(dense_classifier(2), ckdir, 1)
    _assert_same(_restored(kept), first_weights)
    _assert_same(_restored(ckdir / "run-2"), second.get_weights())


def test_a_resume_continues_in_place(tmp_path):
    ckdir = tmp_path / "ckpt"
    history1 = _fit(dense_classifier(0), ckdir, 2)
    before = sorted(os.listdir(ckdir))
    model = dense_classifier(1)
    model.optimizer.build(model.trainable_variables)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing moved, nothing to say
        history2 = _fit(model, ckdir, 4, initial_epoch=ModelSaver.restore(model, ckdir))
    assert not [n for n in os.listdir(ckdir) if n.startswith("run-")]
    assert [(i.epoch, i.global_step) for i in checkpoint.list_checkpoints(ckdir)] == [
        (3, 3 * STEPS), (4, 4 * STEPS)]
    _assert_same(_restored(ckdir), model.get_weights())
    # The best so far spans both parts of the run.
    losses = history1.history["val_loss"] + history2.history["val_loss"]
    best = _state(ckdir / "min-val_loss.json")
    assert best["epoch"] == int(np.argmin(losses)) + 1
    assert best["best"] == pytest.approx(min(losses), rel=1e-6)
    assert set(before) - set(os.listdir(ckdir)) <= {
        n for n in before if n.startswith(("ckpt-", "min-val_loss-"))}  # only rotated files went


def test_restoring_an_older_checkpoint_is_a_new_run(tmp_path):
    ckdir = tmp_path / "ckpt"
    _fit(dense_classifier(0), ckdir, 2)
    model = dense_classifier(1)
    model.optimizer.build(model.trainable_variables)
    older = checkpoint.list_checkpoints(ckdir)[0].path
    ModelSaver.restore(model, older)
    with pytest.warns(RuntimeWarning, match=rf"do not lead to step {STEPS}: step {2 * STEPS}.*run-1"):
        _fit(model, ckdir, 2, initial_epoch=1)
    assert [i.global_step for i in checkpoint.list_checkpoints(ckdir / "run-1")] == [STEPS, 2 * STEPS]
    assert [i.global_step for i in checkpoint.list_checkpoints(ckdir)] == [2 * STEPS]
