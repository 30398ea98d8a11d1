"""What an inferencer reports becomes ``{str: float}`` (inferencers/results.py):
numbers kept, arrays one key per element, the rest dropped, each with a
warning; never an exception over a value."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import infer_callbacks.inferencers.results as results_module
from infer_callbacks.inferencers.base import element_keys as from_base
from infer_callbacks.inferencers.results import element_keys, scalar_results


def test_numbers_arrays_and_the_rest():
    with pytest.warns(UserWarning) as caught:
        got = scalar_results({"a": np.float32(0.5), "b": True, "c": 2 ** 70, 3: 1,
                              "m": np.arange(4).reshape(2, 2), "s": "text", "o": object()}, "Inf()")
    assert got == {"a": 0.5, "b": 1.0, "c": float(2 ** 70), "3": 1.0,
                   "m_0_0": 0.0, "m_0_1": 1.0, "m_1_0": 2.0, "m_1_1": 3.0}
    messages = " ".join(str(w.message) for w in caught)
    assert "non-string key 3" in messages and "'m'] has shape (2, 2)" in messages
    assert "'s'] is not a number" in messages and "'o'] is not a number" in messages


def test_none_is_no_results_and_a_non_dict_warns():
    assert scalar_results(None, "Inf()") == {}
    with pytest.warns(UserWarning, match=r"Inf\(\)._after_inference\(\) returned list"):
        assert scalar_results([1.0], "Inf()._after_inference()") == {}


def test_element_keys_are_importable_from_base_too():
    assert from_base is element_keys
    assert element_keys("cm", (1, 2)) == ["cm_0_0", "cm_0_1"]


def test_docstring_examples_run():
    assert doctest.testmod(results_module).failed == 0
