"""fit/producer.py: what the other callbacks may ask of a validation
producer; the optional members read with defaults for a user's own."""

from __future__ import annotations

import numpy as np

from infer_callbacks import InferenceRunner, ScalarStats
from infer_callbacks.fit.producer import (ValidationProducer, epoch_key_of, is_asynchronous, set_names_of,
                                          snapshot_weights_of)

BATCHES = [(np.zeros((2, 3), "float32"), np.zeros(2, "int32"))]


class Minimal:
    def pop_reports(self):
        return []


def test_a_runner_and_a_minimal_producer_answer_the_protocol():
    runner = InferenceRunner({"a": BATCHES, "b": BATCHES}, ScalarStats("loss"), asynchronous=True,
                             epoch_key="measured_epoch")
    assert isinstance(runner, ValidationProducer) and isinstance(Minimal(), ValidationProducer)
    assert is_asynchronous(runner) and epoch_key_of(runner) == "measured_epoch"
    assert set_names_of(runner) == ["a", "b"] and snapshot_weights_of(runner, 1) is None
    minimal = Minimal()
    assert (is_asynchronous(minimal), epoch_key_of(minimal), set_names_of(minimal),
            snapshot_weights_of(minimal, 1)) == (False, None, [], None)
