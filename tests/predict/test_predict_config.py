"""PredictConfig refuses a bad configuration when it is made, naming the
value and what would be valid."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from conftest import make_keras
from helpers.predict import Classifier
from infer_callbacks import PredictConfig

pytestmark = pytest.mark.tensorflow_only("PredictConfig, OfflinePredictor and export need TensorFlow")


def test_unknown_input_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown input name 'image'.*\['x', 'label'\]"):
        PredictConfig(model=Classifier(), input_names=["image"], output_names=["prob"])


def test_bad_config():
    with pytest.raises(ValueError, match="session_init='ckpt-1' needs `model=`"):
        PredictConfig(tower_func=lambda x: x, session_init="ckpt-1",
                      input_signature=[tf.TensorSpec((None, 2), tf.float32, "x")])
    with pytest.raises(ValueError, match="input_signature"):
        PredictConfig(tower_func=lambda x: x)
    with pytest.raises(ValueError, match="must be a list of named tf.TensorSpec"):
        PredictConfig(model=make_keras(), input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    with pytest.raises(TypeError, match="ModelDesc or a keras.Model"):
        PredictConfig(model="model.h5")
    assert not os.path.exists("ckpt-1.index")
