"""Data-parallel validation: DataParallelInferenceRunner on 1, 2, 3 devices
against InferenceRunner, in the same process.

The CPU is split into 3 logical devices once, before TensorFlow starts; the
data-parallel runner uses the first 1, 2 or 3 of them. Each configuration
validates the same model with ``ScalarStats('loss')`` and
``ClassificationError()`` through a standalone ``trigger()`` (a full pass),
or, with ``--fit``, inside ``model.fit`` (its ``on_epoch_end``):

* ``InferenceRunner`` (no strategy: the single-device path) -- the baseline;
* ``DataParallelInferenceRunner(gpus=devices[:k])`` -- a
  ``MirroredStrategy``, whole batches per replica (batch ``j*k + i`` to
  replica ``i``).

**On a CPU this measures overhead, not speed-up**: logical devices share the
same cores and thread pools. With ``--gpus`` the machine's GPUs are used
instead, and the ratio shows the scaling (skipped without GPUs).

Workloads (synthetic data, fixed seeds):

* overhead-bound: an MLP 32->64->10, 8,192 samples, batch 32 (256 batches);
* compute-bound: a small CNN on 32x32x3, 4,096 samples, batch 256 (16 batches).

Rounds are interleaved (each round runs every configuration once, the order
rotating), because this machine's speed varies between rounds. Reported: the
fastest and median time, the ratio of the fastest times to the baseline's
fastest, and the median of the per-round ratios.

    python benchmarks/bench_data_parallel.py [--rounds 7] [--json] [--quick] [--fit] [--gpus]
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

tf.get_logger().setLevel("ERROR")
_MAX_DEVICES = 3


def _split_cpu(n: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import (ClassificationError, DataParallelInferenceRunner,  # noqa: E402
                             InferenceRunner, ScalarStats)

WORKLOADS = {"overhead": (8192, 32), "compute": (4096, 256)}


def _workload(name: str, n: int, batch: int):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    if name == "compute":
        x = rng.normal(size=(n, 32, 32, 3)).astype("float32")
        model = keras.Sequential([
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(10)])
    else:
        x = rng.normal(size=(n, 32)).astype("float32")
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(10)])
    y = rng.integers(0, 10, size=n).astype("int32")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    train = tf.data.Dataset.from_tensor_slices((x[:batch], y[:batch])).batch(batch)
    return model, val, train


def _timed(cls):
    class Timed(cls):
        seconds = None

        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            super().on_epoch_end(epoch, logs)
            self.seconds = time.perf_counter() - start

    Timed.__name__ = cls.__name__
    return Timed


def _configs(model, val, devices: list[str]):
    """[(label, device count, runner)], the baseline first."""
    def infs():
        return [ScalarStats("loss"), ClassificationError()]

    configs = [("InferenceRunner", 1, _timed(InferenceRunner)(val, infs(), verbose=False))]
    for k in range(1, len(devices) + 1):
        configs.append(("DataParallelInferenceRunner", k,
                        _timed(DataParallelInferenceRunner)(val, infs(), devices[:k], verbose=False)))
    return configs


def _measure(name: str, rounds: int, devices: list[str], in_fit: bool, quick: bool) -> list[dict]:
    n, batch = WORKLOADS[name]
    if quick:
        n = min(n, 16 * batch)
    model, val, train = _workload(name, n, batch)
    configs = _configs(model, val, devices)

    def run(runner):
        if in_fit:
            model.fit(train, epochs=1, verbose=0, callbacks=[runner])
            return runner.seconds, runner.last_results
        start = time.perf_counter()
        results = runner.trigger()
        return time.perf_counter() - start, results

    for _, _, runner in configs:  # bind, trace, warm up
        runner.set_model(model)
        run(runner)
    times = [[] for _ in configs]
    results = [None] * len(configs)
    for r in range(rounds):
        order = list(range(len(configs)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            seconds, results[i] = run(configs[i][2])
            times[i].append(seconds)
    base = times[0]
    rows = []
    for (label, k, runner), t, res in zip(configs, times, results):
        rows.append({
            "workload": name, "runner": label, "devices": k, "batch_size": batch, "samples": n,
            "batches": -(-n // batch), "where": "fit" if in_fit else "trigger",
            "fastest_s": min(t), "median_s": statistics.median(t),
            "ratio_fastest": min(t) / min(base),
            "ratio_median": statistics.median(a / b for a, b in zip(t, base)),
            "step_traces": runner.tracing_count,
            "validation_loss": res["validation_loss"], "validation_error": res["validation_error"],
        })
    losses = [r["validation_loss"] for r in rows]
    if max(losses) - min(losses) > 1e-5 * abs(losses[0]):
        raise AssertionError(f"validation_loss differs across device counts: {losses}")
    return rows


def _table(rows: list[dict]) -> str:
    header = ("workload", "runner", "devices", "batch", "fastest s", "median s", "x baseline (fastest)",
              "x baseline (median)")
    lines = [header]
    for r in rows:
        lines.append((r["workload"], r["runner"], str(r["devices"]), str(r["batch_size"]),
                      f"{r['fastest_s']:.3f}", f"{r['median_s']:.3f}", f"{r['ratio_fastest']:.2f}",
                      f"{r['ratio_median']:.2f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 16 batches per workload, 1 round")
    parser.add_argument("--fit", action="store_true", help="time the runners inside model.fit")
    parser.add_argument("--gpus", action="store_true",
                        help="use the machine's GPUs instead of logical CPU devices (skipped without GPUs)")
    parser.add_argument("--only", choices=sorted(WORKLOADS), help="one workload only")
    args = parser.parse_args(argv)

    info = {"benchmark": "data_parallel", "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if args.gpus:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            info.update(skipped="--gpus: this machine has no GPU")
            print(json.dumps(info) if args.json else f"skipped: {info['skipped']}")
            return info
        kind = "GPU"
    else:
        _split_cpu(_MAX_DEVICES)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:_MAX_DEVICES]
        kind = "logical CPU"
    rounds = 1 if args.quick else args.rounds
    rows = []
    for name in [args.only] if args.only else ["overhead", "compute"]:
        rows.extend(_measure(name, rounds, devices, args.fit, args.quick))
    info.update(device_kind=kind, devices=devices, rounds=rounds, rows=rows)
    if args.json:
        print(json.dumps(info))
        return info
    print(f"Validation on 1..{len(devices)} {kind} devices, {rounds} interleaved rounds, "
          f"{'inside fit' if args.fit else 'standalone trigger()'} "
          f"({os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, Keras {keras.__version__}).")
    if kind == "logical CPU":
        print("Logical CPU devices share the same cores: this shows the overhead of the "
              "data-parallel path, not a speed-up.")
    print(_table(rows))
    return info


if __name__ == "__main__":
    main()
