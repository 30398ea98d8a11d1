"""On Keras's JAX backend, what needs TensorFlow says so at construction,
naming the feature, the backend in use and what to use instead."""

from __future__ import annotations

import pytest
from conftest import run_python

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

CODE = r"""
import os, tempfile
import keras, numpy as np
from infer_callbacks import TrainConfig, PredictConfig, ModelExporter, SidecarEvaluator, ScalarStats

assert keras.backend.backend() == "jax"
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
cases = {
    "TrainConfig": lambda: TrainConfig(model=model, data=[(np.zeros((2, 3)), np.zeros(2))]),
    "PredictConfig": lambda: PredictConfig(model=model),
    "SidecarEvaluator": lambda: SidecarEvaluator(model, [(np.zeros((2, 3), "float32"),)], ScalarStats("loss"),
                                                 checkpoint_dir=tempfile.mkdtemp(), checkpoint_format="tensorflow"),
}
for name, make in cases.items():
    try:
        make()
    except RuntimeError as e:
        text = str(e)
        assert "KERAS_BACKEND='jax'" in text and "TensorFlow backend" in text, (name, text)
        print("REFUSED", name)
    else:
        raise AssertionError(f"{name} was accepted on JAX")
"""


def test_tensorflow_only_features_refuse_jax_at_construction():
    out = run_python(CODE, env={"KERAS_BACKEND": "jax"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("TrainConfig", "PredictConfig", "SidecarEvaluator"):  # the savers write Keras files on JAX
        assert f"REFUSED {name}" in out.stdout
