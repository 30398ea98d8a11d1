"""Runs in the middle of an epoch (PeriodicTrigger every_k_steps= /
every_epoch_fraction=): a row of their own at their global step in
stats.json, TensorBoard and the console; the epoch's row and its logs
(History, EarlyStopping) keep the latest results."""

from __future__ import annotations

import glob
import io
import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import (InferenceRunner, JSONWriter, Monitors, PeriodicTrigger, ScalarPrinter,
                             ScalarStats, TFEventWriter)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 4)).astype("float32")
Y = RNG.integers(0, 3, size=32).astype("int32")
XV = RNG.normal(size=(12, 4)).astype("float32")
YV = RNG.integers(0, 3, size=12).astype("int32")
TRAIN = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)   # 8 steps per epoch
VAL = tf.data.Dataset.from_tensor_slices((XV, YV)).batch(5)


def _model():
    return classifier(optimizer=keras.optimizers.SGD(0.1))


def _val_loss(model):
    """Independent reference: numpy cross-entropy of the current weights on the validation set."""
    logits = model.predict_on_batch(XV).astype("float64")
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(YV)), YV].mean())


class LossByStep(keras.callbacks.Callback):
    """The reference validation loss after every training step."""

    def __init__(self):
        super().__init__()
        self.by_step = {}

    def on_train_batch_end(self, batch, logs=None):
        self.by_step[int(self.model.optimizer.iterations.numpy())] = _val_loss(self.model)


def _events(logdir):
    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    return out


def _fit(logdir, *, epochs=2, initial_epoch=0, model=None, console=None, **schedule):
    model = model or _model()
    ref, stop = LossByStep(), keras.callbacks.EarlyStopping("validation_loss", mode="min", patience=5)
    monitors = Monitors([ScalarPrinter(file=console or io.StringIO()), JSONWriter(logdir),
                         TFEventWriter(logdir)])
    history = model.fit(TRAIN, epochs=epochs, initial_epoch=initial_epoch, verbose=0, callbacks=[
        PeriodicTrigger(InferenceRunner(VAL, ScalarStats("loss")), **schedule), ref, stop, monitors])
    with open(os.path.join(logdir, "stats.json")) as f:
        stats = json.load(f)
    return model, history, ref.by_step, stop, monitors, stats


def test_every_k_steps_writes_a_row_per_run(tmp_path):
    logdir, console = str(tmp_path), io.StringIO()
    _, history, ref, stop, monitors, stats = _fit(logdir, every_k_steps=3, console=console)
    # runs at steps 3, 6 (epoch 1), 9, 12, 15 (epoch 2); epoch rows at 8 and 16
    assert [(r["epoch_num"], r["global_step"]) for r in stats] == [
        (1, 3), (1, 6), (1, 8), (2, 9), (2, 12), (2, 15), (2, 16)]
    runs = [r for r in stats if r["global_step"] % 8]
    for row in runs:
        assert set(row) == {"epoch_num", "global_step", "validation_loss"}
        np.testing.assert_allclose(row["validation_loss"], ref[row["global_step"]], rtol=1e-5)
    # the epoch's row: its training metrics only; the latest validation result
    # (steps 6 and 15) is in its logs, but written once, in the row of its step
    ends = [r for r in stats if r["global_step"] % 8 == 0]
    assert [r["loss"] for r in ends] == pytest.approx(history.history["loss"])
    assert ["validation_loss" in r for r in ends] == [False, False]
    # History and EarlyStopping get the latest results at each epoch end
    assert history.history["validation_loss"] == pytest.approx([ref[6], ref[15]], rel=1e-5)
    assert stop.best == pytest.approx(min(ref[6], ref[15]), rel=1e-5)
    # TensorBoard: each value once, at the step it was measured
    events = _events(logdir)
    assert [s for s, _ in events["validation_loss"]] == [3, 6, 9, 12, 15]
    np.testing.assert_allclose([v for _, v in events["validation_loss"]], [ref[s] for s in (3, 6, 9, 12, 15)],
                               rtol=1e-5)
    assert [s for s, _ in events["loss"]] == [8, 16]
    # the console prints a table per run, then per epoch
    out = console.getvalue()
    assert [line.split()[1:4] for line in out.splitlines() if line.startswith("epoch")] == [
        ["1", "step", "3"], ["1", "step", "6"], ["1", "step", "8"], ["2", "step", "9"],
        ["2", "step", "12"], ["2", "step", "15"], ["2", "step", "16"]]
    assert monitors.get_history("validation_loss") == [(s, pytest.approx(ref[s], rel=1e-5))
                                                       for s in (3, 6, 9, 12, 15)]


