"""The sidecar's blind spots, as a user meets them on the command line
(``python -m infer_callbacks.sidecar`` in a subprocess, with a timeout so a
hang fails): a new training run in the watched directory, a directory with
no checkpoints (missing, empty, the parent of the real one), a file given
as a directory, progress bars in a log file. Both backends (TensorFlow
checkpoints, Keras-format files on JAX)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import keras
import pytest

from infer_callbacks.sidecar.runs import aside_runs, checkpoints_nearby, keep_results_aside
from helpers.sidecar import ROOT, STEPS_PER_EPOCH, build_model, check_rows, stats, train

TIMEOUT = 180


def sidecar(ckdir, logdir, *args) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "tests", "sidecar"), os.path.join(ROOT, "tests"), ROOT]))
    return subprocess.Popen(
        [sys.executable, "-m", "infer_callbacks.sidecar", "--model", "test_evaluator:build_model",
         "--input", "test_evaluator:val_data", "--checkpoint-dir", str(ckdir), "--logdir", str(logdir),
         "--poll-seconds", "0.05", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the sidecar did not stop within {TIMEOUT} s:\n{err[-3000:]}")
    return proc.returncode, err


def wait_for_line(proc, text: str) -> str:
    """stderr up to the first line holding ``text`` (a deadline, never a sleep)."""
    seen, deadline = [], time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"no {text!r} from the sidecar:\n{''.join(seen)[-3000:]}")
        ready, _, _ = select.select([proc.stderr], [], [], left)
        if ready:
            line = proc.stderr.readline()
            seen.append(line)
            if text in line:
                return "".join(seen)


def test_a_new_training_run_is_evaluated_and_the_old_results_kept(tmp_path):
    """docs/async.md pasted twice in one folder: train, sidecar, train again
    (a new run: ModelSaver moves the first run's checkpoints to run-1/),
    sidecar again with the same --logdir."""
    ckdir, logdir = tmp_path / "ckpt", tmp_path / "sidecar"
    first: dict = {}
    train(ckdir, 2, first)
    code, err = finish(sidecar(ckdir, logdir))
    assert code == 0 and "2 checkpoints evaluated; stopped: finished" in err, err[-3000:]
    assert "\r" not in err  # stderr is not a terminal: no progress bar fragments
    second: dict = {}
    with pytest.warns(RuntimeWarning, match="run-1"):
        keras.utils.set_random_seed(2)
        train(ckdir, 3, second, model=build_model())
    code, err = finish(sidecar(ckdir, logdir))
    assert code == 0 and "3 checkpoints evaluated; stopped: finished" in err, err[-3000:]
    assert "a new training run started" in err and "run-1" in err
    check_rows(stats(logdir), second, [1, 2, 3])
    check_rows(stats(logdir / "run-1"), first, [1, 2])  # the earlier results, kept aside
    assert json.load(open(logdir / "sidecar_state.json"))["evaluated"][0].startswith(f"ckpt-{STEPS_PER_EPOCH}")


@pytest.mark.parametrize("where", ["parent", "missing", "empty"])
def test_waiting_says_what_for_and_where_checkpoints_are(tmp_path, where):
    ckdir = tmp_path / "train_log" / "ckpt"
    train(ckdir, 1, {})
    target = {"parent": tmp_path / "train_log", "missing": tmp_path / "nope",
              "empty": tmp_path / "train_log" / "empty"}[where]
    if where == "empty":
        os.makedirs(target)
    proc = sidecar(target, tmp_path / "log")  # no --timeout: it would wait for ever
    err = wait_for_line(proc, "waiting for checkpoints")
    proc.send_signal(signal.SIGTERM)
    code, rest = finish(proc)
    err += rest
    assert code == 0, err[-3000:]
    assert str(target) in err
    assert ("does not exist" in err) == (where == "missing")
    assert "no timeout" in err
    if where != "missing":  # the real one is nearby: named
        assert os.path.join("train_log", "ckpt") in err


@pytest.mark.parametrize("option", ["--checkpoint-dir", "--logdir"])
def test_a_file_as_a_directory_exits_2_with_a_message(tmp_path, option):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    ckdir, logdir = (afile, tmp_path / "log") if option == "--checkpoint-dir" else (tmp_path, afile)
    code, err = finish(sidecar(ckdir, logdir))
    assert code == 2, err[-3000:]
    assert "is a file" in err and "Traceback" not in err
    assert ("checkpoint_dir" if option == "--checkpoint-dir" else "logdir") in err


def test_helpers(tmp_path):
    assert aside_runs(tmp_path / "missing") == 0 and keep_results_aside(str(tmp_path / "missing")) is None
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-x").mkdir()
    assert aside_runs(tmp_path) == 1
    (tmp_path / "stats.json").write_text("[]")
    (tmp_path / "other.txt").write_text("")
    assert keep_results_aside(str(tmp_path)) == str(tmp_path / "run-2")
    assert sorted(os.listdir(tmp_path / "run-2")) == ["stats.json"] and (tmp_path / "other.txt").exists()
    watched = tmp_path / "root" / "watched"
    for d in (watched / "a" / "b", tmp_path / "root" / "sibling", watched / "run-1"):
        d.mkdir(parents=True)
        (d / "checkpoint").write_text("")
    # Sub-directories first, then the parent's others; never an earlier run's run-<N>.
    assert checkpoints_nearby(str(watched)) == [os.path.relpath(watched / "a" / "b"),
                                                os.path.relpath(tmp_path / "root" / "sibling")]
