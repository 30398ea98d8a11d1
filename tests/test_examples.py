"""The examples run as a user would run them."""

from __future__ import annotations

import json
import os

from conftest import run_python


def run_example(script: str, *args: str, timeout: float = 240):
    """Run ``examples/<script>`` as ``python examples/<script> args...``."""
    return run_python(f"""
        import runpy, sys
        sys.argv = [{script!r}, *{list(args)!r}]
        runpy.run_path("examples/{script}", run_name="__main__")
    """, timeout=timeout)


def test_keras_digits_example(tmp_path):
    logdir = str(tmp_path / "log")
    proc = run_example("keras_digits.py", "--epochs", "3", "--logdir", logdir, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation_error" in proc.stdout and "best validation error" in proc.stdout
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert len(stats) == 3 and stats[-1]["validation_error"] < 0.5
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir))


def _finals(stdout: str) -> list[dict]:
    return [json.loads(line[len("final: "):]) for line in stdout.splitlines() if line.startswith("final: ")]


def test_tensorpack_style_digits_example(tmp_path):
    logdir = str(tmp_path / "log")
    proc = run_example("tensorpack_style_digits.py", "--epochs", "2", "--logdir", logdir, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (final,) = _finals(proc.stdout)
    assert final["validation_error"] < 0.5
    stats = json.load(open(os.path.join(logdir, "stats.json")))
    assert [s["epoch_num"] for s in stats] == [1, 2]
    assert stats[-1]["validation_error"] == final["validation_error"]


def test_two_workers_example(tmp_path):
    logdir = str(tmp_path / "log")
    proc = run_example("two_workers.py", "--epochs", "1", "--timeout", "200", "--logdir", logdir, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    finals = _finals(proc.stdout)
    assert len(finals) == 2
    assert finals[0]["validation_error"] == finals[1]["validation_error"]
    assert finals[0]["validation_cost"] == finals[1]["validation_cost"]
    assert len(json.load(open(os.path.join(logdir, "stats.json")))) == 1  # written once, by the chief
