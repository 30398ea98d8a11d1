"""The device strings and GPU ids every backend's engine reads
(``distribute/device_names.py``), before any backend says what exists."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from infer_callbacks.distribute import device_names
from infer_callbacks.distribute.device_names import is_gpu_id, parse_device


@pytest.mark.parametrize("given,expected", [
    ("/cpu:0", ("cpu", 0)), ("CPU:0", ("cpu", 0)), ("/device:GPU:1", ("gpu", 1)), ("gpu:3", ("gpu", 3)),
    ("/job:worker/replica:0/task:1/device:GPU:2", ("gpu", 2)), (" /gpu:0 ", ("gpu", 0)),
    (1, ("gpu", 1)), (np.int64(2), ("gpu", 2)),
])
def test_kind_and_index(given, expected):
    assert parse_device(given) == expected


def test_bad_devices_name_the_value():
    with pytest.raises(ValueError, match="must be >= 0. Received: device=-1"):
        parse_device(-1)
    for bad in ("gpu", "/gpu:x", True, 1.0, None):
        with pytest.raises(TypeError, match=f"Received: {bad!r}"):
            parse_device(bad)
    assert not is_gpu_id(True) and not is_gpu_id(np.bool_(True)) and is_gpu_id(np.int32(0))


def test_docstring_example_runs():
    assert doctest.testmod(device_names).failed == 0