def test_quarters_of_an_epoch_merge_the_last_into_the_epoch_row(tmp_path):
    _, history, ref, _, _, stats = _fit(str(tmp_path), every_epoch_fraction=0.25)
    assert [(r["epoch_num"], r["global_step"]) for r in stats] == [
        (1, 2), (1, 4), (1, 6), (1, 8), (2, 10), (2, 12), (2, 14), (2, 16)]
    assert [("loss" in r) for r in stats] == [False, False, False, True] * 2
    for row in stats:
        np.testing.assert_allclose(row["validation_loss"], ref[row["global_step"]], rtol=1e-5)
    assert history.history["validation_loss"] == pytest.approx([ref[8], ref[16]], rel=1e-5)
    assert [s for s, _ in _events(str(tmp_path))["validation_loss"]] == [2, 4, 6, 8, 10, 12, 14, 16]


def test_a_resume_keeps_the_earlier_rows_and_replaces_the_rest(tmp_path):
    logdir = str(tmp_path)
    model, _, _, _, _, first = _fit(logdir, epochs=2, every_k_steps=3)
    # the run stops after epoch 2; a resume from epoch 1's end re-runs epoch 2 and adds 3
    model.optimizer.iterations.assign(8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, ref, _, _, stats = _fit(logdir, epochs=3, initial_epoch=1, model=model, every_k_steps=3)
    assert any("replacing 4 entries from epoch 2" in str(w.message) for w in caught)
    assert stats[:3] == first[:3]                                    # epoch 1: runs at 3, 6; end at 8
    assert [(r["epoch_num"], r["global_step"]) for r in stats[3:]] == [
        (2, 9), (2, 12), (2, 15), (2, 16), (3, 18), (3, 21), (3, 24)]
    np.testing.assert_allclose(stats[3]["validation_loss"], ref[9], rtol=1e-5)
    assert not os.path.exists(os.path.join(logdir, "stats-1.json"))  # a resume, not a new run


def test_with_keras_printing_the_logs_the_console_shows_the_runs_after_the_epoch_line(tmp_path, capsys):
    console = io.StringIO()

    class Mark(keras.callbacks.Callback):  # where Keras's epoch line ends, in the printer's file
        def on_epoch_begin(self, epoch, logs=None):
            console.write(f"<epoch {epoch + 1} begins>\n")

    model = _model()
    model.fit(TRAIN, epochs=2, verbose=2, callbacks=[
        PeriodicTrigger(InferenceRunner(VAL, ScalarStats("loss")), every_k_steps=5),
        Monitors([ScalarPrinter(file=console)]), Mark()])
    lines = [" ".join(line.split()) for line in console.getvalue().splitlines() if line.startswith(("epoch", "<"))]
    # runs at 5 (epoch 1), 10, 15 (epoch 2), printed once their epoch ended; the epoch rows hold
    # only what Keras printed, so no table of their own
    assert lines == ["<epoch 1 begins>", "epoch 1 step 5", "<epoch 2 begins>",
                     "epoch 2 step 10", "epoch 2 step 15"]
    assert "validation_loss" in capsys.readouterr().out  # Keras's own epoch line


def test_a_number_is_written_only_in_the_row_of_its_step(tmp_path):
    """The issue's case (every_k_steps=4, start_after_steps=10, 10-step
    epochs: rows at 28 and 30 with the same validation_loss), here with
    8-step epochs: every_k_steps=3 from step 10 runs at 12, 15, ..., 30; the
    epoch ends at 16 and 32 measured nothing, so their rows, TensorBoard
    steps and console tables hold no validation_loss (their logs still carry
    the latest, steps 15 and 30)."""
    logdir, console = str(tmp_path), io.StringIO()
    _, history, ref, _, _, stats = _fit(logdir, epochs=4, every_k_steps=3, start_after_steps=10, console=console)
    measured = [r["global_step"] for r in stats if "validation_loss" in r]
    assert measured == [12, 15, 18, 21, 24, 27, 30]
    for step in (16, 32):
        (row,) = [r for r in stats if r["global_step"] == step]
        assert "validation_loss" not in row and "loss" in row
    assert history.history["validation_loss"] == pytest.approx([ref[15], ref[24], ref[30]], rel=1e-5)
    assert [s for s, _ in _events(logdir)["validation_loss"]] == measured
    values = [r["validation_loss"] for r in stats if "validation_loss" in r]
    assert len(values) == len(set(values))  # no value written twice
    tables = {t.split()[2]: t for t in console.getvalue().split("epoch ")[1:]}
    assert "validation_loss" not in tables["32"] and "validation_loss" in tables["30"]
