"""Shared helpers: atomic file replacement, named signatures, layer search,
what counts as a number, the global step."""

from __future__ import annotations

import doctest
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import infer_callbacks._util as util
from infer_callbacks._util import (as_scalar, atomic_write_bytes, atomic_write_json, check_named_specs,
                                   find_keras_layers, global_step, numeric_array)


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = str(tmp_path / "sub" / "stats.json")  # the directory is created
    atomic_write_json(path, [{"epoch_num": 1}])
    atomic_write_json(path, [{"epoch_num": 1}, {"epoch_num": 2}])
    assert json.load(open(path)) == [{"epoch_num": 1}, {"epoch_num": 2}]
    assert os.listdir(tmp_path / "sub") == ["stats.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "stats.json")
    atomic_write_json(path, [1])
    with pytest.raises(TypeError):
        atomic_write_json(path, [object()])  # not JSON-serializable
    assert json.load(open(path)) == [1]
    assert os.listdir(tmp_path) == ["stats.json"]


def test_permissions_follow_the_old_file_or_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = str(tmp_path / "m.bin")
        atomic_write_bytes(path, b"a")
        assert os.stat(path).st_mode & 0o777 == 0o640
        os.chmod(path, 0o604)
        atomic_write_bytes(path, b"b")
        assert os.stat(path).st_mode & 0o777 == 0o604
        assert open(path, "rb").read() == b"b"
    finally:
        os.umask(old)


def test_check_named_specs():
    x = tf.TensorSpec((None, 3), tf.float32, "x")
    assert check_named_specs(x, "inputs") == [x]
    with pytest.raises(ValueError, match="inputs has duplicate names: \\['x', 'x'\\]"):
        check_named_specs([x, x], "inputs")
    with pytest.raises(ValueError, match="inputs must be a list of named tf.TensorSpec"):
        check_named_specs([tf.TensorSpec((None,), tf.float32)], "inputs")
    with pytest.raises(TypeError, match="Received: 3"):
        check_named_specs(3, "inputs")


def test_find_keras_layers_in_order_once():
    a, b = keras.layers.Dense(2), keras.layers.Dense(3)
    found = find_keras_layers([a, {"b": b, "again": a}, (b, 7, "text")])
    assert found == [a, b]


@pytest.mark.parametrize("value, expected", [
    (1, 1.0), (np.float32(0.25), 0.25), (np.bool_(True), 1.0), (np.array([[2]])[0, 0], 2.0),
    (2 ** 70, float(2 ** 70)), (tf.constant(3.5), 3.5), (np.ones(2), None), ("1", None),
    (None, None), (1j, None), ([1, "a"], None),
])
def test_as_scalar_is_one_real_number(value, expected):
    assert as_scalar(value) == expected


def test_numeric_array_keeps_the_dtype():
    assert numeric_array(np.arange(3, dtype=np.int8)).dtype == np.int8
    assert numeric_array(tf.ones((2, 2))).shape == (2, 2)


def test_global_step_reads_the_optimizer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert global_step(model) == 0 and global_step(model, default=None) is None
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), batch_size=2, verbose=0)
    assert global_step(model) == 2 and global_step(object()) == 0


def test_docstring_examples_run():
    assert doctest.testmod(util).failed == 0
