"""The small Keras models many tests train: a linear classifier of 4
features, compiled with Keras's sparse cross-entropy on logits (the loss the
default tower reports as ``loss``), and its random data."""

from __future__ import annotations

import keras
import numpy as np


def classifier(classes: int = 3, *, seed: int | None = 0, optimizer="sgd", loss=None,
               hidden: int | None = None, activation: str | None = None, **compile_kwargs) -> keras.Model:
    """``Input((4,)) [-> Dense(hidden, relu)] -> Dense(classes, activation)``,
    compiled with ``loss`` (default: sparse cross-entropy on logits).

    Args:
        classes: the output units.
        seed: Keras's random seed set before the weights are made (``None``:
            not set).
        optimizer: as ``model.compile`` takes it.
        loss: as ``model.compile`` takes it; default
            ``SparseCategoricalCrossentropy(from_logits=True)``.
        hidden: units of a ReLU layer before the output, if any.
        activation: the output layer's activation.
        **compile_kwargs: more ``model.compile`` arguments (``metrics``,
            ``steps_per_execution``, ...).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = [keras.Input((4,))]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    layers.append(keras.layers.Dense(classes, activation=activation))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer,
                  loss=loss if loss is not None else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  **compile_kwargs)
    return model


def classes_data(n: int, seed: int = 0, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random examples of 4 float32 features and int32 labels in ``[0, classes)``."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, classes, size=n).astype("int32")
