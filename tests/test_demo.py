"""``python -m infer_callbacks.demo`` as the README's first command runs it:
from a fresh directory, with its default log directory, twice in a row (the
second run keeps the first run's files), on the backend KERAS_BACKEND names."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

from conftest import REPO


def run_demo(cwd, *args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "infer_callbacks.demo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_demo_runs_twice_in_one_directory(tmp_path):
    for run in (1, 2):
        proc = run_demo(tmp_path, "--epochs", "2")
        assert proc.returncode == 0, proc.stderr[-3000:]
        logdir = tmp_path / "infer_callbacks_demo"
        rows = json.loads((logdir / "stats.json").read_text())
        assert [r["epoch_num"] for r in rows] == [1, 2]
        assert {"validation_loss", "validation_error", "validation_objective"} <= set(rows[-1])
        assert len(glob.glob(str(logdir / "events.out.tfevents.*"))) == run
        kept = json.loads((logdir / "best" / "min-validation_objective.json").read_text())["kept"]
        assert len(kept) == 2
        assert "validation_objective" in proc.stdout  # the table
        assert "the 2 best checkpoints" in proc.stderr
    assert (logdir / "stats-1.json").exists() and (logdir / "best" / "run-1").is_dir()
    assert "Traceback" not in proc.stderr


def test_bad_epochs_exit_2():
    proc = run_demo(REPO, "--epochs", "0")
    assert proc.returncode == 2 and "--epochs 0" in proc.stderr
