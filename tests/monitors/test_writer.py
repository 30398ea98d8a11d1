"""The writers behind Monitors: JSONWriter (stats.json written atomically,
resumed, re-runs kept beside it, errors naming the file) and TFEventWriter,
each checked against what Keras's History holds or what was written before."""

from __future__ import annotations

import errno
import glob
import json
import os
import warnings

import pytest

from conftest import run_python
from helpers.monitors import read_scalars, classifier_and_data, read_stats
from infer_callbacks import InferenceRunner, JSONWriter, Monitors, ScalarStats, TFEventWriter


def _fit_fresh(logdir, epochs=2, seed=0, **writer_kw):
    model, ds = classifier_and_data(seed)
    model.fit(ds, epochs=epochs, verbose=0, callbacks=[
        InferenceRunner(ds, ScalarStats("loss")), Monitors([JSONWriter(logdir, **writer_kw)])])
    return model, ds


def test_json_resume_appends_and_replaces_rerun_epochs(tmp_path):
    logdir = str(tmp_path)
    model, ds = classifier_and_data()
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
    model, ds = classifier_and_data()
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


def test_killed_mid_write_leaves_previous_file(tmp_path):
    # A process killed while writing stats.json never leaves a partial file:
    # the writer writes a temp file and renames it over the old one.
    logdir = str(tmp_path)
    code = f"""
        import os, json, signal
        from infer_callbacks.monitors.callback import JSONWriter
        w = JSONWriter({logdir!r}); w.setup(None)
        w.write(1, 10, {{"validation_loss": 1.0}})
        json.dumps = lambda obj, **kw: '[{{"epoch_num": 2, "trunc'   # half an entry on disk...
        def dying_fsync(fd):
            os.kill(os.getpid(), signal.SIGKILL)                         # ...and the process dies
        os.fsync = dying_fsync
        w.write(2, 20, {{"validation_loss": 0.5}})
    """
    proc = run_python(code, timeout=300)
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


# ---- re-runs: never an error, never a lost file ---------------------------------------------

def test_rerun_keeps_previous_stats_json_beside_the_new_one(tmp_path):
    logdir = str(tmp_path)
    _fit_fresh(logdir, epochs=3, seed=0)
    first = read_stats(logdir)
    with pytest.warns(RuntimeWarning, match=r"held 3 epochs of another run.*kept as .*stats-1\.json"):
        _fit_fresh(logdir, epochs=2, seed=1)
    assert read_stats(logdir, "stats-1.json") == first
    second = read_stats(logdir)
    assert [s["epoch_num"] for s in second] == [1, 2]
    with pytest.warns(RuntimeWarning, match=r"stats-2\.json"):
        _fit_fresh(logdir, epochs=1, seed=2)
    assert read_stats(logdir, "stats-1.json") == first      # an older backup is never overwritten
    assert read_stats(logdir, "stats-2.json") == second
    assert len(read_stats(logdir)) == 1


def test_backup_skips_a_name_that_is_taken(tmp_path):
    (tmp_path / "stats-1.json").write_text("not mine")
    _fit_fresh(str(tmp_path), epochs=1)
    with pytest.warns(RuntimeWarning, match=r"stats-2\.json"):
        _fit_fresh(str(tmp_path), epochs=1)
    assert (tmp_path / "stats-1.json").read_text() == "not mine"


def test_overwrite_discards_the_old_file(tmp_path):
    _fit_fresh(str(tmp_path), epochs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _fit_fresh(str(tmp_path), epochs=1, overwrite=True)
    assert len(read_stats(str(tmp_path))) == 1
    assert sorted(os.listdir(tmp_path)) == ["stats.json"]


def test_resume_whose_steps_do_not_continue_the_file_starts_a_new_one(tmp_path):
    logdir = str(tmp_path)
    _fit_fresh(logdir, epochs=3)                           # epochs 1-3 end at steps 3, 6, 9
    model, ds = classifier_and_data()
    model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)  # another model, at step 1
    with pytest.warns(RuntimeWarning, match=r"steps do not lead to step 1: step 3 is recorded.*stats-1\.json"):
        model.fit(ds, epochs=3, initial_epoch=2, verbose=0,
                  callbacks=[InferenceRunner(ds, ScalarStats("loss")), Monitors([JSONWriter(logdir)])])
    assert [s["epoch_num"] for s in read_stats(logdir, "stats-1.json")] == [1, 2, 3]
    assert [s["epoch_num"] for s in read_stats(logdir)] == [3]


