"""Validation across two JAX processes on 127.0.0.1 (``keras.distribution.initialize``,
gloo CPU collectives, 2 CPU devices each, a ``DataParallel`` over all four).

One pair of processes (``processes_worker.py``) runs every scenario in
order and prints one JSON line per scenario; the tests below read them:
exact results on a set of 101 examples in batches of 20 (the last batch,
of 1, divides no device count), the same on both processes, for the plain
and the data-parallel runner, built-ins exchanging their state and
per-batch inferencers seeing every batch in dataset order; Keras's
``evaluate`` where it works (100 examples); one writer; and each fault
(sets of different sizes, an inferencer raising on one process, a process
killed mid-run) ending every surviving process with an error naming the
other process, within the timeout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO

# The processes' start-up and scenarios take 2-4 minutes on a busy 2-core machine (in the first
# test's setup): a longer limit than pytest-timeout's default, and a hard one on the processes.
pytestmark = [pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes"),
              pytest.mark.timeout(720)]
DEADLINE = 600  # seconds for both processes

SCENARIOS = ["fit", "state", "batches", "data_parallel", "asynchronous", "uneven", "raises", "killed"]
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "processes_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict]:
    """Per process, ``{scenario: its JSON line}`` (one pair of processes for every test)."""
    logdir, port = str(tmp_path_factory.mktemp("processes")), str(_free_port())
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, WORKER, str(i), port, logdir, ",".join(SCENARIOS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for i in range(2)]
    outputs, end = [], time.monotonic() + DEADLINE
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1.0, end - time.monotonic())))
    finally:
        for proc in procs:  # a hung process fails the test, never the suite
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    lines = []
    for i, (out, err) in enumerate(outputs):
        found = {}
        for line in out.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                found[row["scenario"]] = row
        lines.append(found)
        if i == 0:  # process 1 is killed in the last scenario; process 0 must report every one
            assert list(found) == SCENARIOS, err[-3000:]
    lines.append(logdir)
    return lines


def _close(a: dict, b: dict, rtol: float = 1e-6) -> None:
    for k in b:
        assert abs(a[k] - b[k]) <= rtol * max(1.0, abs(b[k])), (k, a[k], b[k])


@pytest.mark.parametrize("scenario", ["state", "batches", "data_parallel"])
def test_exact_on_an_indivisible_set_and_equal_on_both_processes(runs, scenario):
    first, second = runs[0][scenario], runs[1][scenario]
    assert "error" not in first and "error" not in second, (first, second)
    assert first["runner"] == second["runner"]  # the same numbers, bit for bit
    _close(first["runner"], first["reference"])


def test_per_batch_inferencers_see_every_batch_in_dataset_order(runs):
    single = runs[0]["batches"]
    assert single["sizes"] == [20, 20, 20, 20, 20, 1]
    assert single["runner"]["validation_batches"] == 6.0 and single["samples"] == 101
    # GatherOutputs: every row once, in dataset order, spilling to disk (bounded memory)
    assert single["runner"]["validation_gather_rows"] == 101.0
    assert single["runner"]["validation_gather_diff"] < 1e-5 and single["spills"] >= 1
    # the data-parallel runner (2 local devices per process) gives the same order-dependent number
    assert runs[0]["data_parallel"]["runner"]["validation_order"] == single["runner"]["validation_order"]
    assert runs[0]["data_parallel"]["devices"] != runs[1]["data_parallel"]["devices"]  # local devices


def test_fit_equals_evaluate_schedules_agree_and_one_process_writes(runs):
    first, second = runs[0]["fit"], runs[1]["fit"]
    assert "error" not in first and "error" not in second, (first, second)
    _close(first["runner"], first["evaluate"], rtol=1e-5)  # Keras's evaluate works on 100 = 5 x 20
    _close(first["runner"], first["reference"])
    assert first["history"] == second["history"]
    assert first["steps"] == second["steps"] == [4, 8]  # every_k_steps fires at the same steps
    assert "stats.json" in first["files"] and any(f.endswith(".weights.h5") for f in first["files"])
    assert second["files"] == []  # process 1 writes nothing


def test_asynchronous_is_refused_naming_why(runs):
    for i in range(2):
        error = runs[i]["asynchronous"]["error"]
        assert "asynchronous=True cannot validate across JAX processes (2 here)" in error, error


def test_sets_of_different_sizes_fail_on_every_process(runs):
    for i in range(2):
        error = runs[i]["uneven"]["error"]
        assert "process 1 read 7" in error or "process 0 read 6" in error, error
        assert "same whole validation set" in error


def test_an_inferencer_raising_on_one_process_fails_both(runs):
    assert runs[1]["raises"]["error"] == "ValueError: bad batch 2 on process 1"
    error = runs[0]["raises"]["error"]
    assert error.startswith("ProcessError: process 1 of 2 failed") and "bad batch 2" in error, error
    assert runs[0]["raises"]["seconds"] < 40  # told at once ("failed"), not at the timeout


def test_a_killed_process_ends_the_other_within_the_timeout(runs):
    error = runs[0]["killed"]["error"]
    assert "process 1 of 2 did not answer within 10 s" in error, error
    assert runs[0]["killed"]["seconds"] < 10 + 40
    assert "killed" not in runs[1]  # it died mid-run


def test_the_sidecar_reads_the_checkpoints_process_zero_wrote(runs):
    """In this (TensorFlow) process, the Keras files of the JAX run: the last
    one's numbers equal the JAX runner's on the final weights."""
    import keras
    import tensorflow as tf
    from infer_callbacks import ClassificationError, ScalarStats, SidecarEvaluator

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(121, 8)).astype("float32"), rng.integers(0, 3, size=121).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val = tf.data.Dataset.from_tensor_slices((x[:100], y[:100])).batch(20)
    rows = SidecarEvaluator(model, val, [ScalarStats("loss"), ClassificationError()],
                            os.path.join(runs[2], "p0", "ckpt"), checkpoint_format="keras",
                            poll_seconds=0.01, settle_seconds=0.01, verbose=False).run()
    assert [r["global_step"] for r in rows] == [5, 10], rows
    _close({k: rows[-1][k] for k in ("validation_loss", "validation_error")}, runs[0]["fit"]["runner"],
           rtol=1e-5)
