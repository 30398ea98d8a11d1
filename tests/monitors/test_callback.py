"""Monitors: stdout table, stats.json and TensorBoard events from logs and sibling
runners' reports (the writers themselves: test_writer.py)."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from conftest import run_python
from helpers.monitors import read_events, read_scalars, classifier_and_data, read_stats  # noqa: F401
from infer_callbacks import (ClassificationError, InferenceRunner, JSONWriter, Monitors, MonitorWriter,
                             ScalarPrinter, ScalarStats, TFEventWriter)


def test_json_and_events_written_each_epoch(tmp_path, capsys):
    model, ds = classifier_and_data()
    logdir = str(tmp_path / "log")
    history = model.fit(ds, epochs=3, verbose=0, callbacks=[
        InferenceRunner(ds, [ScalarStats("loss"), ClassificationError()]),
        Monitors([ScalarPrinter(), JSONWriter(logdir), TFEventWriter(logdir)])])
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert [s["epoch_num"] for s in stats] == [1, 2, 3]
    assert [s["global_step"] for s in stats] == [3, 6, 9]
    assert [s["validation_loss"] for s in stats] == history.history["validation_loss"]
    assert [s["validation_error"] for s in stats] == history.history["validation_error"]
    scalars = read_scalars(logdir)
    assert [step for step, _ in scalars["validation_loss"]] == [3, 6, 9]
    np.testing.assert_allclose([v for _, v in scalars["validation_loss"]], history.history["validation_loss"],
                               rtol=1e-6)
    out = capsys.readouterr().out
    assert out.count("validation_error") == 3 and "epoch 3" in out


def test_monitors_rejects_non_writers():
    with pytest.raises(TypeError, match="list of writers"):
        Monitors(["stdout"])


# ---- reports of sibling runners ------------------------------------------------------------

@dataclasses.dataclass
class _Report:  # the fields of report.Report (Monitors read them by name)
    epoch_num: int
    global_step: int
    scalars: dict = dataclasses.field(default_factory=dict)
    monitor_scalars: dict = dataclasses.field(default_factory=dict)
    images: dict = dataclasses.field(default_factory=dict)


class _FakeRunner(keras.callbacks.Callback):
    """Puts `validation_x` into logs and reports it, like a runner. With
    `lag=1` it reports epoch e's value at epoch e+1 (asynchronous)."""

    def __init__(self, lag=0):
        super().__init__()
        self.lag, self.pending, self.reports = lag, [], []

    def pop_reports(self):
        out, self.reports = self.reports, []
        return out

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        value = 10.0 * (epoch + 1)
        self.pending.append(_Report(
            epoch + 1, step, {"validation_x": value},
            {"validation_recall_0": value / 100, "validation_recall_1": value / 200},
            {"validation_image": np.full((4, 4, 3), epoch, np.uint8)}))
        if len(self.pending) > self.lag:
            report = self.pending.pop(0)
            logs["validation_x"] = report.scalars["validation_x"]
            self.reports.append(report)


@pytest.fixture
def siblings_found():
    """Monitors meet the runners of their fit through keras_glue's run:
    nothing to hand over."""
    return None


def _fit_with(runner, writers, holder, epochs=3, verbose=0):
    model, ds = classifier_and_data()
    if holder is not None:
        holder["sources"] = [runner]
    monitors = Monitors(writers)
    history = model.fit(ds, epochs=epochs, verbose=verbose, callbacks=[runner, monitors])
    return monitors, history


def test_reports_monitor_scalars_and_images_go_to_the_writers_not_logs(tmp_path, siblings_found):
    logdir = str(tmp_path)
    monitors, history = _fit_with(_FakeRunner(), [JSONWriter(logdir), TFEventWriter(logdir)],
                                  siblings_found)
    assert "validation_recall_0" not in history.history
    stats = read_stats(logdir)
    assert [s["validation_recall_0"] for s in stats] == [0.1, 0.2, 0.3]
    assert [s["validation_x"] for s in stats] == [10.0, 20.0, 30.0]
    events = read_events(logdir)
    assert [step for step, _ in events["validation_image"]] == [3, 6, 9]
    assert [step for step, _ in events["validation_recall_1"]] == [3, 6, 9]
    assert monitors.get_latest("validation_recall_0") == 0.3
    assert monitors.get_history("validation_x") == [(3, 10.0), (6, 20.0), (9, 30.0)]
    with pytest.raises(KeyError, match="no value for 'nope'.*validation_x"):
        monitors.get_latest("nope")


def test_late_reports_are_written_under_their_epoch(tmp_path, siblings_found):
    # An asynchronous runner reports epoch e at the end of epoch e+1 (and the
    # rest at train end): stats.json merges each into its own epoch's row.
    logdir = str(tmp_path)
    runner = _FakeRunner(lag=1)
    original_end = runner.on_train_end

    def flush(logs=None):
        runner.reports.extend(runner.pending)
        runner.pending = []
        original_end(logs)
    runner.on_train_end = flush
    _fit_with(runner, [JSONWriter(logdir), TFEventWriter(logdir)], siblings_found)
    stats = read_stats(logdir)
    assert [s["epoch_num"] for s in stats] == [1, 2, 3]
    assert [s.get("validation_x") for s in stats] == [10.0, 20.0, 30.0]
    assert [s["global_step"] for s in stats] == [3, 6, 9]
    assert all("loss" in s for s in stats)
    assert read_scalars(logdir)["validation_x"] == [(3, 10.0), (6, 20.0), (9, 30.0)]


