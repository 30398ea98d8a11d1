"""devices: device strings, GPU ids, strategies and chief/worker facts.

Device lists other than this machine's are given by replacing TensorFlow's
list of logical devices (no device is used here); real multi-device runs are
in test_data_parallel.py (a subprocess with logical CPU devices)."""

from __future__ import annotations

import json

import keras
import pytest
import tensorflow as tf

from infer_callbacks.distribute import devices

pytestmark = pytest.mark.tensorflow_only("tf.distribute")

CPUS_AND_GPUS = ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2", "/device:GPU:0", "/device:GPU:1"]


@pytest.fixture
def machine(monkeypatch):
    """Pretend this process has 3 CPU and 2 GPU logical devices."""
    def fake(device_type=None):
        out = [tf.config.LogicalDevice(name, name.split(":")[-2]) for name in CPUS_AND_GPUS]
        return [d for d in out if device_type is None or d.device_type == device_type]
    monkeypatch.setattr(tf.config, "list_logical_devices", fake)


@pytest.mark.parametrize("given, expected", [
    ("/cpu:1", "/device:CPU:1"), ("CPU:2", "/device:CPU:2"), ("/device:GPU:1", "/device:GPU:1"),
    ("gpu:0", "/device:GPU:0"), (1, "/device:GPU:1"), ("/cpu", "/device:CPU:0"),
])
def test_canonical_device(machine, given, expected):
    assert devices.canonical_device(given) == expected


@pytest.mark.parametrize("given, error, match", [
    ("/gpu:7", ValueError, r"'/gpu:7' does not exist on this machine\. Available devices: \[.*GPU:1'\]"),
    (5, ValueError, r"'/gpu:5' does not exist"),
    (-1, ValueError, r"GPU id must be >= 0\. Received: device=-1"),
    ("nonsense", ValueError, "'nonsense' does not exist"),
    (1.0, TypeError, "Received: 1.0"),
])
def test_canonical_device_errors(machine, given, error, match):
    with pytest.raises(error, match=match):
        devices.canonical_device(given)


@pytest.mark.parametrize("gpus, expected", [
    (2, ["/device:GPU:0", "/device:GPU:1"]),
    ([1, 0], ["/device:GPU:1", "/device:GPU:0"]),  # in the given order
    (["/cpu:0", "CPU:1", "/device:CPU:2"], ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2"]),
    ("/cpu:1", ["/device:CPU:1"]),
])
def test_gpu_devices(machine, gpus, expected):
    assert devices.gpu_devices(gpus) == expected


@pytest.mark.parametrize("gpus, error, match", [
    (3, ValueError, r"first 3 GPUs, but this machine has 2\. Available devices: \[.*CPU:0"),
    (0, ValueError, r"at least 1\. Received: gpus=0"),
    ([], ValueError, "empty list"),
    ([0, 4], ValueError, r"do not exist on this machine: \[4\]"),
    (["/cpu:0", "/cpu:9"], ValueError, r"do not exist on this machine: \['/cpu:9'\]"),
    (["/cpu:0", "CPU:0"], ValueError, "lists a device twice"),
    (True, TypeError, "gpus=True"),
    (1.5, TypeError, "gpus=1.5"),
    (None, TypeError, "gpus=None"),
    ([0.5], TypeError, r"Received 0\.5"),
    ([-1], TypeError, r"Received -1"),
])
def test_gpu_devices_errors_name_the_value_and_the_available_devices(machine, gpus, error, match):
    with pytest.raises(error, match=match):
        devices.gpu_devices(gpus)


def test_soft_device_falls_back_for_a_missing_gpu_id(machine):
    assert devices.soft_device(None) is None
    assert devices.soft_device(1) == "/device:GPU:1"
    assert devices.soft_device("/cpu:2") == "/device:CPU:2"
    with pytest.warns(RuntimeWarning, match=r"device=5 asks for GPU '/gpu:5'.*available devices: "
                      r"\[.*GPU:1'\]\); running on TensorFlow's default placement"):
        assert devices.soft_device(5) is None


@pytest.mark.parametrize("given, error, match", [
    ("/gpu:7", ValueError, r"'/gpu:7' does not exist on this machine\. Available devices: \[.*GPU:1'\]"),
    (-1, ValueError, r"GPU id must be >= 0\. Received: device=-1"),
])
def test_soft_device_keeps_explicit_strings_errors(machine, given, error, match):
    with pytest.raises(error, match=match):
        devices.soft_device(given)


def test_gpus_on_a_machine_without_gpus_suggests_the_cpu(monkeypatch):
    cpus = [tf.config.LogicalDevice("/device:CPU:0", "CPU")]
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda device_type=None: [d for d in cpus if device_type in (None, "CPU")])
    with pytest.raises(ValueError, match=r"gpus=2` asks for the first 2 GPUs, but this machine has 0\. "
                                         r"Available devices: \['/device:CPU:0'\]\. Without a GPU, "
                                         r"pass gpus=\['/cpu:0'\]"):
        devices.gpu_devices(2)


def test_this_machine_has_its_cpu():
    assert "/device:CPU:0" in devices.available_devices()


def test_strategies():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert devices.model_strategy(model) is None
    assert devices.model_strategy(None) is None
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    with one.scope():
        inside = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert devices.model_strategy(inside) is one
    assert devices.worker_count(None) == 1 and devices.worker_count(one) == 1
    assert not devices.spans_workers(one)


@pytest.mark.parametrize("tf_config, chief", [
    (None, True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"worker": ["a:1"], "evaluator": ["c:1"]}, "task": {"type": "evaluator", "index": 0}}, False),
])
def test_is_chief_from_tf_config(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config if isinstance(tf_config, str) else json.dumps(tf_config))
    assert devices.is_chief() is chief
