"""The examples run as a user runs them: from a fresh directory, with their
default log directory, twice in a row. The second run must succeed and keep
the first run's stats.json (as stats-1.json)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.tensorflow_only("the examples use the trainer host and export")

# script -> (arguments that keep it small, its default logdir relative to the cwd)
EXAMPLES = {
    "keras_digits.py": (["--epochs", "3"], "train_log/digits"),
    "tensorpack_style_digits.py": (["--epochs", "2"], "train_log/tensorpack_style"),
    "two_workers.py": (["--epochs", "1", "--timeout", "200"], "train_log/tensorpack_style"),
    "two_processes_jax.py": (["--epochs", "1", "--timeout", "300"], "train_log/two_processes_jax"),
    "export_and_serve.py": (["--epochs", "2"], None),
    "mnist_port/mnist_convnet.py": (["--epochs", "1"], "train_log/mnist_port"),
}


def run_example(script: str, *args: str, cwd, timeout: float = 400) -> subprocess.CompletedProcess:
    """``python examples/<script> args...`` from ``cwd`` (hard timeout)."""
    path = os.path.join(REPO, "examples", script)
    code = textwrap.dedent(f"""
        import os, runpy, sys
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.argv = [{path!r}, *{list(args)!r}]
        sys.path.insert(0, os.path.dirname({path!r}))
        runpy.run_path({path!r}, run_name="__main__")
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run([sys.executable, "-c", code], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout)


def _ok(proc, run):
    assert proc.returncode == 0, f"run {run} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"


def _stats(path):
    with open(path) as f:
        return json.load(f)


def test_every_example_is_covered():
    scripts = {os.path.relpath(p, os.path.join(REPO, "examples"))
               for p in glob.glob(os.path.join(REPO, "examples", "**", "*.py"), recursive=True)}
    helpers = {s for s in scripts if os.path.basename(s).startswith("_")}
    missing = scripts - helpers - set(EXAMPLES)
    # A module imported by an example (no __main__ block) needs no run of its own.
    missing = {s for s in missing
               if "__main__" in open(os.path.join(REPO, "examples", s)).read()}
    assert not missing, f"examples without a test: {sorted(missing)}; add them to EXAMPLES"


# tensorpack_style_digits.py runs twice in the same logdir in its own test
# (then with --gpus 2); two_workers.py's second run would only repeat the
# two processes' start-up.
TWICE = sorted(set(EXAMPLES) - {"tensorpack_style_digits.py", "two_workers.py", "two_processes_jax.py"})


@pytest.mark.parametrize("script", TWICE)
def test_example_runs_twice_without_losing_the_first_run(script, tmp_path):
    if not os.path.exists(os.path.join(REPO, "examples", script)):
        pytest.skip(f"examples/{script} does not exist in this checkout")
    args, logdir = EXAMPLES[script]
    first = run_example(script, *args, cwd=tmp_path)
    _ok(first, 1)
    if script == "keras_digits.py":
        _check_keras_digits(first, tmp_path / logdir)
    stats_path = None if logdir is None else tmp_path / logdir / "stats.json"
    first_stats = _stats(stats_path) if stats_path is not None and stats_path.exists() else None
    second = run_example(script, *args, cwd=tmp_path)
    _ok(second, 2)
    if first_stats is not None:
        assert _stats(stats_path.with_name("stats-1.json")) == first_stats
        assert _stats(stats_path)                     # the second run's own rows
        assert "stats-1.json" in second.stderr        # the warning says where the old file went


def _check_keras_digits(proc, logdir):
    """Its results and a clean console: one table per epoch on its own line,
    no value printed twice."""
    assert "best validation error" in proc.stdout
    stats = _stats(logdir / "stats.json")
    assert [s["epoch_num"] for s in stats] == [1, 2, 3] and stats[-1]["validation_error"] < 0.5
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir))
    lines = proc.stdout.splitlines()
    tables = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    assert len(tables) == 3
    assert all(line.count("validation_error") <= 1 for line in lines)


def test_two_workers_report_the_same_numbers(tmp_path):
    args, _ = EXAMPLES["two_workers.py"]
    proc = run_example("two_workers.py", *args, cwd=tmp_path)
    _ok(proc, 1)
    finals = [json.loads(line[len("final: "):]) for line in proc.stdout.splitlines()
              if line.startswith("final: ")]
    assert len(finals) == 2 and finals[0]["validation_error"] == finals[1]["validation_error"]


def test_two_jax_processes_report_the_same_numbers(tmp_path):
    args, logdir = EXAMPLES["two_processes_jax.py"]
    proc = run_example("two_processes_jax.py", *args, cwd=tmp_path, timeout=400)
    _ok(proc, 1)
    finals = [json.loads(line[len("final: "):]) for line in proc.stdout.splitlines()
              if line.startswith("final: ")]
    assert len(finals) == 2 and finals[0] == finals[1], proc.stdout
    assert "both processes report the same numbers" in proc.stdout
    assert [s["epoch_num"] for s in _stats(tmp_path / logdir / "stats.json")] == [1]  # process 0's


def test_tensorpack_example_then_its_gpus_variant_in_the_same_logdir(tmp_path):
    ckdir = tmp_path / "train_log" / "tensorpack_style" / "ckpt"
    _ok(run_example("tensorpack_style_digits.py", "--epochs", "1", cwd=tmp_path), 1)
    first = sorted(os.listdir(ckdir))
    second = run_example("tensorpack_style_digits.py", "--epochs", "1", "--gpus", "2", cwd=tmp_path)
    _ok(second, 2)
    assert (tmp_path / "train_log" / "tensorpack_style" / "stats-1.json").exists()
    # The first run's checkpoints and best model, kept whole beside the second run's.
    assert "run-1" in second.stderr
    assert sorted(os.listdir(ckdir / "run-1")) == first
    assert "min-validation_error.json" in first and "min-validation_error.json" in os.listdir(ckdir)


def test_mnist_port_resume_line_of_its_docstring(tmp_path):
    """The docstring's `--load` line trains on from the checkpoint; a `--load`
    with nothing left to train says so instead of printing `final: {}`."""
    _ok(run_example("mnist_port/mnist_convnet.py", "--epochs", "1", cwd=tmp_path), 1)
    resumed = run_example("mnist_port/mnist_convnet.py", "--epochs", "2", "--load", "train_log/mnist_port",
                          cwd=tmp_path)
    _ok(resumed, 2)
    (final,) = [json.loads(line[len("final: "):]) for line in resumed.stdout.splitlines()
                if line.startswith("final: ")]
    assert "validation_error" in final
    assert [s["epoch_num"] for s in _stats(tmp_path / "train_log" / "mnist_port" / "stats.json")] == [1, 2]
    done = run_example("mnist_port/mnist_convnet.py", "--epochs", "2", "--load", "train_log/mnist_port",
                       cwd=tmp_path)
    _ok(done, 3)
    assert "nothing trained" in done.stdout and "final: {}" not in done.stdout
