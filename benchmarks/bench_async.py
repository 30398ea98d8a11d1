"""Asynchronous validation: ``fit`` with ``InferenceRunner(asynchronous=True)``
against the synchronous runner, in the same process.

Workload (synthetic data, fixed seeds): an input-bound training -- a small
CNN on 32x32x3 (two strided convolutions) fed by a Python
``keras.utils.PyDataset`` that takes 20 ms per batch of 32, 40 steps an
epoch -- and a compute-bound validation of the same model (batch 256)
whose size is calibrated at start so that one pass takes about as long as
one training epoch. ``ScalarStats('loss')`` and ``ClassificationError()``.

Each round runs ``fit`` once per mode (the order alternating) from the same
initial weights and optimizer state, with one runner per mode reused across
rounds (traced once). Reported: the wall time of ``fit`` (fastest and median
of rounds), ``asynchronous / synchronous`` for the fastest times and as the
median of per-round ratios.

Checks, on the last round:

* every epoch has a result in both modes, and the asynchronous run's result
  for epoch ``e`` equals a synchronous pass over the weights recorded at the
  end of epoch ``e`` (and the synchronous run's result for epoch ``e``);
* memory: the snapshot's bytes (``InferenceRunner.snapshot_nbytes``, one copy of
  every model weight, trainable or not) against the model's weights.

    python benchmarks/bench_async.py [--rounds 3] [--epochs 5] [--json] [--quick]
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


class SlowInput(keras.utils.PyDataset):
    """``steps`` batches of 32, each taking ``delay`` seconds to produce."""

    def __init__(self, x, y, steps, delay):
        super().__init__()
        self.x, self.y, self.steps, self.delay = x, y, steps, delay

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        time.sleep(self.delay)
        lo = (i * 32) % (len(self.x) - 32)
        return self.x[lo:lo + 32], self.y[lo:lo + 32]


class Recorder(keras.callbacks.Callback):
    """The model's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_train_begin(self, logs=None):
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = self.model.get_weights()


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _infs():
    return [ScalarStats("loss"), ClassificationError()]


def _by_epoch(runner) -> dict[int, dict]:
    return {r.epoch_num: r.scalars for r in runner.pop_reports()}


def _max_diff(a: dict, b: dict) -> float:
    keys = ("validation_loss", "validation_error")
    return max(abs(a[k] - b[k]) for k in keys)


