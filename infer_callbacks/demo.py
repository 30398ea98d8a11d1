"""``python -m infer_callbacks.demo``: the main job on a fresh machine, on
data that needs no download.

A small classifier on synthetic data (numpy, 3 classes) trains for a few
epochs with an :class:`~infer_callbacks.InferenceRunner` validating it at
each epoch end; :class:`~infer_callbacks.Monitors` print the table and write
``stats.json`` and TensorBoard files; an :class:`~infer_callbacks.Objective`
combines the loss and the error into one key that ``EarlyStopping`` (placed
before the runner) and a ``MinSaver`` keeping the 2 best checkpoints use.
It runs on the backend ``KERAS_BACKEND`` names (TensorFlow by default, or
JAX) in well under a minute on a CPU, and may be run again in the same
directory: the earlier run's files are kept beside the new ones.

Usage::

    python -m infer_callbacks.demo [--logdir ./infer_callbacks_demo] [--epochs 6]
    tensorboard --logdir ./infer_callbacks_demo
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

__all__ = ["main", "make_data"]

log = logging.getLogger("infer_callbacks.demo")


def make_data(n: int, seed: int):
    """``(x, y)``: 16 features, 3 classes decided by a noisy rule."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype("float32")
    score = x[:, :3].sum(axis=1) + 0.5 * rng.normal(size=n)
    y = (score > 0).astype("int32") + (x[:, 3] > 1).astype("int32")
    return x, y


def main(argv: Sequence[str] | None = None) -> int:
    """Train the demo model; returns the exit status (0)."""
    parser = argparse.ArgumentParser(prog="python -m infer_callbacks.demo", description=__doc__.split("\n\n")[1])
    parser.add_argument("--logdir", default="infer_callbacks_demo",
                        help="where stats.json, TensorBoard files and checkpoints go (default ./infer_callbacks_demo)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs to train (default 6)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer. Received: --epochs {args.epochs}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    from infer_callbacks import (ClassificationError, InferenceRunner, JSONWriter, MinSaver, Monitors, Objective,
                                 ScalarPrinter, ScalarStats, TFEventWriter)

    keras.utils.set_random_seed(0)
    x_train, y_train = make_data(4000, seed=1)
    x_val, y_val = make_data(1000, seed=2)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    saver = MinSaver("validation_objective", checkpoint_dir=os.path.join(args.logdir, "best"), keep_best=2)
    log.info("infer_callbacks demo: backend %s, writing to %s", keras.backend.backend(), args.logdir)
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0, callbacks=[
        keras.callbacks.EarlyStopping("validation_objective", mode="min", patience=3),
        saver,
        Objective("validation_objective", {"validation_loss": 1.0, "validation_error": 1.0}),
        InferenceRunner((x_val, y_val), [ScalarStats("loss"), ClassificationError()], batch_size=250),
        Monitors([ScalarPrinter(), JSONWriter(args.logdir), TFEventWriter(args.logdir)]),
    ])
    best = ", ".join(f"epoch {e['epoch']} ({e['value']:.4f})" for e in saver.kept)
    log.info("stats.json and TensorBoard files: %s (tensorboard --logdir %s)", args.logdir, args.logdir)
    log.info("the 2 best checkpoints by validation_objective: %s, in %s", best, saver.checkpoint_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
