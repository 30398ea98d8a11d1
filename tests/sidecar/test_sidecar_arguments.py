"""sidecar/arguments.py: SidecarEvaluator's argument checks."""

from __future__ import annotations

import keras
import pytest

from infer_callbacks import JSONWriter, Monitors, ScalarPrinter
from infer_callbacks.sidecar.arguments import check_model, check_monitors, positive


def test_positive():
    assert positive("n", 3, integer=True, optional=False) == 3
    assert positive("t", 0.5, integer=False, optional=True) == 0.5
    assert positive("t", None, integer=False, optional=True) is None
    for value in (0, -1, True, 1.5, None):
        with pytest.raises(ValueError, match=rf"n={value!r}"):
            positive("n", value, integer=True, optional=False)


def test_check_model_builds_from_a_function_and_refuses_the_unbuilt():
    built = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert check_model(built) is built and check_model(lambda: built) is built
    with pytest.raises(TypeError, match="model=42"):
        check_model(42)
    with pytest.raises(ValueError, match="must be built"):
        check_model(keras.Sequential([keras.layers.Dense(1)]))


def test_check_monitors_defaults_and_wrapping(tmp_path):
    assert [type(w) for w in check_monitors(None, None).writers] == [ScalarPrinter]
    names = [type(w).__name__ for w in check_monitors(None, str(tmp_path)).writers]
    assert names == ["ScalarPrinter", "JSONWriter", "TFEventWriter"]
    given = Monitors([ScalarPrinter()])
    assert check_monitors(given, None) is given
    assert isinstance(check_monitors([JSONWriter(tmp_path)], None), Monitors)
    with pytest.raises(TypeError, match="list of writers"):
        check_monitors(["not a writer"], None)