def run(rounds: int, epochs: int, steps: int, delay: float, val_samples: int | None) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=4096).astype("int32")
    model = _model()
    initial = model.get_weights()
    train = SlowInput(x, y, steps, delay)

    def reset():
        model.set_weights(initial)
        model.optimizer.iterations.assign(0)

    # calibrate: a validation pass about as long as a training epoch
    reset()
    model.fit(train, epochs=1, verbose=0, shuffle=False)  # traces
    epoch_s = min(_seconds(lambda: model.fit(train, epochs=1, verbose=0, shuffle=False)) for _ in range(2))
    if val_samples is None:
        probe = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(256), _infs(), verbose=False)
        probe.set_model(model)
        probe.trigger()
        probe_s = min(_seconds(probe.trigger) for _ in range(2))
        val_samples = int(np.clip(round(len(x) * epoch_s / probe_s / 256), 1, 256)) * 256
    val = tf.data.Dataset.from_tensor_slices((x, y)).repeat().take(val_samples).batch(256)

    runners = {"sync": InferenceRunner(val, _infs(), verbose=False),
               "async": InferenceRunner(val, _infs(), verbose=False, asynchronous=True)}
    recorder = Recorder()

    def fit(mode):
        reset()
        start = time.perf_counter()
        model.fit(train, epochs=epochs, verbose=0, shuffle=False, callbacks=[runners[mode], recorder])
        return time.perf_counter() - start

    for mode in runners:  # warm up: bind, trace
        reset()
        model.fit(train, epochs=2, verbose=0, shuffle=False, callbacks=[runners[mode]])
        runners[mode].pop_reports()
    val_s = min(_seconds(runners["sync"].trigger) for _ in range(2))
    runners["sync"].pop_reports()

    times = {"sync": [], "async": []}
    reports = {}
    for r in range(rounds):
        for mode in (("sync", "async") if r % 2 == 0 else ("async", "sync")):
            times[mode].append(fit(mode))
            reports[mode] = _by_epoch(runners[mode])
            if mode == "async":
                recorded = recorder.weights

    # the asynchronous numbers against synchronous passes over the recorded weights
    checker = InferenceRunner(val, _infs(), verbose=False)
    checker.set_model(model)
    diffs_recorded, diffs_sync = {}, {}
    for epoch in range(1, epochs + 1):
        model.set_weights(recorded[epoch])
        expected = checker.trigger()
        got = reports["async"].get(epoch)
        diffs_recorded[epoch] = None if got is None else _max_diff(got, expected)
        sync = reports["sync"].get(epoch)
        diffs_sync[epoch] = None if got is None or sync is None else _max_diff(got, sync)
    weight_bytes = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    snapshot_bytes = runners["async"].snapshot_nbytes
    return {
        "benchmark": "async", "epochs": epochs, "steps_per_epoch": steps, "input_ms_per_batch": delay * 1e3,
        "val_samples": val_samples, "val_batches": -(-val_samples // 256), "rounds": rounds,
        "train_epoch_s": epoch_s, "validation_pass_s": val_s,
        "sync_fit_s": {"fastest": min(times["sync"]), "median": statistics.median(times["sync"])},
        "async_fit_s": {"fastest": min(times["async"]), "median": statistics.median(times["async"])},
        "async_over_sync": {"fastest": min(times["async"]) / min(times["sync"]),
                            "median": statistics.median(a / s for a, s in zip(times["async"], times["sync"]))},
        "epochs_reported": {m: sorted(reports[m]) for m in reports},
        "max_diff_vs_recorded_weights": diffs_recorded, "max_diff_vs_sync_run": diffs_sync,
        "identical": all(d == 0.0 for d in diffs_recorded.values()),
        "step_traces": {m: runners[m].tracing_count for m in runners},
        "weights_bytes": weight_bytes, "snapshot_bytes": snapshot_bytes,
        "snapshot_over_weights": snapshot_bytes / weight_bytes,
    }


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="training steps per epoch")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per training batch of input")
    parser.add_argument("--val-samples", type=int, default=None,
                        help="validation samples (default: calibrated to one epoch's time)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round, 2 epochs, 4 steps, 256 validation samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.steps, args.delay = 1, 2, 4, 0.005
        args.val_samples = args.val_samples or 256
    result = run(args.rounds, args.epochs, args.steps, args.delay, args.val_samples)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "python": platform.python_version(), "tensorflow": tf.__version__,
                         "keras": keras.__version__}
    if args.json:
        print(json.dumps(result))
        return result
    r = result
    print(f"input-bound training: {r['steps_per_epoch']} steps x {r['input_ms_per_batch']:.0f} ms input, "
          f"epoch {r['train_epoch_s']:.2f} s; validation {r['val_samples']} samples, pass "
          f"{r['validation_pass_s']:.2f} s; {r['epochs']} epochs, {r['rounds']} interleaved rounds")
    print(f"{'mode':<14}{'fit fastest s':>15}{'fit median s':>14}")
    print(f"{'synchronous':<14}{r['sync_fit_s']['fastest']:>15.2f}{r['sync_fit_s']['median']:>14.2f}")
    print(f"{'asynchronous':<14}{r['async_fit_s']['fastest']:>15.2f}{r['async_fit_s']['median']:>14.2f}")
    print(f"asynchronous / synchronous: fastest {r['async_over_sync']['fastest']:.3f}, "
          f"median of rounds {r['async_over_sync']['median']:.3f}")
    print(f"epochs reported: {r['epochs_reported']}; step traces {r['step_traces']}")
    print(f"per-epoch max |async - sync pass on recorded weights|: {r['max_diff_vs_recorded_weights']} "
          f"(identical: {r['identical']}); |async - sync run|: {r['max_diff_vs_sync_run']}")
    print(f"memory: snapshot {r['snapshot_bytes']:,} B, model weights {r['weights_bytes']:,} B "
          f"(x{r['snapshot_over_weights']:.2f})")
    print(f"machine: {r['machine']}")
    return result


if __name__ == "__main__":
    main()
