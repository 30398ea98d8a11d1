"""Every benchmark script starts, runs one tiny round (``--quick``) and prints
its table: a package move can no longer break one silently. Numbers are not
checked here (benchmarks are scripts, not timed tests); each runs in its own
process, under its own backend, with a hard timeout."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.tensorflow_only("the benchmarks start their own processes; one backend's run is enough")

BENCHMARKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "benchmarks", "bench_*.py")))
# A line each script's table prints (its header, or its first column).
TABLE = {
    "bench_async.py": "asynchronous / synchronous",
    "bench_data_parallel.py": "Validation on 1..",
    "bench_fit_start.py": "fit + InferenceRunner + Monitors",
    "bench_gather_memory.py": "peak RSS MiB",
    "bench_jax.py": "workload",
    "bench_keras_metric.py": "ms per batch compiled",
    "bench_sidecar.py": "poll (s)",
    "bench_speed.py": "workload",
    "bench_trainer.py": "SimpleTrainer",
    "bench_jax_processes.py": "1 proc x 4 s",
}
# Smoke-tested by their own tests, under their own backend or with their reference libraries.
OWN_SMOKE_TEST = {
    "bench_torch.py": "tests/test_bench_torch.py (the PyTorch session)",
    "bench_whole_set.py": "tests/inferencers/test_bench_whole_set.py",
}
TIMEOUT = 600  # seconds; a quick round takes seconds of CPU, but the machine may be shared


def test_every_benchmark_has_a_smoke_test():
    assert sorted(set(TABLE) | set(OWN_SMOKE_TEST)) == BENCHMARKS
    for test in OWN_SMOKE_TEST.values():
        assert os.path.exists(os.path.join(REPO, test.split()[0])), test


@pytest.mark.parametrize("script", sorted(TABLE))
def test_benchmark_runs_quick_and_prints_its_table(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    env.pop("KERAS_BACKEND", None)  # each script chooses (bench_jax.py sets JAX)
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), "--quick"],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert TABLE[script] in done.stdout, done.stdout[-3000:]
