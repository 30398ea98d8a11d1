"""The cost of starting a ``fit`` as a long process grows: with the runner
(and ``Monitors``) and without any of our callbacks, interleaved.

One process runs ``--fits`` pairs of fits (the pairs alternate which goes
first); every fit keeps its model and callbacks alive afterwards, so the
process grows as a notebook or a tuner does. A fit's start is timed from the
call to its first training batch (``on_train_batch_begin``): the runner's
part is joining its run, moving ahead of the other callbacks, tracing the
tower and checking the fetches. Reported per phase (first and last fifth of
the fits): the fastest and median start, and the ratio of the last fifth's
median to the first's (flat: about 1).

    python benchmarks/bench_fit_start.py [--fits 50] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import InferenceRunner, Monitors, ScalarPrinter, ScalarStats  # noqa: E402


class _FirstBatch(keras.callbacks.Callback):
    def __init__(self, start):
        super().__init__()
        self.start, self.seconds = start, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start


def _one_fit(with_runner: bool, x, y, val, keep: list) -> float:
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe = _FirstBatch(time.perf_counter())
    callbacks = [probe]
    if with_runner:
        callbacks += [Monitors([ScalarPrinter(file=io.StringIO())]),
                      InferenceRunner(val, [ScalarStats("loss")], verbose=False)]
    probe.start = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=callbacks)
    keep.append((model, callbacks))
    return probe.seconds


def _phase(values: list[float]) -> dict:
    return {"fastest": min(values), "median": statistics.median(values)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=50, help="fits of each kind")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 fits of each kind")
    args = parser.parse_args(argv)
    if args.quick:
        args.fits = 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = rng.integers(0, 3, size=256).astype("int32")
    val = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(32)
    keep: list = []
    times = {True: [], False: []}
    for i in range(args.fits):
        for with_runner in ((True, False) if i % 2 else (False, True)):
            times[with_runner].append(_one_fit(with_runner, x, y, val, keep))
    fifth = max(1, args.fits // 5)
    rows = {}
    for with_runner, name in ((False, "fit alone"), (True, "fit + InferenceRunner + Monitors")):
        t = times[with_runner]
        first, last = _phase(t[:fifth]), _phase(t[-fifth:])
        rows[name] = {"first_fastest": first["fastest"], "first_median": first["median"],
                      "last_fastest": last["fastest"], "last_median": last["median"],
                      "growth": last["median"] / first["median"]}
    if args.json:
        print(json.dumps({"bench": "fit_start", "fits": args.fits, "rows": rows}))
        return
    print(f"start of a fit (call to first batch), {args.fits} fits of each kind in one process; seconds")
    print(f"{'':34} {'first 1/5 fastest/median':>26} {'last 1/5 fastest/median':>26} {'growth':>7}")
    for name, r in rows.items():
        print(f"{name:34} {r['first_fastest']:12.3f} / {r['first_median']:<11.3f} "
              f"{r['last_fastest']:12.3f} / {r['last_median']:<11.3f} {r['growth']:7.2f}")


if __name__ == "__main__":
    main()
