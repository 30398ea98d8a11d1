"""Validation speed of InferenceRunner against baselines in the same process.

Workloads (synthetic data, fixed seeds, 20,000 validation samples):

* compute-bound: a small CNN on 32x32x3, batch 250;
* overhead-bound: an MLP 32->64->10, batch 32 (625 batches);
* slow input: a Python DataFlow that takes 10 ms to produce each batch, with
  the overhead-bound model (time / max(load, compute)).

Baselines, measured round by round interleaved with the runner:

* in-graph: the whole pass in one ``tf.function`` (``for batch in dataset``
  inside the graph, sums reduced in the graph) -- the floor;
* ``Model.evaluate`` with default settings;
* (slow input) the load time alone, and the compute time alone.

The runner is timed inside ``model.fit``: the time between a callback placed
before it and one placed after it at the end of the epoch. It runs
``ScalarStats('loss')`` and ``ClassificationError()``. Reported numbers are
medians over rounds of the per-round ratio.

    python benchmarks/bench_speed.py [--rounds 7] [--json] [--quick]
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import ClassificationError, InferenceRunner, ScalarStats  # noqa: E402


class _Mark(keras.callbacks.Callback):
    def __init__(self, sink, key):
        super().__init__()
        self.sink, self.key = sink, key

    def on_epoch_end(self, epoch, logs=None):
        self.sink[self.key] = time.perf_counter()


def _cnn():
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(10)])


def _mlp():
    return keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])


def _workload(name, n):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    if name == "compute":
        x, batch, model = rng.normal(size=(n, 32, 32, 3)).astype("float32"), 250, _cnn()
    else:
        x, batch, model = rng.normal(size=(n, 32)).astype("float32"), 32, _mlp()
    y = rng.integers(0, 10, size=n).astype("int32")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    train = tf.data.Dataset.from_tensor_slices((x[:batch], y[:batch])).batch(batch)
    return model, val, train, (x, y, batch)


def _in_graph(model, val):
    @tf.function
    def whole_pass():
        loss_sum = tf.constant(0.0, tf.float64)
        wrong_sum = tf.constant(0.0, tf.float64)
        count = tf.constant(0.0, tf.float64)
        for x, y in val:
            logits = model(x, training=False)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            wrong = tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != y, tf.float64)
            loss_sum += tf.reduce_sum(tf.cast(loss, tf.float64))
            wrong_sum += tf.reduce_sum(wrong)
            count += tf.cast(tf.shape(y)[0], tf.float64)
        return loss_sum / count, wrong_sum / count

    return whole_pass


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _runner_in_fit(model, train, runner):
    marks = {}
    model.fit(train, epochs=1, verbose=0,
              callbacks=[_Mark(marks, "before"), runner, _Mark(marks, "after")])
    return marks["after"] - marks["before"]


def bench_workload(name, n, rounds):
    model, val, train, _ = _workload(name, n)
    runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()])
    in_graph = _in_graph(model, val)
    # warm up: traces, caches
    _runner_in_fit(model, train, runner)
    in_graph()
    model.evaluate(val, verbose=0)
    rows = {"runner": [], "in_graph": [], "evaluate": []}
    for _ in range(rounds):
        rows["in_graph"].append(_time(in_graph))
        rows["runner"].append(_runner_in_fit(model, train, runner))
        rows["evaluate"].append(_time(lambda: model.evaluate(val, verbose=0)))
    r_graph = [r / g for r, g in zip(rows["runner"], rows["in_graph"])]
    r_eval = [r / e for r, e in zip(rows["runner"], rows["evaluate"])]
    ref = in_graph()
    check = {"runner_loss": runner.last_results["validation_loss"], "in_graph_loss": float(ref[0]),
             "runner_error": runner.last_results["validation_error"], "in_graph_error": float(ref[1])}
    return {
        "workload": name, "samples": n,
        "runner_s": statistics.median(rows["runner"]), "in_graph_s": statistics.median(rows["in_graph"]),
        "evaluate_s": statistics.median(rows["evaluate"]),
        "runner_over_in_graph": statistics.median(r_graph), "runner_over_evaluate": statistics.median(r_eval),
        "check": check,
    }


class SlowFlow:
    """A DataFlow whose batches take ``delay`` seconds each to produce."""

    def __init__(self, x, y, batch, delay):
        self.x, self.y, self.batch, self.delay = x, y, batch, delay

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __iter__(self):
        for i in range(0, len(self.x), self.batch):
            time.sleep(self.delay)
            yield self.x[i:i + self.batch], self.y[i:i + self.batch]


def bench_slow_input(n, rounds, delay=0.01):
    model, val, train, (x, y, _) = _workload("compute", n)
    batch = 250
    flow = SlowFlow(x, y, batch, delay)
    runner = InferenceRunner(flow, [ScalarStats("loss"), ClassificationError()])
    _runner_in_fit(model, train, runner)
    compute_only = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()])
    _runner_in_fit(model, train, compute_only)
    ratios, totals, loads, computes = [], [], [], []
    for _ in range(rounds):
        load = _time(lambda: [None for _ in flow])
        compute = _runner_in_fit(model, train, compute_only)
        total = _runner_in_fit(model, train, runner)
        loads.append(load)
        computes.append(compute)
        totals.append(total)
        ratios.append(total / max(load, compute))
    return {"workload": "slow_input", "samples": n, "delay_ms_per_batch": delay * 1e3,
            "runner_s": statistics.median(totals), "load_s": statistics.median(loads),
            "compute_s": statistics.median(computes), "runner_over_max_load_compute": statistics.median(ratios)}


class _EpochBegin(keras.callbacks.Callback):
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def on_epoch_begin(self, epoch, logs=None):
        self.sink["begin"] = time.perf_counter()


def bench_training_overhead(rounds, n=20000):
    """Training time of an epoch (from ``on_epoch_begin`` to the end of its
    last step, i.e. the first ``on_epoch_end`` callback) with and without an
    epoch-triggered runner in the callback list. Only epoch hooks are used,
    so Keras keeps its batch dispatch as it is without callbacks."""
    model, val, _, (x, y, _) = _workload("overhead", n)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).cache()
    runner = InferenceRunner(val.take(1), [ScalarStats("loss")])

    def epoch_time(with_runner):
        marks = {}
        callbacks = [_EpochBegin(marks), _Mark(marks, "end")] + ([runner] if with_runner else [])
        model.fit(train, epochs=1, verbose=0, callbacks=callbacks)
        return marks["end"] - marks["begin"]

    epoch_time(True), epoch_time(False)  # warm up
    ratios, with_s, without_s = [], [], []
    for i in range(rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        times = {w: epoch_time(w) for w in order}
        with_s.append(times[True])
        without_s.append(times[False])
        ratios.append(times[True] / times[False])
    return {"workload": "train_step_overhead", "steps": -(-n // 32),
            "epoch_with_runner_s": statistics.median(with_s), "epoch_without_s": statistics.median(without_s),
            "train_with_runner_over_without": statistics.median(ratios)}


def bench_memory(sizes=(10_000, 100_000)):
    """Peak RSS during one validation pass with streaming inferencers (fresh
    process per size; the kernel's peak is reset just before the pass by
    writing 5 to /proc/self/clear_refs)."""
    import subprocess

    out = {}
    for n in sizes:
        code = f"""
