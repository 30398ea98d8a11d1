"""Data-parallel validation: 1 vs 2 vs 3 devices, in the same process.

The CPU is split into 3 logical devices before TensorFlow starts, and the
same validation pass is timed with

* ``InferenceRunner`` (no strategy: the single-device path, the baseline);
* ``DataParallelInferenceRunner`` on 1, 2 and 3 of the logical devices (a
  ``MirroredStrategy``, ``strategy.run`` per batch, per-replica outputs).

**On a CPU this measures overhead, not speed-up**: the logical devices share
the same cores and thread pools, so more replicas cannot run faster; what the
table shows is the price of the data-parallel path (splitting each batch,
one dispatch per replica, per-replica outputs brought to the host, more and
smaller slices handed to the inferencers). On a machine with N GPUs, run it
with ``--gpus`` to see the scaling instead.

Workloads (synthetic data, fixed seeds):

* compute-bound: a small CNN on 32x32x3, 4,096 samples, batch 256;
* overhead-bound: an MLP 32->64->10, 4,096 samples, batch 32 (128 batches).

Each round times one ``trigger()`` (a full validation pass with
``ScalarStats('loss')`` and ``ClassificationError()``) of every
configuration, interleaved; reported: the median time over rounds, and the
median over rounds of the per-round ratio to the baseline.

    python benchmarks/bench_data_parallel.py [--rounds 7] [--json] [--quick] [--gpus]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one tf.function per runner: TF's retracing warning is noise here
_MAX_DEVICES = 3


def _split_cpu(n: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import (ClassificationError, DataParallelInferenceRunner,  # noqa: E402
                             InferenceRunner, ScalarStats)


def _workload(name: str, n: int):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    if name == "compute":
        x, batch = rng.normal(size=(n, 32, 32, 3)).astype("float32"), 256
        model = keras.Sequential([
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(10)])
    else:
        x, batch = rng.normal(size=(n, 32)).astype("float32"), 32
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(10)])
    y = rng.integers(0, 10, size=n).astype("int32")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    return model, val, batch


def _runners(model, val, devices: list[str]):
    """(label, device count, runner), baseline first."""
    def infs():
        return [ScalarStats("loss"), ClassificationError()]

    configs = [("InferenceRunner", 1, InferenceRunner(val, infs(), verbose=False))]
    for k in range(1, len(devices) + 1):
        configs.append(("DataParallelInferenceRunner", k,
                        DataParallelInferenceRunner(val, infs(), devices[:k], verbose=False)))
    for _, _, runner in configs:
        runner.set_model(model)
        runner.trigger()  # trace and warm up
    return configs


def _measure(name: str, n: int, rounds: int, devices: list[str]) -> list[dict]:
    model, val, batch = _workload(name, n)
    batches = -(-n // batch)
    full = _runners(model, val, devices)
    one = _runners(model, val.take(1), devices)  # the fixed cost of a run
    times = [[] for _ in full]
    fixed = [[] for _ in one]
    results = [None] * len(full)
    for _ in range(rounds):
        for i, ((_, _, runner), (_, _, short)) in enumerate(zip(full, one)):
            start = time.perf_counter()
            results[i] = runner.trigger()
            times[i].append(time.perf_counter() - start)
            start = time.perf_counter()
            short.trigger()
            fixed[i].append(time.perf_counter() - start)
    base = times[0]
    rows = []
    for (label, k, _), t, f, res in zip(full, times, fixed, results):
        rows.append({
            "workload": name, "runner": label, "devices": k, "batch_size": batch, "samples": n,
            "batches": batches,
            "seconds": statistics.median(t),
            "samples_per_s": n / statistics.median(t),
            "overhead": statistics.median(a / b for a, b in zip(t, base)),
            "one_batch_seconds": statistics.median(f),
            "ms_per_further_batch": 1000 * max(0.0, statistics.median(t) - statistics.median(f)) / max(1, batches - 1),
            "validation_loss": res["validation_loss"],
        })
    # Same numbers on every configuration (the point of the exercise).
    losses = [r["validation_loss"] for r in rows]
    if max(losses) - min(losses) > 1e-5 * abs(losses[0]):
        raise AssertionError(f"validation_loss differs across device counts: {losses}")
    return rows


def _table(rows: list[dict]) -> str:
    header = ("workload", "runner", "devices", "batch", "median s", "samples/s", "x baseline",
              "1-batch run s", "ms/batch after")
    lines = [header]
    for r in rows:
        lines.append((r["workload"], r["runner"], str(r["devices"]), str(r["batch_size"]),
                      f"{r['seconds']:.3f}", f"{r['samples_per_s']:,.0f}", f"{r['overhead']:.2f}",
                      f"{r['one_batch_seconds']:.3f}", f"{r['ms_per_further_batch']:.2f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: the overhead-bound workload only, 512 samples, 2 rounds")
    parser.add_argument("--gpus", action="store_true",
                        help="use the machine's GPUs instead of logical CPU devices")
    args = parser.parse_args(argv)

    if args.gpus:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            parser.error("--gpus: this machine has no GPU")
        kind = "GPU"
    else:
        _split_cpu(_MAX_DEVICES)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:_MAX_DEVICES]
        kind = "logical CPU"
    n = 512 if args.quick else 4096
    rounds = 2 if args.quick else args.rounds

    rows = []
    for name in ("overhead",) if args.quick else ("compute", "overhead"):
        rows.extend(_measure(name, n, rounds, devices))

    info = {
        "benchmark": "data_parallel", "device_kind": kind, "devices": devices, "rounds": rounds,
        "cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "python": platform.python_version(), "rows": rows,
    }
    if args.json:
        print(json.dumps(info))
        return
    print(f"Validation on 1..{len(devices)} {kind} devices, median of {rounds} rounds "
          f"({os.cpu_count()} CPU cores, TensorFlow {tf.__version__}).")
    if kind == "logical CPU":
        print("Logical CPU devices share the same cores: this shows the overhead of the "
              "data-parallel path, not a speed-up.")
    print(_table(rows))


if __name__ == "__main__":
    main()
