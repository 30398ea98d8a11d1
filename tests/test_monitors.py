"""Monitors: stdout table, stats.json (atomic, resumable), TensorBoard events."""

from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_python
from infer_callbacks import ClassificationError, InferenceRunner, JSONWriter, Monitors, ScalarPrinter, ScalarStats, TFEventWriter


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = rng.integers(0, 3, size=96).astype("int32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    return model, ds


def _read_scalars(logdir):
    values = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                values.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    return values


def test_json_and_events_written_each_epoch(tmp_path, capsys):
    model, ds = _setup()
    logdir = str(tmp_path / "log")
    history = model.fit(ds, epochs=3, verbose=0, callbacks=[
        InferenceRunner(ds, [ScalarStats("loss"), ClassificationError()]),
        Monitors([ScalarPrinter(), JSONWriter(logdir), TFEventWriter(logdir)])])
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert [s["epoch_num"] for s in stats] == [1, 2, 3]
    assert [s["global_step"] for s in stats] == [3, 6, 9]
    assert [s["validation_loss"] for s in stats] == history.history["validation_loss"]
    assert [s["validation_error"] for s in stats] == history.history["validation_error"]
    scalars = _read_scalars(logdir)
    assert [step for step, _ in scalars["validation_loss"]] == [3, 6, 9]
    np.testing.assert_allclose([v for _, v in scalars["validation_loss"]], history.history["validation_loss"],
                               rtol=1e-6)
    out = capsys.readouterr().out
    assert out.count("validation_error") == 3 and "epoch 3" in out


def test_json_resume_appends_and_replaces_rerun_epochs(tmp_path):
    logdir = str(tmp_path)
    model, ds = _setup()
    model.fit(ds, epochs=3, verbose=0, callbacks=[InferenceRunner(ds, ScalarStats("loss")),
                                                  Monitors([JSONWriter(logdir)])])
    with pytest.warns(RuntimeWarning, match="replacing 1 entries from epoch 3"):
        model.fit(ds, epochs=5, initial_epoch=2, verbose=0,
                  callbacks=[InferenceRunner(ds, ScalarStats("loss")), Monitors([JSONWriter(logdir)])])
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert [s["epoch_num"] for s in stats] == [1, 2, 3, 4, 5]
    assert not [p for p in os.listdir(logdir) if p.startswith(".stats.json.")]  # no temp files left


@pytest.mark.parametrize("content", ["{not json", '{"a": 1}', "[1, 2]"])
def test_corrupt_or_foreign_stats_json_refused_and_kept(tmp_path, content):
    path = tmp_path / "stats.json"
    path.write_text(content)
    model, ds = _setup()
    with pytest.raises(ValueError, match="stats.json exists but .* left untouched"):
        model.fit(ds, epochs=1, verbose=0, callbacks=[Monitors([JSONWriter(str(tmp_path))])])
    assert path.read_text() == content


@pytest.mark.parametrize("writer", [JSONWriter, TFEventWriter])
def test_writer_without_logdir_raises(writer):
    with pytest.raises(ValueError, match="needs a log directory"):
        writer(None)


def test_unwritable_logdir(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/infer_callbacks_cannot_be_here"  # even root cannot create this
    else:
        os.chmod(tmp_path, 0o500)
        target = str(tmp_path / "sub")
    with pytest.raises(OSError, match="cannot create the log directory"):
        JSONWriter(target)


def test_monitors_rejects_non_writers():
    with pytest.raises(TypeError, match="list of writers"):
        Monitors(["stdout"])


def test_killed_mid_write_leaves_previous_file(tmp_path):
    # A process killed while writing stats.json never leaves a partial file:
    # the writer writes a temp file and renames it over the old one.
    logdir = str(tmp_path)
    code = f"""
        import os, json, signal
        from infer_callbacks.monitors import JSONWriter
        w = JSONWriter({logdir!r}); w.setup(None)
        w.write(1, 10, {{"validation_loss": 1.0}})
        json.dumps = lambda obj, **kw: '[{{"epoch_num": 2, "trunc'   # half an entry on disk...
        def dying_fsync(fd):
            os.kill(os.getpid(), signal.SIGKILL)                         # ...and the process dies
        os.fsync = dying_fsync
        w.write(2, 20, {{"validation_loss": 0.5}})
    """
    proc = run_python(code, timeout=60)
    assert proc.returncode == -9, proc.stderr
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert stats == [{"epoch_num": 1, "global_step": 10, "validation_loss": 1.0}]


def test_stats_json_keeps_readable_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        w = JSONWriter(str(tmp_path))
        w.setup(None)
        w.write(1, 1, {"a": 1.0})
        assert os.stat(w.path).st_mode & 0o777 == 0o644
        os.chmod(w.path, 0o640)
        w.write(2, 2, {"a": 2.0})
        assert os.stat(w.path).st_mode & 0o777 == 0o640  # an existing file keeps its mode
    finally:
        os.umask(old)
