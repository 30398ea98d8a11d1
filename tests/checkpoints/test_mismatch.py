"""CheckpointMismatchError: a checkpoint with missing, extra or mis-shaped
variables names every one of them (and ``ignore_mismatch=True`` restores what
matches), checked through ``PredictConfig`` / ``OfflinePredictor``."""

from __future__ import annotations

import numpy as np
import pytest

from infer_callbacks import OfflinePredictor, PredictConfig
from infer_callbacks.checkpoints import layout as checkpoint
from infer_callbacks.predict.predictor import CheckpointMismatchError
from conftest import make_keras, trained_keras  # noqa: F401

pytestmark = pytest.mark.tensorflow_only("checked through PredictConfig / OfflinePredictor, which need TensorFlow")


def test_shape_mismatch_is_an_error_naming_the_variable(keras_ckpt):
    _, directory, latest = keras_ckpt
    with pytest.raises(CheckpointMismatchError, match=r"(?s)2 of 4 variables match.*shape/dtype mismatches.*"
                       r"model/2-kernel \(.*\)  model: shape=\(6, 4\) float32, checkpoint: shape=\(6, 3\)"
                       r".*ignore_mismatch=True") as info:
        OfflinePredictor(PredictConfig(model=make_keras(classes=4), session_init=directory))
    assert latest in str(info.value)
    assert info.value.mismatched == ["model/2-kernel", "model/3-bias"]
    assert not info.value.missing and not info.value.extra  # optimizer state is not "extra"


def test_ignore_mismatch_warns_and_restores_what_matches(keras_ckpt, x):
    trained, directory, _ = keras_ckpt
    model = make_keras(classes=4)
    with pytest.warns(UserWarning, match=r"2 of 4 variables match(?s:.*)model/3-bias"):
        OfflinePredictor(PredictConfig(model=model, session_init=directory, ignore_mismatch=True))
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), trained.layers[0].kernel.numpy())


def test_missing_and_extra_variables(rng, tmp_path):
    deep_path = checkpoint.save(trained_keras(rng, extra_layer=True), tmp_path / "deep")
    shallow_path = checkpoint.save(trained_keras(rng), tmp_path / "shallow")
    # A model deeper than its checkpoint: variables missing from the checkpoint.
    with pytest.raises(CheckpointMismatchError, match=r"(?s)2 variables missing from the checkpoint:"
                       r".*model/4-kernel") as info:
        OfflinePredictor(PredictConfig(model=make_keras(extra_layer=True), session_init=shallow_path))
    assert info.value.missing == ["model/4-kernel", "model/5-bias"]
    assert info.value.mismatched == ["model/2-kernel", "model/3-bias"]  # (6, 6) faces (6, 3)
    # A checkpoint deeper than the model: extra checkpoint entries.
    with pytest.raises(CheckpointMismatchError, match=r"(?s)2 extra checkpoint entries:"
                       r".*model/5-bias  shape=\(3,\)") as info:
        OfflinePredictor(PredictConfig(model=make_keras(), session_init=deep_path))
    assert info.value.extra == ["model/4-kernel", "model/5-bias"] and not info.value.missing


@pytest.fixture
def x(rng):
    return rng.normal(size=(11, 4)).astype("float32")
