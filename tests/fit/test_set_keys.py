"""A named set's result keys (fit/set_keys.py), which runners write and
monitors read: the name goes after ``validation_`` or ``val_``, else in front,
and splitting a key gives back the set and the unnamed key."""

from __future__ import annotations

import doctest

import pytest

import infer_callbacks.fit.set_keys as set_keys_module
from infer_callbacks.fit.set_keys import set_key, split_set_key
from infer_callbacks.runner import sets


@pytest.mark.parametrize("key", ["validation_loss", "val_precision", "accuracy", "validation_"])
def test_split_undoes_set_key(key):
    named = set_key(key, "noisy")
    assert split_set_key(named, ["clean", "noisy"]) == (key, "noisy")
    assert set_key(key, None) == key


def test_keys_of_no_set_do_not_split():
    assert split_set_key("validation_loss", ["clean"]) is None
    assert split_set_key("clean_", ["clean"]) is None


def test_the_runner_uses_the_same_functions():
    assert sets.set_key is set_key and sets.split_set_key is split_set_key


def test_docstring_examples_run():
    assert doctest.testmod(set_keys_module).failed == 0