def test_a_write_whose_step_is_before_an_earlier_epochs_starts_a_new_file(tmp_path):
    first = JSONWriter(str(tmp_path))
    first.setup(None)
    for epoch, step in ((1, 3), (2, 6), (3, 9)):
        first.write(epoch, step, {"a": float(epoch)})
    again = JSONWriter(str(tmp_path))
    again.setup(None)  # step unknown: decided at the first write
    with pytest.warns(RuntimeWarning, match=r"do not lead to step 4 at epoch 3: step 6 is recorded.*stats-1\.json"):
        again.write(3, 4, {"a": 30.0})
    assert [s["epoch_num"] for s in read_stats(str(tmp_path), "stats-1.json")] == [1, 2, 3]
    assert read_stats(str(tmp_path)) == [{"epoch_num": 3, "global_step": 4, "a": 30.0}]


def test_standalone_setup_without_a_model_resumes(tmp_path):
    # setup(None) (a sidecar evaluator, the step unknown) keeps the rows.
    w = JSONWriter(str(tmp_path))
    w.setup(None)
    w.write(1, 10, {"a": 1.0})
    w = JSONWriter(str(tmp_path))
    w.setup(None)
    w.write(2, 20, {"a": 2.0})
    assert [s["epoch_num"] for s in read_stats(str(tmp_path))] == [1, 2]
    assert os.listdir(tmp_path) == ["stats.json"]


def test_disk_full_names_file_and_writer_and_keeps_previous_file(tmp_path, monkeypatch):
    from infer_callbacks import _util

    w = JSONWriter(str(tmp_path))
    w.setup(None)
    w.write(1, 10, {"validation_loss": 1.0})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(_util.os, "fsync", full_disk)      # the new file's data does not fit
    with pytest.raises(OSError, match=r"JSONWriter could not write .*stats\.json .*No space left") as info:
        w.write(2, 20, {"validation_loss": 0.5})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert read_stats(str(tmp_path)) == [{"epoch_num": 1, "global_step": 10, "validation_loss": 1.0}]
    assert os.listdir(tmp_path) == ["stats.json"]          # no temporary file left


def test_tfevent_writer_rerun_adds_an_event_file(tmp_path):
    for seed in (0, 1):
        model, ds = classifier_and_data(seed)
        model.fit(ds, epochs=1, verbose=0, callbacks=[
            InferenceRunner(ds, ScalarStats("loss")), Monitors([TFEventWriter(str(tmp_path))])])
    assert len(glob.glob(str(tmp_path / "events.out.tfevents.*"))) == 2
    assert len(read_scalars(str(tmp_path))["validation_loss"]) == 2


def test_rows_are_keyed_by_epoch_and_step_and_kept_sorted(tmp_path):
    # a mid-epoch run's row, its epoch's row, and a late result merged into the latter
    w = JSONWriter(str(tmp_path))
    w.setup(None)
    w.write(1, 8, {"loss": 1.0, "validation_loss": 0.7})
    w.write(1, 3, {"validation_loss": 0.9})      # written later, sorted before
    w.write(2, 16, {"loss": 0.5})
    w.write(1, 8, {"validation_recall_0": 0.25})
    assert read_stats(str(tmp_path)) == [
        {"epoch_num": 1, "global_step": 3, "validation_loss": 0.9},
        {"epoch_num": 1, "global_step": 8, "loss": 1.0, "validation_loss": 0.7, "validation_recall_0": 0.25},
        {"epoch_num": 2, "global_step": 16, "loss": 0.5}]
