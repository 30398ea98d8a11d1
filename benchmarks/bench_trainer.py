"""Step time of the tensorpack-style trainer loop against Keras ``fit`` on the
same model and data (digits-sized convnet, CPU).

Each block trains ``--epochs`` epochs with ``fit`` and with ``SimpleTrainer``
(a compiled Keras model, and the equivalent ``ModelDesc``); blocks alternate
``--rounds`` times. Every epoch is timed from ``on_epoch_begin`` to
``on_epoch_end`` (the training steps, not the set-up around them), the first
epoch of each block (tracing) is left out; reported: the median epoch time of
each trainer divided by ``fit``'s.

    python benchmarks/bench_trainer.py [--rounds 5] [--json] [--quick]
"""

from __future__ import annotations

import argparse
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
from infer_callbacks import ModelDesc, SimpleTrainer, TrainConfig, launch_train_with_config  # noqa: E402


def _net():
    return keras.Sequential([
        keras.layers.Reshape((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)])


class Desc(ModelDesc):
    def __init__(self):
        self.net = _net()

    def inputs(self):
        return [tf.TensorSpec((None, 64), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        logits = self.net(x)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits))

    def optimizer(self):
        return keras.optimizers.SGD(0.05)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per block")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round of 1 timed epoch, 5 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.steps = 1, 1, 5
    rng = np.random.default_rng(0)
    x = rng.random((64 * args.steps, 64), dtype=np.float32)
    y = rng.integers(0, 10, size=len(x)).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).cache()

    def keras_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), *_net().layers])
        model.compile(optimizer=keras.optimizers.SGD(0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    fit_model, host_model, desc = keras_model(), keras_model(), Desc()
    keras_trainer, desc_trainer = SimpleTrainer(), SimpleTrainer()

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    epochs = args.epochs + 1
    times = {"fit": [], "keras_model": [], "model_desc": []}
    for _ in range(args.rounds):
        fit_model.fit(data, epochs=epochs, verbose=0, callbacks=[timer])
        times["fit"] += timer.seconds[1:]
        launch_train_with_config(TrainConfig(model=host_model, data=data, max_epoch=epochs, verbose=0,
                                             callbacks=[timer]), keras_trainer)
        times["keras_model"] += timer.seconds[1:]
        launch_train_with_config(TrainConfig(model=desc, data=data, max_epoch=epochs, verbose=0,
                                             callbacks=[timer]), desc_trainer)
        times["model_desc"] += timer.seconds[1:]
    fit_s = statistics.median(times["fit"])
    ratios = {k: [t / fit_s for t in times[k]] for k in ("keras_model", "model_desc")}
    result = {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in ratios.items()}
    result["fit_epoch_s"] = fit_s
    result["steps"] = args.steps
    if args.json:
        print(json.dumps(result))
    else:
        for k in ("keras_model", "model_desc"):
            r = result[k]
            print(f"SimpleTrainer ÷ fit, {k}: median {r['median']:.2f} (epochs {r['min']:.2f}–{r['max']:.2f}), "
                  f"{args.steps} steps of 64")
    return result


if __name__ == "__main__":
    main()