import os, sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'
import numpy as np, tensorflow as tf, keras
from infer_callbacks import InferenceRunner, ScalarStats, ClassificationError
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024.0
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation='relu'), keras.layers.Dense(10)])
model.compile(optimizer='sgd', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
n = {n}
ds = tf.data.Dataset.range(n).batch(100).map(
    lambda i: (tf.random.stateless_normal([tf.shape(i)[0], 32], [1, 2]), tf.cast(i % 10, tf.int32)))
r = InferenceRunner(ds, [ScalarStats('loss'), ClassificationError()])
r.set_model(model)
r.trigger()
before = status('VmRSS')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
r.trigger()
print(before, status('VmHWM'))
"""
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        before, peak = map(float, proc.stdout.strip().splitlines()[-1].split())
        out[n] = {"rss_before_mb": before, "peak_during_mb": peak, "growth_mb": peak - before}
    small, large = sizes
    return {"workload": "memory", "sizes": {str(k): v for k, v in out.items()},
            "peak_large_over_small": out[large]["peak_during_mb"] / out[small]["peak_during_mb"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description="InferenceRunner speed benchmarks")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds (smoke test)")
    parser.add_argument("--only", choices=["compute", "overhead", "slow_input", "train", "memory"],
                        help="run one workload only")
    args = parser.parse_args(argv)
    n, rounds = (2000, 2) if args.quick else (args.samples, args.rounds)
    jobs = {"compute": lambda: bench_workload("compute", n, rounds),
            "overhead": lambda: bench_workload("overhead", n, rounds),
            "slow_input": lambda: bench_slow_input(n, rounds),
            "train": lambda: bench_training_overhead(rounds, n),
            "memory": bench_memory}
    if args.only:
        result = jobs[args.only]()
        print(json.dumps(result) if args.json else result)
        return [result]
    results = [jobs[k]() for k in ("compute", "overhead", "slow_input", "train")]
    if not args.quick:
        results.append(bench_memory())
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "tensorflow": tf.__version__, "keras": keras.__version__}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}))
        return results
    from tabulate import tabulate

    table = []
    for r in results[:2]:
        table.append([r["workload"], f"{r['in_graph_s']:.3f}", f"{r['runner_s']:.3f}", f"{r['evaluate_s']:.3f}",
                      f"{r['runner_over_in_graph']:.2f}", f"{r['runner_over_evaluate']:.2f}"])
    print(tabulate(table, headers=["workload", "in-graph s", "runner s", "evaluate s", "runner/in-graph",
                                   "runner/evaluate"]))
    s = results[2]
    print(f"\nslow input (10 ms/batch): load {s['load_s']:.3f}s, compute {s['compute_s']:.3f}s, runner "
          f"{s['runner_s']:.3f}s, runner/max(load, compute) = {s['runner_over_max_load_compute']:.3f}")
    print(f"training epoch with an epoch-triggered runner / without: "
          f"{results[3]['train_with_runner_over_without']:.3f}")
    if len(results) > 4:
        m = results[4]
        sizes = ", ".join(f"{k} samples: {v['peak_during_mb']:.0f} MB (+{v['growth_mb']:.1f})"
                          for k, v in m["sizes"].items())
        print(f"peak RSS during validation: {sizes}; ratio {m['peak_large_over_small']:.3f}")
    print(f"\nmachine: {machine}")
    return results


if __name__ == "__main__":
    main()
