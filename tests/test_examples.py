"""The examples run as a user would run them."""

from __future__ import annotations

import json
import os

from conftest import run_python


def test_keras_digits_example(tmp_path):
    logdir = str(tmp_path / "log")
    proc = run_python(f"""
        import runpy, sys
        sys.argv = ["keras_digits.py", "--epochs", "3", "--logdir", {logdir!r}]
        runpy.run_path("examples/keras_digits.py", run_name="__main__")
    """, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation_error" in proc.stdout and "best validation error" in proc.stdout
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert len(stats) == 3 and stats[-1]["validation_error"] < 0.5
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir))
