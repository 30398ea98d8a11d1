"""The sidecar's command line (``python -m infer_callbacks.sidecar``,
``sidecar_cli.main``): concurrent with a training process, its exit code and
summary, SIGTERM, and errors naming the bad argument. The user's functions it
names (``helpers.sidecar:build_model``, ``helpers.sidecar:val_data``) and the
shared helpers are in helpers/sidecar.py."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

from helpers.sidecar import (ROOT, STEPS_PER_EPOCH, epochs_in, check_rows, ckdir, evaluator, stats,  # noqa: F401
                          train, trained)
from infer_callbacks.monitors.callback import MonitorWriter
from infer_callbacks.sidecar.cli import main as cli_main
from infer_callbacks.sidecar.evaluator import STATE_FILENAME

pytestmark = pytest.mark.tensorflow_only("the command line reads TensorFlow checkpoints")

SUBPROCESS_TIMEOUT = 120


class _WaitForRow(keras.callbacks.Callback):
    """Training waits (bounded) until the sidecar wrote epoch ``epoch_num``:
    the run is concurrent, whatever the sidecar's start-up time."""

    def __init__(self, stats_path: str, epoch_num: int, deadline: float, proc):
        super().__init__()
        self.stats_path, self.epoch_num, self.deadline, self.proc = stats_path, epoch_num, deadline, proc

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.epoch_num:
            return
        while self.epoch_num not in epochs_in(self.stats_path):
            assert self.proc.poll() is None, "the sidecar exited early"
            assert time.monotonic() < self.deadline, "the sidecar never evaluated epoch 1"
            time.sleep(0.05)  # polling for a file, with a deadline (not synchronisation by sleep)


def sidecar_process(ckdir, logdir, *args) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "tests"), ROOT]))
    return subprocess.Popen(
        [sys.executable, "-m", "infer_callbacks.sidecar", "--model", "helpers.sidecar:build_model",
         "--input", "helpers.sidecar:val_data", "--checkpoint-dir", str(ckdir), "--logdir", str(logdir),
         "--poll-seconds", "0.05", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the sidecar did not stop within {SUBPROCESS_TIMEOUT} s:\n{err[-3000:]}")
    return proc.returncode, err


def test_command_line_concurrent_with_training_then_restart(tmp_path):
    """The sidecar (a subprocess) starts before training; training waits for
    its first row, then runs on; the sidecar stops at ModelSaver's marker. A
    restarted sidecar finds nothing left: no checkpoint is evaluated twice."""
    ckdir, logdir, weights = tmp_path / "ckpt", tmp_path / "sidecar", {}
    os.makedirs(ckdir)
    proc = sidecar_process(ckdir, logdir, "--timeout", "100")
    try:
        wait = _WaitForRow(str(logdir / "stats.json"), 1, time.monotonic() + 100, proc)
        train(ckdir, 4, weights, extra=[wait])
    except BaseException:
        proc.kill()
        raise
    code, err = finish(proc)
    assert code == 0, err[-3000:]
    assert "4 checkpoints evaluated; stopped: finished" in err
    check_rows(stats(logdir), weights, [1, 2, 3, 4])
    state = json.load(open(logdir / STATE_FILENAME))
    assert state["evaluated"] == [f"ckpt-{STEPS_PER_EPOCH * e}" for e in (1, 2, 3, 4)]
    assert glob.glob(str(logdir / "events.out.tfevents.*"))

    again = evaluator(ckdir, logdir)
    assert again.run() == [] and again.stop_reason == "finished"
    check_rows(stats(logdir), weights, [1, 2, 3, 4])


def test_stops_after_timeout_without_marker(tmp_path, capsys):
    os.makedirs(tmp_path / "ckpt")  # training "running", nothing written yet
    argv = ["--model", "helpers.sidecar:build_model", "--input", "helpers.sidecar:val_data",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--logdir", str(tmp_path / "log"),
            "--timeout", "0.3", "--poll-seconds", "0.05"]
    with pytest.warns(RuntimeWarning, match=r"no new checkpoint .*timeout=0\.3.*before evaluating any"):
        assert cli_main(argv) == 3
    assert "0 checkpoints evaluated; stopped: timeout" in capsys.readouterr().err


def test_command_line_sigterm_finishes_the_evaluation_under_way(ckdir):
    from infer_callbacks.sidecar.cli import _run_interruptibly

    class SignalAfterFirst(MonitorWriter):
        def write(self, epoch_num, step, scalars):
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the main thread
            deadline = time.monotonic() + 30
            while not ev.stopping:  # the handler's effect, awaited with a deadline
                assert time.monotonic() < deadline, "SIGTERM was not handled"
                time.sleep(0.01)

    ev = evaluator(ckdir, None, monitors=[SignalAfterFirst()])
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    rows = _run_interruptibly(ev)
    assert [r["epoch_num"] for r in rows] == [1] and ev.stop_reason == "stopped"
    # handlers restored (whatever the launcher gave: SIG_IGN under `nohup ... &`)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.parametrize("argv, match", [
    (["--model", "no_colon"], "--model must name a function as 'package.module:function'"),
    (["--model", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["--model", "helpers.sidecar:nope"], "has no 'nope'"),
])
def test_command_line_errors_name_the_value(tmp_path, capsys, argv, match):
    base = ["--model", "helpers.sidecar:build_model", "--input", "helpers.sidecar:val_data",
            "--checkpoint-dir", str(tmp_path), "--logdir", str(tmp_path / "log")]
    with pytest.raises(SystemExit) as e:
        cli_main(base + argv)
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_command_line_bad_number(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["--model", "helpers.sidecar:build_model", "--input", "helpers.sidecar:val_data",
                  "--checkpoint-dir", str(tmp_path), "--logdir", str(tmp_path / "l"),
                  "--max-evaluations", "0"])
    assert "max_evaluations=0" in capsys.readouterr().err
