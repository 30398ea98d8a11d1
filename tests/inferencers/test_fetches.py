"""The names an inferencer fetches (inferencers/fetches.py): what a built-in
takes in ``__init__`` and what ``_get_fetches()`` may return, with errors that
name the bad value."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import infer_callbacks.inferencers.fetches as fetches_module
from infer_callbacks.inferencers.fetches import check_fetches, looks_like_tensor, tensor_names


def test_tensor_names_takes_one_name_or_a_list():
    assert tensor_names("loss", "names") == ["loss"]
    assert tensor_names(("a", "b"), "names") == ["a", "b"]
    for bad in ([], [""], ["a", 3]):
        with pytest.raises(ValueError, match=r"`names` must be a tensor name .* Received"):
            tensor_names(bad, "names")


@pytest.mark.parametrize("fetches, error, match", [
    ("loss", TypeError, "a list, even for one name"),
    ([], ValueError, "empty list"),
    (["loss", ""], TypeError, r"non-empty strings. It returned '' in \['loss', ''\]"),
    ([3], TypeError, "It returned 3"),
])
def test_check_fetches_names_the_bad_value(fetches, error, match):
    with pytest.raises(error, match=match):
        check_fetches(fetches, "Mine._get_fetches()")


def test_a_tensor_instead_of_a_name_says_to_return_names():
    import tensorflow as tf

    tensor = tf.constant([1.0])
    assert looks_like_tensor(tensor) and not looks_like_tensor("x") and not looks_like_tensor(np.ones(2))
    with pytest.raises(TypeError, match="TF1 habit"):
        check_fetches([tensor], "Mine._get_fetches()")


def test_docstring_examples_run():
    assert doctest.testmod(fetches_module).failed == 0
