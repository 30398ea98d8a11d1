"""runner/arguments.py and runner/options.py: InferenceRunner's argument
checks and its sets, each error naming the argument and the value."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from infer_callbacks import InferenceRunner, ScalarStats
from infer_callbacks.runner.arguments import make_sets
from infer_callbacks.runner.options import RunnerOptions
from infer_callbacks.runner.engine.select import current_engine

BATCHES = [(np.zeros((2, 3), "float32"), np.zeros(2, "int32"))]


@pytest.mark.parametrize("bad, error, match", [
    (dict(steps_per_execution=0), ValueError, "steps_per_execution=0"),
    (dict(steps_per_execution=True), ValueError, "steps_per_execution=True"),
    (dict(on_nonfinite="ignore"), ValueError, "on_nonfinite='ignore'"),
    (dict(tower_name=3), TypeError, "`tower_name` must be a string"),
    (dict(keras_names="yes"), TypeError, "keras_names='yes'"),
    (dict(verbose="loud"), ValueError, "verbose='loud'"),
    (dict(generate=3), TypeError, "generate=3"),
    (dict(async_timeout=0), ValueError, "async_timeout=0"),
    (dict(collective_timeout=-1.0), ValueError, "collective_timeout=-1.0"),
    (dict(epoch_key=""), TypeError, "epoch_key=''"),
])
def test_options_name_the_bad_value(bad, error, match):
    RunnerOptions()  # the defaults pass
    with pytest.raises(error, match=match):
        RunnerOptions(**bad)
    with pytest.raises(error, match=match):  # the runner checks them at construction
        InferenceRunner(BATCHES, ScalarStats("loss"), **bad)


def test_a_tower_func_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="`tower_func` must be callable"):
        InferenceRunner(BATCHES, ScalarStats("loss"), tower_func="f")


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
