"""runner/arguments.py: InferenceRunner's argument checks and its sets, each
error naming the argument and the value."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from infer_callbacks import ScalarStats
from infer_callbacks.runner.arguments import check_options, make_sets
from infer_callbacks.runner.engine.select import current_engine

BATCHES = [(np.zeros((2, 3), "float32"), np.zeros(2, "int32"))]
OK = dict(tower_func=None, steps_per_execution=None, on_nonfinite="warn", tower_name=None, keras_names=False)


@pytest.mark.parametrize("bad, error, match", [
    (dict(steps_per_execution=0), ValueError, "steps_per_execution=0"),
    (dict(steps_per_execution=True), ValueError, "steps_per_execution=True"),
    (dict(tower_func="f"), TypeError, "`tower_func` must be callable"),
    (dict(on_nonfinite="ignore"), ValueError, "on_nonfinite='ignore'"),
    (dict(tower_name=3), TypeError, "`tower_name` must be a string"),
    (dict(keras_names="yes"), TypeError, "keras_names='yes'"),
])
def test_check_options_names_the_bad_value(bad, error, match):
    check_options(**OK)  # the defaults pass
    with pytest.raises(error, match=match):
        check_options(**{**OK, **bad})


def test_make_sets_one_unnamed_set_or_named_sets_with_copies():
    infs = [ScalarStats("loss")]
    (only,), combination = make_sets(BATCHES, infs, prefetch=None, batch_size=None, limit_batches=None,
                                     combine=None)
    assert only.name is None and only.infs == infs and combination is None
    sets, combination = make_sets({"a": BATCHES, "b": BATCHES}, infs, prefetch=None, batch_size=None,
                                  limit_batches=1, combine="max")
    assert [s.name for s in sets] == ["a", "b"] and sets[0].infs == infs
    assert sets[1].infs[0] is not infs[0] and sets[1].input.limit == 1
    assert combination({"a": {"k": 1.0}, "b": {"k": 3.0}}) == {"k": 3.0}


def test_a_backend_without_an_engine_names_it(monkeypatch):
    current_engine()  # TensorFlow, the test process's backend
    monkeypatch.setattr(keras.backend, "backend", lambda: "mlx")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND='mlx'.*jax.*tensorflow"):
        current_engine()
