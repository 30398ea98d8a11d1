"""Keras weights files (``.weights.h5``, and the weights of a ``.keras``
archive) as ``session_init``: the same numbers as the trained model, and a
shape mismatch named by its Keras path."""

from __future__ import annotations

import numpy as np
import pytest

from infer_callbacks import OfflinePredictor, PredictConfig
from infer_callbacks.predict.predictor import CheckpointMismatchError
from conftest import make_keras, trained_keras  # noqa: F401

pytestmark = pytest.mark.tensorflow_only("Keras weights as PredictConfig's session_init: PredictConfig needs TensorFlow")


def test_keras_weights_file(rng, x, tmp_path):
    trained = trained_keras(rng)
    path = str(tmp_path / "model.weights.h5")
    trained.save_weights(path)
    (out,) = OfflinePredictor(PredictConfig(model=make_keras(), session_init=path))(x)
    np.testing.assert_allclose(out, trained(x).numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(CheckpointMismatchError, match=r"layers/dense/vars/0  model: shape=\(4, 5\).*checkpoint: shape=\(4, 6\)"):
        OfflinePredictor(PredictConfig(model=make_keras(hidden=5), session_init=path))
    archive = str(tmp_path / "model.keras")  # a whole-model file: its weights
    trained.save(archive)
    (out,) = OfflinePredictor(PredictConfig(model=make_keras(), session_init=archive))(x)
    np.testing.assert_allclose(out, trained(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.fixture
def x(rng):
    return rng.normal(size=(11, 4)).astype("float32")