def test_images_are_never_read_from_the_model(tmp_path):
    model, ds = classifier_and_data()
    model.fit(ds, epochs=1, verbose=0)
    seen = []

    class Recorder(MonitorWriter):
        def write(self, epoch_num, step, scalars):
            pass

        def write_images(self, epoch_num, step, images):
            seen.append(images)
    monitors = Monitors([Recorder()])
    monitors.set_model(model)
    object.__setattr__(model, "_infer_callbacks_images", {"old_path": np.zeros((2, 2, 1), np.uint8)})
    monitors.on_train_begin()
    monitors.on_epoch_end(0, {"loss": 1.0})
    monitors.on_train_end()
    assert seen == []


# ---- the console ---------------------------------------------------------------------------

def _lines(text):
    return [line.split("\r")[-1].split("\x08")[-1] for line in text.splitlines()]


@pytest.mark.parametrize("verbose", [1, 2])
def test_console_with_keras_progress_output_prints_each_value_once(capsys, siblings_found, verbose):
    _fit_with(_FakeRunner(), [ScalarPrinter()], siblings_found, epochs=2, verbose=verbose)
    out = capsys.readouterr().out
    lines = _lines(out)
    for epoch in (1, 2):
        header = next(i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch} "))
        # the table follows Keras's finished line for that epoch, on its own lines
        assert "validation_x: " in lines[header - 1], lines[header - 3:header + 3]
    assert not any("epoch " in line and not line.startswith("epoch ") and "Epoch" not in line
                   for line in lines), out
    # what the progress line shows is not printed again; the monitor-only values are
    assert out.count("validation_recall_0") == 2
    assert not any(line.startswith(("loss ", "validation_x ")) for line in lines)
    assert out.index("epoch 1 ") < out.index("Epoch 2/2") if verbose == 1 else True


def test_console_verbose_0_prints_everything(capsys):
    model, ds = classifier_and_data()
    model.fit(ds, epochs=2, verbose=0, callbacks=[
        InferenceRunner(ds, [ScalarStats("loss"), ClassificationError()]), Monitors([ScalarPrinter()])])
    lines = _lines(capsys.readouterr().out)
    assert sum(line.startswith("validation_loss ") for line in lines) == 2
    assert sum(line.startswith("loss ") for line in lines) == 2


def test_console_in_a_real_fit_verbose_1(tmp_path):
    # The runner's keys are on Keras's progress line; the table adds nothing
    # twice, and starts on its own line when it prints (repeat_keras_logs=True).
    proc = run_python("""
        import keras, numpy as np, tensorflow as tf
        from infer_callbacks import InferenceRunner, ScalarStats, ClassificationError, Monitors, ScalarPrinter
        x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("int32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        model.fit(ds, epochs=2, verbose=1, callbacks=[
            InferenceRunner(ds, [ScalarStats("loss"), ClassificationError()]),
            Monitors([ScalarPrinter(), ScalarPrinter(repeat_keras_logs=True)])])
    """, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _lines(proc.stdout)
    headers = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    assert len(headers) == 2                               # the repeating printer only
    for i in headers:
        assert "validation_error: " in lines[i - 1]        # right after the finished bar
    assert not any("epoch " in line and not line.startswith("epoch ") and "Epoch" not in line
                   for line in lines), proc.stdout


def test_monitors_standalone_open_write_close(tmp_path, capsys):
    monitors = Monitors([ScalarPrinter(), JSONWriter(str(tmp_path))])
    monitors.open()
    monitors.write(4, 400, {"validation_loss": 0.5}, {"img": np.zeros((2, 2), np.uint8)})
    monitors.write(4, 400, {"validation_error": 0.25}, console_skip=["validation_error"])
    monitors.close()
    assert read_stats(str(tmp_path)) == [
        {"epoch_num": 4, "global_step": 400, "validation_loss": 0.5, "validation_error": 0.25}]
    out = capsys.readouterr().out
    assert "validation_loss" in out and "validation_error" not in out


def test_a_worker_other_than_the_chief_prints_but_writes_no_file(tmp_path, monkeypatch, capsys):
    """On a non-chief worker (TF_CONFIG worker 1) only the console writers
    run; the files are the chief's."""
    import json as _json

    import keras as _keras

    from infer_callbacks import JSONWriter as _JSONWriter
    from infer_callbacks import Monitors as _Monitors
    from infer_callbacks import ScalarPrinter as _ScalarPrinter

    monkeypatch.setenv("TF_CONFIG", _json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                 "task": {"type": "worker", "index": 1}}))
    model = _keras.Sequential([_keras.Input((2,)), _keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1, verbose=0,
              callbacks=[_Monitors([_ScalarPrinter(), _JSONWriter(tmp_path)])])
    assert not (tmp_path / "stats.json").exists()
    assert "loss" in capsys.readouterr().out
