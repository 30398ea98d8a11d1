"""benchmarks/bench_whole_set.py runs (one small round) and prints one JSON
line whose numbers agree with the reference libraries (no timing checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.tensorflow_only("a script run in its own process; once is enough")


def test_bench_whole_set_quick_json():
    pytest.importorskip("sacrebleu")
    pytest.importorskip("faster_coco_eval")
    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_whole_set.py"), "--quick",
                          "--json"], capture_output=True, text=True, timeout=400,
                         env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == {"auc", "bleu", "coco", "generate"}
    assert result["coco"]["same_numbers"] is True
    assert result["auc"]["peak_mb_beyond_scores"] < 64
