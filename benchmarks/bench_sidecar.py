"""Delay from a checkpoint being written to its row in the sidecar's
``stats.json``.

Training (this process) writes a checkpoint per epoch with ``ModelSaver``; a
sidecar (``python -m infer_callbacks.sidecar``, another process) evaluates
each one. After each save, training waits until the checkpoint's row is in
``stats.json`` (so no backlog builds up) and records the delay: from the
moment ``ModelSaver`` returned (the checkpoint is listed in the state file)
to the moment the row could be read; then it waits a random fraction of the
poll interval, so that checkpoints arrive at random phases of the sidecar's
polling. The first checkpoint also pays for the sidecar's start-up (import,
tracing) and is reported apart. Expected: about half a poll interval plus
one validation pass and the writes.

    python benchmarks/bench_sidecar.py [--epochs 8] [--poll 0.1 1.0] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
from infer_callbacks import ClassificationError, InferenceRunner, ModelSaver, ScalarStats  # noqa: E402
from infer_callbacks.checkpoints import any_format as ckpt  # noqa: E402

_rng = np.random.default_rng(0)
X_TRAIN, Y_TRAIN = _rng.normal(size=(512, 32)).astype("float32"), _rng.integers(0, 10, 512)
X_VAL, Y_VAL = _rng.normal(size=(2048, 32)).astype("float32"), _rng.integers(0, 10, 2048)


def build_model() -> keras.Model:
    """The model, for both processes (named on the sidecar's command line)."""
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    return model


def val_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((X_VAL, Y_VAL)).batch(256)


def _rows(path: str) -> set[int]:
    try:
        with open(path) as f:
            return {row["epoch_num"] for row in json.load(f)}
    except (FileNotFoundError, json.JSONDecodeError):
        return set()


class _Delay(keras.callbacks.Callback):
    """After ModelSaver's save: wait for the row, record the delay."""

    def __init__(self, stats_path: str, proc: subprocess.Popen, deadline_s: float, poll: float):
        super().__init__()
        self.stats_path, self.proc, self.deadline_s, self.poll = stats_path, proc, deadline_s, poll
        self.rng = random.Random(0)
        self.delays: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        written = time.perf_counter()
        deadline = written + self.deadline_s
        while epoch + 1 not in _rows(self.stats_path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sidecar exited (status {self.proc.returncode})")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no row for epoch {epoch + 1} within {self.deadline_s} s")
            time.sleep(0.002)  # the measurement's own resolution
        self.delays.append(time.perf_counter() - written)
        # The next checkpoint comes at a random phase of the sidecar's poll
        # (otherwise training, waiting in lockstep, would always save just
        # after a look and measure a whole interval).
        time.sleep(self.rng.uniform(0, self.poll))


def measure(poll: float, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ckdir, logdir = os.path.join(tmp, "ckpt"), os.path.join(tmp, "sidecar")
        os.makedirs(ckdir)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "infer_callbacks.sidecar", "--model", "bench_sidecar:build_model",
             "--input", "bench_sidecar:val_data", "--checkpoint-dir", ckdir, "--logdir", logdir,
             "--poll-seconds", str(poll), "--timeout", "300"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            delay = _Delay(os.path.join(logdir, "stats.json"), proc, deadline_s=300, poll=poll)
            model = build_model()
            model.fit(X_TRAIN, Y_TRAIN, batch_size=64, epochs=epochs, verbose=0,
                      callbacks=[ModelSaver(ckdir, max_to_keep=epochs), delay])
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"sidecar failed ({proc.returncode}):\n{err[-2000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    steady = delay.delays[1:]
    return {"poll_seconds": poll, "first_s": round(delay.delays[0], 3),
            "median_s": round(statistics.median(steady), 3),
            "min_s": round(min(steady), 3), "max_s": round(max(steady), 3), "checkpoints": len(steady)}


def baseline(repeats: int = 7) -> float:
    """The sidecar's own work per checkpoint, in this process: restore a
    checkpoint and run one validation pass (median, after one warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model()
        model.fit(X_TRAIN, Y_TRAIN, batch_size=64, epochs=1, verbose=0,
                  callbacks=[ModelSaver(tmp, max_to_keep=1)])
        prefix = ckpt.list_checkpoints(tmp)[-1].path
        evaluated = build_model()
        runner = InferenceRunner(val_data(), [ScalarStats("loss"), ClassificationError()], verbose=False)
        runner.set_model(evaluated)
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            ckpt.restore(evaluated, prefix)
            runner.trigger(epoch_num=1, global_step=1)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="checkpoints per measurement")
    parser.add_argument("--poll", type=float, nargs="+", default=[0.1, 1.0],
                        help="sidecar poll intervals to measure (default 0.1 1.0; 1.0 is the default)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 checkpoints at one poll interval (0.1 s), one baseline pass")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.poll = 2, [0.1]
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2. Received: --epochs {args.epochs}")
    work = baseline(repeats=1 if args.quick else 7)
    results = [measure(poll, args.epochs) for poll in args.poll]
    if args.json:
        print(json.dumps({"benchmark": "sidecar_delay", "validation_samples": len(X_VAL),
                          "restore_and_validate_s": round(work, 3), "results": results}))
        return
    print(f"checkpoint written -> row in stats.json ({len(X_VAL)} validation samples, "
          f"{args.epochs} checkpoints; 'first' includes the sidecar's start-up: import, tracing)")
    print(f"{'poll (s)':>9} {'first (s)':>10} {'median (s)':>11} {'min (s)':>8} {'max (s)':>8}")
    for r in results:
        print(f"{r['poll_seconds']:>9g} {r['first_s']:>10.3f} {r['median_s']:>11.3f} "
              f"{r['min_s']:>8.3f} {r['max_s']:>8.3f}")
    print(f"baseline, in one process: restore + one validation pass = {work:.3f} s "
          "(the rest of the delay is polling, the process boundary and the writes)")


if __name__ == "__main__":
    main()
