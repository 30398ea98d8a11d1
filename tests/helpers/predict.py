"""The predict tests' ``ModelDesc`` classifier (the tensorpack way: layers
in ``__init__``, names by ``tf.identity``) and its reference numbers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import get_current_tower_context
from infer_callbacks.towers.model_desc import ModelDesc


class Classifier(ModelDesc):
    """The tensorpack way: layers in __init__, names by tf.identity."""

    def __init__(self, hidden=6):
        self.net = keras.Sequential([keras.layers.Dense(hidden, activation="relu"),
                                     keras.layers.Dropout(0.5), keras.layers.Dense(3)])

    def inputs(self):
        return [tf.TensorSpec((None, 4), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        logits = self.net(x, training=get_current_tower_context().is_training)
        logits = tf.identity(logits, name="logits")
        tf.nn.softmax(logits, name="prob")
        pred = tf.argmax(logits, axis=1, output_type=tf.int32)
        tf.cast(tf.not_equal(pred, label), tf.float32, name="wrong")
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=logits)
        return tf.reduce_mean(loss, name="cost")

    def optimizer(self):
        return keras.optimizers.Adam(0.01)


def log_softmax(z):
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.fixture
def x(rng):
    return rng.normal(size=(11, 4)).astype("float32")
