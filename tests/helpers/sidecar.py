"""The sidecar tests' user functions (``build_model`` and ``val_data``, also
named on the command line as ``helpers.sidecar:build_model``), a training
run that writes checkpoints, and the references its evaluations must equal.
"""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from helpers.models import classifier
from infer_callbacks import ClassificationError, ModelSaver, ScalarStats
from infer_callbacks.sidecar.evaluator import SidecarEvaluator


ROOT = REPO
STEPS_PER_EPOCH = 3  # 48 training samples, batch 16
RNG = np.random.default_rng(7)
X_TRAIN = RNG.normal(size=(48, 4)).astype("float32")
Y_TRAIN = RNG.integers(0, 3, 48)
X_VAL = RNG.normal(size=(40, 4)).astype("float32")
Y_VAL = RNG.integers(0, 3, 40)


def build_model() -> keras.Model:
    return classifier(seed=None, hidden=8, activation="softmax", optimizer=keras.optimizers.SGD(0.5),
                      loss="sparse_categorical_crossentropy")


def val_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((X_VAL, Y_VAL)).batch(16)  # 16, 16, 8


class WeightsAtEpochEnd(keras.callbacks.Callback):
    """The weights at each epoch end (what the checkpoint of that epoch holds)."""

    def __init__(self, weights: dict):
        super().__init__()
        self.weights = weights

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


def train(ckdir, epochs: int, weights: dict, *, initial_epoch: int = 0, model=None,
          max_to_keep: int = 10, extra=()) -> keras.Model:
    if model is None:
        keras.utils.set_random_seed(1)
        model = build_model()
    model.fit(X_TRAIN, Y_TRAIN, batch_size=16, epochs=epochs, initial_epoch=initial_epoch,
              shuffle=False, verbose=0,
              callbacks=[ModelSaver(ckdir, max_to_keep=max_to_keep), WeightsAtEpochEnd(weights), *extra])
    return model


def reference(weights) -> dict:
    """numpy on the recorded weights (Dense-relu, Dense-softmax)."""
    w1, b1, w2, b2 = (np.asarray(w, "float64") for w in weights)
    logits = np.maximum(X_VAL @ w1 + b1, 0) @ w2 + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return {"validation_loss": float(np.mean(-np.log(probs[np.arange(len(Y_VAL)), Y_VAL]))),
            "validation_error": float(np.mean(np.argmax(probs, 1) != Y_VAL))}


def keras_reference(weights) -> float:
    """Keras's own evaluate on the recorded weights."""
    model = build_model()
    model.set_weights(weights)
    return model.evaluate(X_VAL, Y_VAL, batch_size=40, verbose=0)


def check_rows(rows, weights, epochs) -> None:
    assert [r["epoch_num"] for r in rows] == list(epochs)
    for r in rows:
        assert r["global_step"] == STEPS_PER_EPOCH * r["epoch_num"]
        expected = reference(weights[r["epoch_num"]])
        for key, value in expected.items():
            np.testing.assert_allclose(r[key], value, rtol=1e-5, atol=1e-7, err_msg=key)


def epochs_in(stats_path) -> list[int]:
    try:
        with open(stats_path) as f:
            return [row["epoch_num"] for row in json.load(f)]
    except FileNotFoundError:
        return []


def stats(logdir) -> list[dict]:
    with open(os.path.join(logdir, "stats.json")) as f:
        return json.load(f)


def evaluator(ckdir, logdir, **kwargs) -> SidecarEvaluator:
    kwargs.setdefault("poll_seconds", 0.05)
    return SidecarEvaluator(build_model(), val_data(), [ScalarStats("loss"), ClassificationError()],
                            ckdir, logdir=logdir, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs already written (and the 'finished' marker): copy it."""
    base = tmp_path_factory.mktemp("trained")
    weights: dict = {}
    train(base / "ckpt", 3, weights)
    return base / "ckpt", weights


@pytest.fixture
def ckdir(trained, tmp_path):
    src, _ = trained
    shutil.copytree(src, tmp_path / "ckpt")
    return tmp_path / "ckpt"
