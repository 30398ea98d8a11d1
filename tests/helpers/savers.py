"""The savers tests' model and checkpoint listing: a softmax regression on
the digits (helpers/trainer.py) and the checkpoints of a directory by stem."""

from __future__ import annotations

import os
import re

import keras

from helpers.trainer import train_ds
from infer_callbacks import ModelSaver


STEPS = 13  # train_ds(): 400 examples in batches of 32
CHECKPOINT_FILE = re.compile(r"\.(index|data-\d+-of-\d+|weights\.h5)$")


def stems(directory, start=""):
    """The checkpoints in ``directory`` whose names start with ``start``, by
    stem (``min-score-2``), whichever the format (TensorFlow's
    ``.index``/``.data-*`` files, or one Keras ``.weights.h5`` file)."""
    return sorted({CHECKPOINT_FILE.sub("", n) for n in os.listdir(directory) if n.startswith(start) and CHECKPOINT_FILE.search(n)})


def model(seed=0):
    """A compiled Keras softmax regression on train_ds()'s digits."""
    keras.utils.set_random_seed(seed)
    net = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    net.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net


def fit(callbacks, epochs, net=None, initial_epoch=0):
    net = model() if net is None else net
    net.fit(train_ds(), epochs=epochs, initial_epoch=initial_epoch, verbose=0, callbacks=callbacks)
    return net


def resumable(directory_or_path):
    """A fresh model with the checkpoint restored (weights and optimizer),
    and the epochs done."""
    net = model(99)
    return net, ModelSaver.restore(net, directory_or_path)


class Scripted(keras.callbacks.Callback):
    """Puts a scripted `score` into each epoch's logs and records the weights."""

    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores.pop(0)
        self.weights[epoch + 1] = [w.copy() for w in self.model.get_weights()]
