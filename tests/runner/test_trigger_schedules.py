"""PeriodicTrigger's schedules in ``fit``: fractions of an epoch, seconds (a
fake clock, never sleeping), delays and predicates."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.schedules import VAL, FakeClock, WhenRun, schedule_ds as _ds, schedule_model as _model
from infer_callbacks import Inferencer, InferenceRunner, PeriodicTrigger, ScalarStats


class Tick(keras.callbacks.Callback):
    """Advances the fake clock by ``seconds`` during each training call (at its
    begin: the runner's wrapper is moved ahead of the other callbacks)."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.now += self.seconds


class EpochLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


def test_quarters_of_an_epoch():
    when, seen = WhenRun(), EpochLogs()
    _model().fit(_ds(32, 4), epochs=2, verbose=0, callbacks=[   # 8 steps per epoch
        PeriodicTrigger(InferenceRunner(VAL, when), every_epoch_fraction=0.25, every_k_epochs=1), seen])
    # the epoch's last quarter already measured the epoch's weights: no second run at its end
    assert when.runs == [(1, 2), (1, 4), (1, 6), (1, 8), (2, 10), (2, 12), (2, 14), (2, 16)]
    assert [logs["validation_runs"] for logs in seen.logs] == [4.0, 8.0]  # the latest run's


@pytest.mark.not_on_backend("torch", reason="Keras's PyTorch trainer refuses steps_per_execution > 1")
def test_fraction_with_steps_per_execution_and_steps_per_epoch():
    when = WhenRun()
    _model(steps_per_execution=3).fit(_ds(64, 4).repeat(), epochs=1, steps_per_epoch=12, verbose=0,
                                      callbacks=[PeriodicTrigger(InferenceRunner(VAL, when),
                                                                 every_epoch_fraction=0.5)])
    assert [step for _, step in when.runs] == [6, 12]


def test_fraction_of_an_epoch_of_unknown_length_names_the_fix():
    def gen():
        for i in range(8):
            yield np.full((4, 4), i, "float32"), np.zeros(4, "int32")

    ds = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec((4, 4), tf.float32), tf.TensorSpec((4,), tf.int32)))
    trigger = PeriodicTrigger(InferenceRunner(VAL, WhenRun()), every_epoch_fraction=0.25)
    with pytest.raises(ValueError, match=r"every_epoch_fraction=0.25.*steps_per_epoch=N"):
        _model().fit(ds, epochs=1, verbose=0, callbacks=[trigger])


def test_every_t_seconds_counts_training_time_only():
    clock = FakeClock()
    when = WhenRun(clock, run_seconds=100.0)  # a slow validation set
    _model().fit(_ds(40, 4), epochs=1, verbose=0, callbacks=[   # 10 steps, 1 s each
        Tick(clock, 1.0), PeriodicTrigger(InferenceRunner(VAL, when), every_t_seconds=3, clock=clock)])
    assert [step for _, step in when.runs] == [3, 6, 9]


def test_delays_and_predicates():
    when = WhenRun()
    _model().fit(_ds(16, 4), epochs=3, verbose=0, callbacks=[   # 4 steps per epoch
        PeriodicTrigger(InferenceRunner(VAL, when), every_k_steps=2, start_after_epochs=1)])
    assert [step for _, step in when.runs] == [6, 8, 10, 12]

    when = WhenRun()
    _model().fit(_ds(16, 4), epochs=4, verbose=0, callbacks=[
        PeriodicTrigger(InferenceRunner(VAL, when), predicate=lambda epoch, step: epoch % 2 == 1)])
    assert when.runs == [(1, 4), (3, 12)]

    when = WhenRun()
    _model().fit(_ds(16, 4), epochs=2, verbose=0, callbacks=[
        PeriodicTrigger(InferenceRunner(VAL, when), predicate=lambda epoch, step: step in (3, 6),
                        predicate_every="step")])
    assert when.runs == [(1, 3), (2, 6)]


def test_a_copy_keeps_the_schedule_and_the_clock():
    clock = FakeClock()
    trigger = PeriodicTrigger(InferenceRunner(VAL, ScalarStats("loss")), every_t_seconds=5,
                              start_after_steps=3, clock=clock)
    twin = copy.deepcopy(trigger)
    assert twin.clock is clock and twin.callback is not trigger.callback
    assert (twin.schedule.every_t_seconds, twin.schedule.start_after_steps) == (5, 3)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"every_t_seconds": 0}, ValueError, "every_t_seconds=0"),
    ({"every_epoch_fraction": 2}, ValueError, "every_epoch_fraction=2"),
    ({"every_k_steps": 5, "start_after_epochs": -1}, ValueError, "start_after_epochs=-1"),
    ({"predicate": True}, TypeError, "predicate=True"),
    ({"every_t_seconds": 5, "clock": 0.0}, TypeError, "clock=0.0"),
])
def test_bad_schedules_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        PeriodicTrigger(InferenceRunner(VAL, ScalarStats("loss")), **kwargs)
