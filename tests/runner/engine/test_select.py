"""engine/select.py: the engine of the Keras backend in use, one instance
per backend; a backend without an engine is refused by name."""

from __future__ import annotations

import keras
import pytest

from infer_callbacks.runner.engine.base import Engine
from infer_callbacks.runner.engine.select import ENGINES, current_engine


def test_the_backends_engine_once():
    engine = current_engine()
    assert isinstance(engine, Engine) and engine.name == keras.backend.backend()
    assert current_engine() is engine
    assert keras.backend.backend() in ENGINES


def test_a_backend_without_an_engine_is_named_with_the_valid_ones(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(RuntimeError, match=r"KERAS_BACKEND='numpy'.*\['jax', 'tensorflow', 'torch'\]"):
        current_engine()
