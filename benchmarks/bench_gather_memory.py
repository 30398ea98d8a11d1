"""Peak memory of ``GatherOutputs`` with and without spilling to disk.

Each measurement runs in a fresh child process: it imports the package,
resets its peak-RSS counter (``/proc/self/clear_refs``), then feeds a
synthetic validation set batch by batch to ``GatherOutputs`` exactly as the
runner does (``before_inference``, ``on_fetches`` per batch,
``after_inference``), and a ``score_fn`` reads every gathered value (a
float64 sum in chunks, as a streaming metric would).

Per batch: ``emb`` float32 (1024 x 256) = 1 MiB and ``label`` int64
(1024,) = 8 KiB. Set sizes grow; the two modes are

* ``memory``: ``max_memory_mb`` above the set size (never spills);
* ``spill``: ``max_memory_mb=--budget`` (default 64 MiB).

Columns (all in MiB, above the child's resident size before the run):

* ``peak RSS``: the kernel's high-water mark ``VmHWM``. It also counts the
  pages of the spill files that ``score_fn`` reads through the read-only
  memmaps: clean page cache, which the kernel can drop under pressure;
* ``peak anon``: the largest anonymous (heap) resident size, ``RssAnon``,
  sampled by the parent every millisecond: the memory that cannot be
  reclaimed, the one that causes out-of-memory kills.

    python benchmarks/bench_gather_memory.py [--sizes 64 256 1024] [--budget 64] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, DIM = 1024, 256  # 1 MiB of float32 per batch

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from infer_callbacks.inferencers.gather import GatherOutputs

size_mb, limit_mb, batch, dim = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
num_batches = int(size_mb * 2**20 // (batch * dim * 4))

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024  # MiB
    return out

def score(out):
    emb, label = out["emb"], out["label"]
    total = 0.0
    for i in range(0, len(emb), 65536):
        total += float(emb[i:i + 65536].sum(dtype=np.float64))
    return {"sum": total, "n": len(label), "memmap": isinstance(emb, np.memmap)}

inf = GatherOutputs(["emb", "label"], score, max_memory_mb=limit_mb)
label = np.arange(batch, dtype=np.int64)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
base = status()
print("READY " + json.dumps(base), flush=True)
sys.stdin.readline()  # the parent samples from now on
t0 = time.perf_counter()
inf.before_inference()
for i in range(num_batches):
    emb = np.empty((batch, dim), np.float32)
    emb.fill(i % 7)
    inf.on_fetches([emb, label.copy()], batch)
    del emb
results = inf.after_inference()
seconds = time.perf_counter() - t0
end = status()
expected = sum(float(i % 7) for i in range(num_batches)) * batch * dim
assert results["n"] == num_batches * batch and abs(results["sum"] - expected) < 1e-6 * max(expected, 1)
print("RESULT " + json.dumps({"base": base, "end": end, "seconds": seconds,
                              "spills": inf.num_spills, "memmap": bool(results["memmap"]),
                              "peak_held_mb": inf.peak_held_bytes / 2**20,
                              "gathered_mb": num_batches * batch * (dim * 4 + 8) / 2**20}), flush=True)
"""


def _rss_anon_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(size_mb: float, limit_mb: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(size_mb), str(limit_mb), str(BATCH), str(DIM)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=REPO)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"child failed: {line}{proc.stderr.read()[-2000:]}")
    base = json.loads(line.split(" ", 1)[1])
    proc.stdin.write("go\n")
    proc.stdin.flush()
    peak_anon = base["RssAnon"]
    while proc.poll() is None:
        value = _rss_anon_mb(proc.pid)
        if value is not None:
            peak_anon = max(peak_anon, value)
        time.sleep(0.001)
    out, err = proc.communicate()
    result_lines = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not result_lines:
        raise RuntimeError(f"child failed ({proc.returncode}): {err[-2000:]}")
    r = json.loads(result_lines[0].split(" ", 1)[1])
    return {
        "set_mb": round(r["gathered_mb"], 1),
        "max_memory_mb": limit_mb,
        "spilled": r["memmap"],
        "spills": r["spills"],
        "peak_rss_mb": round(r["end"]["VmHWM"] - r["base"]["VmRSS"], 1),
        "peak_anon_mb": round(peak_anon - r["base"]["RssAnon"], 1),
        "peak_held_mb": round(r["peak_held_mb"], 1),
        "seconds": round(r["seconds"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="GatherOutputs peak memory with and without spilling")
    parser.add_argument("--sizes", type=float, nargs="+", default=[64, 256, 1024],
                        help="validation set sizes in MiB of gathered outputs")
    parser.add_argument("--budget", type=float, default=64, help="max_memory_mb of the spill mode")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="smoke test: a 4 MiB set, spilled at 2 MiB")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.budget = [4], 2
    if not sys.platform.startswith("linux"):
        sys.exit("This benchmark reads /proc (Linux only).")

    rows = []
    for size in args.sizes:
        for mode, limit in (("memory", 4 * size + 1024), ("spill", args.budget)):
            rows.append({"mode": mode, **measure(size, limit)})
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "platform": platform.platform()}
    if args.json:
        print(json.dumps({"benchmark": "gather_memory", "machine": machine, "budget_mb": args.budget,
                          "results": rows}))
        return
    from tabulate import tabulate

    table = [[r["set_mb"], r["mode"], r["max_memory_mb"] if r["mode"] == "spill" else "-",
              "yes" if r["spilled"] else "no", r["peak_rss_mb"], r["peak_anon_mb"],
              r["peak_held_mb"], r["seconds"]] for r in rows]
    print(tabulate(table, headers=["set MiB", "mode", "max_memory_mb", "spilled", "peak RSS MiB",
                                   "peak anon MiB", "held MiB", "seconds"]))


if __name__ == "__main__":
    main()
