"""Validation speed of InferenceRunner against baselines in the same process.

Workloads (synthetic data, fixed seeds):

* compute-bound: a small CNN on 32x32x3, batch 250 (``--compute-samples``, 10,000);
* overhead-bound: an MLP 32->64->10, batch 32 (625 batches);
* slow input: a Python DataFlow taking 10 ms per batch, 40 batches, with the
  MLP, batch 32 (input-bound: the per-run fixed cost shows) and with the CNN,
  batch 100; efficiency = max(input, compute) / runner time (1.0 is ideal);
* padded sequences: ``padded_batch`` (the length differs per batch),
  ``Embedding(mask_zero=True)`` and a per-token classifier; the runner
  against an in-graph loop, with the number of traces of its step;
* epoch-hook overhead: a training epoch with an epoch-triggered runner in the
  callback list against one without.

Baselines, measured round by round interleaved with the runner:

* in-graph: the whole pass in one ``tf.function`` (``for batch in dataset``
  inside the graph, sums reduced in the graph) -- the floor;
* ``Model.evaluate`` with default settings;
* (slow input) the input alone (iterating the DataFlow) and the compute alone
  (the runner on the same batches, cached).

The runner is timed inside ``model.fit``: its own ``on_epoch_end`` (the
pass, ``on_test_*`` hooks, results into ``logs``), with
``ScalarStats('loss')`` and ``ClassificationError()``. This machine's speed
varies between rounds, so rounds are interleaved and both the fastest round
(ratio of the fastest times) and the median of the per-round ratios are
reported.

    python benchmarks/bench_speed.py [--rounds 5] [--json] [--quick] [--only W] [--memory]
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


class TimedRunner(InferenceRunner):
    """An InferenceRunner that records how long its ``on_epoch_end`` took
    (``fit`` moves a runner ahead of the other callbacks' ``on_epoch_end``, so
    marks from neighbouring callbacks cannot bracket it)."""

    seconds: float | None = None
    started: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.started = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.seconds = time.perf_counter() - self.started


class _Mark(keras.callbacks.Callback):
    def __init__(self, sink, key, hook="on_epoch_end"):
        super().__init__()
        self.sink, self.key = sink, key
        setattr(self, hook, self._mark)

    def _mark(self, epoch, logs=None):
        self.sink[self.key] = time.perf_counter()


def _infs():
    return [ScalarStats("loss"), ClassificationError()]


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
            wrong = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) != y, tf.float64)
            mask = tf.cast(tf.not_equal(x, 0), tf.float64) if x.dtype == tf.int32 else tf.ones_like(wrong)
            loss_sum += tf.reduce_sum(tf.cast(loss, tf.float64) * mask)
            wrong_sum += tf.reduce_sum(wrong * mask)
            count += tf.reduce_sum(mask)
        return loss_sum / count, wrong_sum / count

    return whole_pass


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _runner_in_fit(model, train, runner):
    model.fit(train, epochs=1, verbose=0, callbacks=[runner])
    return runner.seconds


def _summary(times: dict[str, list[float]], base: str, other: str) -> dict:
    """Fastest-round and median-of-rounds ratio ``other / base``."""
    a, b = times[other], times[base]
    return {"fastest": min(a) / min(b), "median": statistics.median(x / y for x, y in zip(a, b))}


def _spread(values):
    return {"fastest": min(values), "median": statistics.median(values)}


def _interleave(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Time every function once per round, rotating the order each round."""
    keys = list(fns)
    times = {k: [] for k in keys}
    for i in range(rounds):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            times[k].append(fns[k]())
    return times


