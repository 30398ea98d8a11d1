"""The runner tests' classifier and data: a small dense classifier on 8
features and random labels, a validation set of a prime size."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf


N_VAL = 101  # prime: no batch size divides it


def random_data(n, seed, classes=6, dim=8):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype("float32"), rng.integers(0, classes, size=n).astype("int32")


def dense_classifier(classes=6, dropout=0.0, lr=1e-2, seed=0, hidden=16, optimizer=None, **compile_kwargs):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8,)), keras.layers.Dense(hidden, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(classes))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_kwargs)
    return model


@pytest.fixture(scope="module")
def data():
    return random_data(256, 0), random_data(N_VAL, 1)


def batched(x, y, batch):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
