"""``benchmarks/bench_torch.py --quick --json`` runs (a smoke test, not a
timing): one tiny round of each workload, one JSON line whose runners agree
with ``evaluate``. Run in the PyTorch session, in this process."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from conftest import REPO

pytestmark = pytest.mark.not_on_backend("tensorflow", "jax", reason="the benchmark runs under KERAS_BACKEND=torch")


def test_quick_json_run_prints_one_line_with_both_workloads(capsys):
    spec = importlib.util.spec_from_file_location("bench_torch", os.path.join(REPO, "benchmarks", "bench_torch.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--json"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["backend"] == "torch" and [r["workload"] for r in report["results"]] == ["mlp", "cnn"]
    for r in report["results"]:
        assert r["runner_over_evaluate"]["fastest"] > 0 and r["arrays_over_evaluate"]["fastest"] > 0
        assert abs(r["check"]["runner_loss"] - r["check"]["evaluate_loss_runner"]) <= 1e-4 * r["check"]["runner_loss"]
