"""get_predictor(..., device=): tensorpack's int GPU id (soft placement when
the machine lacks it, -1 for the CPU) or a device string; the function is
traced and run on that device and predicts what the model does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from infer_callbacks.predict.predictor import get_predictor

from conftest import trained_keras  # noqa: F401

pytestmark = pytest.mark.tensorflow_only("PredictConfig, OfflinePredictor and export need TensorFlow")


def placed(predictor) -> set[str]:
    """The devices of the traced function's computing ops (``''``: TensorFlow's
    placement); reads of variables stay with the variables."""
    return {op.device for op in predictor.concrete_function.graph.get_operations()
            if op.type in ("MatMul", "BiasAdd", "Relu")}


@pytest.fixture
def model_and_x(rng):
    return trained_keras(rng), rng.normal(size=(7, 4)).astype("float32")


@pytest.mark.parametrize("device", ["/cpu:0", "CPU:0", -1])
def test_an_existing_device_places_every_op_there(model_and_x, device):
    model, x = model_and_x
    predictor = get_predictor(model, device=device)
    assert predictor.device.endswith("device:CPU:0")
    assert placed(predictor) == {predictor.device}
    (out,) = predictor(x)
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_a_missing_gpu_id_falls_back_with_one_warning(model_and_x):
    model, x = model_and_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = get_predictor(model, ["input"], ["output"], device=3)
        (out,) = predictor(x)
    assert len(caught) == 1 and "device=3" in str(caught[0].message)  # once, naming it
    assert predictor.device is None and placed(predictor) == {""}
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_bad_devices_name_the_value(model_and_x):
    model, _ = model_and_x
    with pytest.raises(ValueError, match=r"'/gpu:3'.*Available devices"):
        get_predictor(model, device="/gpu:3")  # an explicit string must exist
    with pytest.raises(ValueError, match="device=-2"):
        get_predictor(model, device=-2)
    with pytest.raises(TypeError, match="device=1.5"):
        get_predictor(model, device=1.5)
