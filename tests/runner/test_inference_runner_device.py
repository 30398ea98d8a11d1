"""InferenceRunner(device=...): a GPU script on a machine without that GPU
(TensorFlow's soft placement for GPU ids; explicit strings stay errors)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import DataParallelInferenceRunner, InferenceRunner, ScalarStats


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, size=n).astype("int32")


def test_a_missing_gpu_id_warns_once_and_validates_on_the_default_placement():
    gpus = len(tf.config.list_logical_devices("GPU"))  # the tests hide GPUs: normally 0
    val = tf.data.Dataset.from_tensor_slices(_data(20, 1)).batch(8)
    with pytest.warns(RuntimeWarning, match=rf"device={gpus} asks for GPU '/gpu:{gpus}'") as record:
        runner = InferenceRunner(val, ScalarStats("loss"), device=gpus)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert runner.device is None
    model = classifier()
    history = model.fit(*_data(16, 0), batch_size=4, epochs=1, verbose=0, callbacks=[runner])
    assert history.history["validation_loss"][-1] == pytest.approx(model.evaluate(val, verbose=0), rel=1e-5)


def test_a_missing_device_string_is_an_error_naming_the_available_devices():
    val = tf.data.Dataset.from_tensor_slices(_data(20, 1)).batch(8)
    with pytest.raises(ValueError, match=r"'/gpu:9' does not exist on this machine\. Available devices: "
                                         r"\[.*CPU:0"):
        InferenceRunner(val, ScalarStats("loss"), device="/gpu:9")


def test_data_parallel_on_missing_gpus_names_the_devices_and_the_cpu():
    val = tf.data.Dataset.from_tensor_slices(_data(20, 1)).batch(8)
    gpus = len(tf.config.list_logical_devices("GPU")) + 1
    with pytest.raises(ValueError, match=r"Available devices: \[.*CPU:0"):
        DataParallelInferenceRunner(val, ScalarStats("loss"), gpus=gpus)
