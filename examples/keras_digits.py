"""A small convnet on scikit-learn's bundled digits (8x8 images, 10 classes;
no download), validated in-loop by an InferenceRunner, stopped early on the
validation error, with a table per epoch and a log directory.

    python examples/keras_digits.py [--epochs 15] [--logdir train_log/digits]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from infer_callbacks import (  # noqa: E402
    ClassificationError,
    InferenceRunner,
    JSONWriter,
    Monitors,
    ScalarPrinter,
    ScalarStats,
    TFEventWriter,
)


def load(seed: int = 0):
    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")  # (1797, 8, 8, 1)
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_val = 397  # a prime: the last validation batch is partial
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])


def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--logdir", default=os.path.join("train_log", "digits"))
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_val, y_val) = load()
    train_ds = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(2048, seed=0).batch(64)
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(50)

    model = build_model()
    history = model.fit(train_ds, epochs=args.epochs, verbose=0, callbacks=[
        InferenceRunner(val_ds, [ScalarStats("loss"), ClassificationError(),
                                 ClassificationError("wrong-top5", "validation_top5_error")]),
        keras.callbacks.EarlyStopping(monitor="validation_error", mode="min", patience=3,
                                      restore_best_weights=False),
        Monitors([ScalarPrinter(), JSONWriter(args.logdir), TFEventWriter(args.logdir)]),
    ])
    errors = history.history["validation_error"]
    print(f"\n{len(errors)} epochs; best validation error {min(errors):.4f} "
          f"(epoch {int(np.argmin(errors)) + 1}); stats in {os.path.join(args.logdir, 'stats.json')}")
    return history.history


if __name__ == "__main__":
    main()
