"""Shared by the schedule tests: a small model and data, a fake clock, and
an inferencer that records when it ran."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import Inferencer


def schedule_model(steps_per_execution=1):
    return classifier(optimizer=keras.optimizers.SGD(0.01), steps_per_execution=steps_per_execution)


def schedule_ds(n, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = rng.integers(0, 3, size=n).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


VAL = schedule_ds(20, 10, seed=1)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class WhenRun(Inferencer):
    """Records (epoch, global step) of every run; a run may take fake time."""

    def __init__(self, clock=None, run_seconds=0.0):
        self.runs, self.clock, self.run_seconds = [], clock, run_seconds

    def _before_inference(self):
        self.runs.append((self.epoch_num, self.global_step))
        if self.clock is not None:
            self.clock.now += self.run_seconds

    def _get_fetches(self):
        return ["label"]

    def _on_fetches(self, results):
        pass

    def _after_inference(self):
        return {"validation_runs": float(len(self.runs))}