def bench_workload(name, n, rounds):
    model, val, train, _ = _workload(name, n)
    runner = TimedRunner(val, _infs(), verbose=False)
    in_graph = _in_graph(model, val)
    _runner_in_fit(model, train, runner)  # warm up: traces, caches
    in_graph()
    model.evaluate(val, verbose=0)
    times = _interleave({"in_graph": lambda: _time(in_graph),
                         "runner": lambda: _runner_in_fit(model, train, runner),
                         "evaluate": lambda: _time(lambda: model.evaluate(val, verbose=0))}, rounds)
    ref = in_graph()
    check = {"runner_loss": runner.last_results["validation_loss"], "in_graph_loss": float(ref[0]),
             "runner_error": runner.last_results["validation_error"], "in_graph_error": float(ref[1])}
    return {
        "workload": name, "samples": n, "batches": -(-n // (250 if name == "compute" else 32)), "rounds": rounds,
        "runner_s": _spread(times["runner"]), "in_graph_s": _spread(times["in_graph"]),
        "evaluate_s": _spread(times["evaluate"]),
        "runner_over_in_graph": _summary(times, "in_graph", "runner"),
        "runner_over_evaluate": _summary(times, "evaluate", "runner"),
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


def bench_slow_input(rounds, kind="overhead", num_batches=40, delay=0.01):
    batch = 100 if kind == "compute" else 32
    model, val, train, (x, y, _) = _workload(kind, num_batches * batch)
    flow = SlowFlow(x, y, batch, delay)
    runner = TimedRunner(flow, _infs(), verbose=False)
    compute_only = TimedRunner(val, _infs(), verbose=False)
    _runner_in_fit(model, train, runner)
    _runner_in_fit(model, train, compute_only)
    times = _interleave({"input": lambda: _time(lambda: [None for _ in flow]),
                         "compute": lambda: _runner_in_fit(model, train, compute_only),
                         "runner": lambda: _runner_in_fit(model, train, runner)}, rounds)
    # efficiency: max(input, compute) / runner, per round and for the fastest times
    per_round = [max(a, b) / r for a, b, r in zip(times["input"], times["compute"], times["runner"])]
    fastest = max(min(times["input"]), min(times["compute"])) / min(times["runner"])
    return {"workload": f"slow_input_{kind}", "batches": num_batches, "batch_size": batch,
            "delay_ms_per_batch": delay * 1e3, "rounds": rounds,
            "runner_s": _spread(times["runner"]), "load_s": _spread(times["input"]),
            "compute_s": _spread(times["compute"]),
            "max_load_compute_over_runner": {"fastest": fastest, "median": statistics.median(per_round)},
            "max_abs_diff_vs_cached": max(abs(runner.last_results[k] - compute_only.last_results[k])
                                          for k in runner.last_results)}


def _sequences(n, vocab=1000, classes=10, max_len=64, batch=64):
    """``n`` token sequences in ``padded_batch(batch)``: each batch has its own
    longest length (8..max_len), so the padded shape differs per batch."""
    rng = np.random.default_rng(1)
    caps = np.repeat(rng.integers(8, max_len + 1, size=-(-n // batch)), batch)[:n]
    lengths = np.minimum(caps, rng.integers(2, max_len + 1, size=n))
    lengths[::batch] = caps[::batch]
    xs = [rng.integers(1, vocab, size=k).astype("int32") for k in lengths]
    ys = [rng.integers(0, classes, size=k).astype("int32") for k in lengths]

    def gen():
        yield from zip(xs, ys)

    spec = (tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32))
    ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
    return ds.padded_batch(batch).cache(), int(lengths.sum())


def bench_padded(rounds, n=8192):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None,), dtype="int32"),
                              keras.layers.Embedding(1000, 32, mask_zero=True),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val, tokens = _sequences(n)
    x0, y0 = next(iter(val))
    train = tf.data.Dataset.from_tensors((x0, y0))
    lengths = sorted({int(x.shape[1]) for x, _ in val})
    runner = TimedRunner(val, _infs(), verbose=False)
    in_graph = _in_graph(model, val)
    _runner_in_fit(model, train, runner)
    in_graph()
    times = _interleave({"in_graph": lambda: _time(in_graph),
                         "runner": lambda: _runner_in_fit(model, train, runner)}, rounds)
    ref = in_graph()
    return {"workload": "padded", "sequences": n, "tokens": tokens, "batches": -(-n // 64),
            "distinct_padded_lengths": len(lengths), "rounds": rounds,
            "runner_s": _spread(times["runner"]), "in_graph_s": _spread(times["in_graph"]),
            "runner_over_in_graph": _summary(times, "in_graph", "runner"),
            "step_traces": runner.tracing_count,
            "check": {"runner_loss": runner.last_results["validation_loss"], "in_graph_loss": float(ref[0]),
                      "runner_error": runner.last_results["validation_error"],
                      "in_graph_error": float(ref[1])}}


def bench_training_overhead(rounds, n=20000):
    """Training time of an epoch (from ``on_epoch_begin`` to the first
    ``on_epoch_end`` hook: the runner's, which ``fit`` runs first, or a
    mark's) with and without an epoch-triggered runner in the callback list.
    Only epoch hooks are used, so Keras keeps its batch dispatch as it is
    without callbacks."""
    model, val, _, (x, y, _) = _workload("overhead", n)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).cache()
    runner = TimedRunner(val.take(1), [ScalarStats("loss")], verbose=False)

    def epoch_time(with_runner):
        marks = {}
        callbacks = [_Mark(marks, "begin", "on_epoch_begin"), _Mark(marks, "end")]
        model.fit(train, epochs=1, verbose=0, callbacks=callbacks + ([runner] if with_runner else []))
        return (runner.started if with_runner else marks["end"]) - marks["begin"]

    epoch_time(True), epoch_time(False)  # warm up
    times = _interleave({"with": lambda: epoch_time(True), "without": lambda: epoch_time(False)}, rounds)
    return {"workload": "train_step_overhead", "steps": -(-n // 32), "rounds": rounds,
            "epoch_with_runner_s": _spread(times["with"]), "epoch_without_s": _spread(times["without"]),
            "train_with_runner_over_without": _summary(times, "without", "with")}


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
r = InferenceRunner(ds, [ScalarStats('loss'), ClassificationError()], verbose=False)
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


def _fr(d, digits=3):
    return f"{d['fastest']:.{digits}f} / {d['median']:.{digits}f}"


def _print_tables(results, machine):
    from tabulate import tabulate

    by = {r["workload"]: r for r in results}
    rows = []
    for key in ("compute", "overhead", "padded"):
        if key in by:
            r = by[key]
            rows.append([key, r["batches"], _fr(r["in_graph_s"]), _fr(r["runner_s"]),
                         _fr(r["evaluate_s"]) if "evaluate_s" in r else "-",
                         _fr(r["runner_over_in_graph"], 2),
                         _fr(r["runner_over_evaluate"], 2) if "runner_over_evaluate" in r else "-"])
    if rows:
        print("seconds and ratios as fastest / median of rounds")
        print(tabulate(rows, headers=["workload", "batches", "in-graph s", "runner s", "evaluate s",
                                      "runner/in-graph", "runner/evaluate"]))
    if "padded" in by:
        p = by["padded"]
        print(f"padded: {p['distinct_padded_lengths']} distinct padded lengths, step traced "
              f"{p['step_traces']} time(s); loss runner {p['check']['runner_loss']:.6f} "
              f"vs in-graph {p['check']['in_graph_loss']:.6f}")
    slow = [by[k] for k in ("slow_input_overhead", "slow_input_compute") if k in by]
    if slow:
        print()
        print(tabulate([[s["workload"], s["batches"], _fr(s["load_s"]), _fr(s["compute_s"]), _fr(s["runner_s"]),
                         _fr(s["max_load_compute_over_runner"], 3)] for s in slow],
                       headers=["slow input (10 ms/batch)", "batches", "input s", "compute s", "runner s",
                                "max(input, compute)/runner"]))
    if "train_step_overhead" in by:
        t = by["train_step_overhead"]
        print(f"\ntraining epoch with an epoch-triggered runner / without: "
              f"{_fr(t['train_with_runner_over_without'])}")
    if "memory" in by:
        m = by["memory"]
        sizes = ", ".join(f"{k} samples: {v['peak_during_mb']:.0f} MB (+{v['growth_mb']:.1f})"
                          for k, v in m["sizes"].items())
        print(f"peak RSS during validation: {sizes}; ratio {m['peak_large_over_small']:.3f}")
    print(f"\nmachine: {machine}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="InferenceRunner speed benchmarks")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20000, help="overhead-bound and epoch-hook workloads")
    parser.add_argument("--compute-samples", type=int, default=10000, help="compute-bound workload")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="smoke test: 256 samples, one round")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS (two subprocesses)")
    parser.add_argument("--only", choices=["compute", "overhead", "slow_input", "padded", "train", "memory"],
                        action="append", help="run these workloads only (repeatable)")
    args = parser.parse_args(argv)
    n, rounds = (256, 1) if args.quick else (args.samples, args.rounds)
    nc = 256 if args.quick else args.compute_samples
    jobs = {"compute": lambda: [bench_workload("compute", nc, rounds)],
            "overhead": lambda: [bench_workload("overhead", n, rounds)],
            "slow_input": lambda: [bench_slow_input(rounds, "overhead"), bench_slow_input(rounds, "compute")],
            "padded": lambda: [bench_padded(rounds, 256 if args.quick else 8192)],
            "train": lambda: [bench_training_overhead(rounds, n)],
            "memory": lambda: [bench_memory()]}
    chosen = args.only or ["compute", "overhead", "slow_input", "padded", "train"] + (["memory"] if args.memory else [])
    results = []
    for k in chosen:
        start = time.perf_counter()
        results.extend(jobs[k]())
        print(f"[bench_speed] {k}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "tensorflow": tf.__version__, "keras": keras.__version__, "rounds": rounds}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}))
    else:
        _print_tables(results, machine)
    return results


if __name__ == "__main__":
    main()
