"""Validation speed of InferenceRunner under Keras's PyTorch backend,
against ``Model.evaluate`` in the same process.

Workloads (synthetic data, fixed seeds), as in ``bench_jax.py``:

* overhead-bound: an MLP 32->64->10, batch 32 (20,000 samples: 625 batches);
* compute-bound: a small CNN on 32x32x3, batch 250 (10,000 samples: 40 batches).

The runner is timed inside ``model.fit``: its own ``on_epoch_end`` (the
pass, ``on_test_*`` hooks, results into ``logs``), with
``ScalarStats('loss')`` and ``ClassificationError()`` over a tower written
with ``keras.ops`` returning only those two (``--default-tower``: the
model's default Keras tower, Keras's compiled loss with exact pairs), on
two inputs: the ``tf.data`` pipeline ``evaluate`` reads, and Keras-style
arrays ``(x, y)`` with ``batch_size`` (``evaluate`` is timed on them too).
Rounds are interleaved; the fastest round (ratio of the fastest times) and
the median of per-round ratios are reported. Each runner's last numbers are
checked against ``evaluate`` on the weights it validated.

Targets (issue 29): MLP <= 0.3x evaluate; CNN <= 1.0x evaluate.

    python benchmarks/bench_torch.py [--rounds 5] [--json] [--quick] [--only mlp|cnn] [--default-tower]
                                     [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import ClassificationError, InferenceRunner, ScalarStats  # noqa: E402


class TimedRunner(InferenceRunner):
    """An InferenceRunner that records how long its ``on_epoch_end`` took."""

    seconds: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.seconds = time.perf_counter() - started


def _ops_tower(model):
    per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def tower(x, y):
        logits = model(x, training=False)
        wrong = ops.cast(ops.not_equal(ops.argmax(logits, -1), ops.cast(y, "int32")), "float32")
        return {"loss": per_example(y, logits), "wrong-top1": wrong}
    return tower


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
    if name == "cnn":
        x, batch, model = rng.normal(size=(n, 32, 32, 3)).astype("float32"), 250, _cnn()
    else:
        x, batch, model = rng.normal(size=(n, 32)).astype("float32"), 32, _mlp()
    y = rng.integers(0, 10, size=n).astype("int32")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    train = tf.data.Dataset.from_tensor_slices((x[:batch], y[:batch])).batch(batch)
    return model, val, train, (x, y, batch)


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _interleave(fns: dict, rounds: int) -> dict[str, list[float]]:
    keys = list(fns)
    times = {k: [] for k in keys}
    for i in range(rounds):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            times[k].append(fns[k]())
    return times


def _summary(times, base, other):
    a, b = times[other], times[base]
    return {"fastest": min(a) / min(b), "median": statistics.median(p / q for p, q in zip(a, b))}


def _spread(values):
    return {"fastest": min(values), "median": statistics.median(values)}


def bench(name, n, rounds, default_tower, warmup):
    model, val, train, (x, y, batch) = _workload(name, n)
    tower = None if default_tower else _ops_tower(model)
    runner = TimedRunner(val, [ScalarStats("loss"), ClassificationError()], verbose=False, tower_func=tower)
    on_arrays = TimedRunner((x, y), [ScalarStats("loss"), ClassificationError()], batch_size=batch,
                            verbose=False, tower_func=tower)

    def in_fit(which=runner):
        model.fit(train, epochs=1, verbose=0, callbacks=[which])
        return which.seconds

    for _ in range(warmup):  # warm up: caches, the runner's pace
        in_fit()
        in_fit(on_arrays)
        model.evaluate(val, verbose=0)
        model.evaluate(x, y, batch_size=batch, verbose=0)
    times = _interleave({"runner": in_fit, "runner_arrays": lambda: in_fit(on_arrays),
                         "evaluate": lambda: _time(lambda: model.evaluate(val, verbose=0)),
                         "evaluate_arrays": lambda: _time(lambda: model.evaluate(x, y, batch_size=batch, verbose=0))},
                        rounds)
    check = {}
    for label, which in (("runner", runner), ("runner_arrays", on_arrays)):
        in_fit(which)  # the runner validates the weights fit ends with
        loss, acc = model.evaluate(val, verbose=0)
        check.update({f"{label}_loss": which.last_results["validation_loss"], f"{label}_error":
                      which.last_results["validation_error"], f"evaluate_loss_{label}": float(loss),
                      f"evaluate_error_{label}": 1 - float(acc)})
        if not np.isclose(check[f"{label}_loss"], check[f"evaluate_loss_{label}"], rtol=1e-4):
            raise RuntimeError(f"{label} disagrees with evaluate: {check}")
    return {
        "workload": name, "samples": n, "batches": -(-n // batch), "rounds": rounds,
        "runner_s": _spread(times["runner"]), "evaluate_s": _spread(times["evaluate"]),
        "runner_arrays_s": _spread(times["runner_arrays"]), "evaluate_arrays_s": _spread(times["evaluate_arrays"]),
        "runner_over_evaluate": _summary(times, "evaluate", "runner"),
        "arrays_over_evaluate": _summary(times, "evaluate_arrays", "runner_arrays"),
        "check": check,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="InferenceRunner speed under Keras's PyTorch backend")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="one tiny round (smoke test)")
    parser.add_argument("--only", choices=["mlp", "cnn"])
    parser.add_argument("--default-tower", action="store_true", help="the model's default tower")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (for the runner and evaluate alike)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 1 if args.quick else args.rounds
    sizes = {"mlp": 96 if args.quick else 20000, "cnn": 250 if args.quick else 10000}
    results = [bench(name, n, rounds, args.default_tower, 0 if args.quick else 2) for name, n in sizes.items()
               if args.only in (None, name)]
    machine = {"python": platform.python_version(), "torch": torch.__version__, "keras": keras.__version__,
               "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if args.json:
        print(json.dumps({"backend": "torch", "machine": machine, "results": results}))
        return
    print(f"InferenceRunner on Keras {keras.__version__} / torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, load average {machine['load_average']}")
    print(f"{'workload':10} {'batches':>7} {'input':>8} {'runner s':>9} {'evaluate s':>10} {'/evaluate':>17}")
    for r in results:
        for label, run, base, ratio in (("tf.data", "runner_s", "evaluate_s", "runner_over_evaluate"),
                                        ("arrays", "runner_arrays_s", "evaluate_arrays_s", "arrays_over_evaluate")):
            print(f"{r['workload']:10} {r['batches']:>7} {label:>8} {r[run]['fastest']:>9.4f} "
                  f"{r[base]['fastest']:>10.4f} {r[ratio]['fastest']:>6.3f} (med {r[ratio]['median']:.3f})")
    print("(fastest of interleaved rounds; 'med': median of per-round ratios)")
    for r in results:
        print(r["workload"], "check:", {k: round(v, 6) for k, v in r["check"].items()})


if __name__ == "__main__":
    main()
