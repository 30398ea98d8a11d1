"""The trainer host's tests' data and models, shared with the checkpoints
and towers tests: the digits, ``Linear`` (softmax regression the tensorpack
way), numpy SGD as the reference, ``Recorder`` (the callback hooks seen)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from infer_callbacks import ModelDesc, get_current_tower_context


LR = 0.5


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16).astype(np.float32), d.target.astype(np.int32)


X, Y = digits()
XT, YT, XV, YV = X[:400], Y[:400], X[1500:], Y[1500:]  # 400 = 12 x 32 + 16; 297 = 5 x 50 + 47
W0 = (np.random.default_rng(0).normal(size=(64, 10)) * 0.05).astype(np.float32)


class Linear(ModelDesc):
    """Softmax regression, the tensorpack way (the issue's snippet)."""

    def __init__(self):
        self.net = keras.layers.Dense(10, kernel_initializer=keras.initializers.Constant(W0))
        self.modes = []

    def inputs(self):
        return [tf.TensorSpec((None, 64), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        training = get_current_tower_context().is_training
        self.modes.append(training)
        logits = self.net(x, training=training)
        tf.identity(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32), name="wrong-top1")
        tf.identity(logits, name="logits")
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")

    def optimizer(self):
        return keras.optimizers.SGD(LR)


def ce_and_logits(w, b, x, y):
    logits = x.astype(np.float64) @ w + b
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y], logits


def numpy_sgd(batches, epochs, w=W0, b=np.zeros(10)):
    """Plain SGD on mean cross-entropy; returns weights and per-epoch mean loss
    (weighted by batch size, measured before each step, as Keras reports)."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    losses = []
    for _ in range(epochs):
        total = count = 0.0
        for xb, yb in batches:
            ce, logits = ce_and_logits(w, b, xb, yb)
            total, count = total + ce.sum(), count + len(yb)
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            w, b = w - LR * xb.T @ p / len(yb), b - LR * p.mean(0)
        losses.append(total / count)
    return w, b, losses


def batches_of(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def train_ds(batch=32):
    return tf.data.Dataset.from_tensor_slices((XT, YT)).batch(batch)


def val_ds():
    return tf.data.Dataset.from_tensor_slices((XV, YV)).batch(50)


class Recorder(keras.callbacks.Callback):
    """Records every hook with its index and its logs' keys."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def _rec(self, name, index=None, logs=None):
        self.calls.append((name, index, tuple(sorted(logs or {}))))

    def on_train_begin(self, logs=None):
        self._rec("train_begin", None, logs)

    def on_train_end(self, logs=None):
        self._rec("train_end", None, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._rec("epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._rec("epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._rec("batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._rec("batch_end", batch, logs)


def keras_model():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model
