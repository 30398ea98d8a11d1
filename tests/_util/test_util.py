"""Shared helpers: atomic file replacement, named signatures, layer search."""

from __future__ import annotations

import json
import os

import keras
import pytest
import tensorflow as tf

from infer_callbacks._util import atomic_write_bytes, atomic_write_json, check_named_specs, find_keras_layers


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
