"""PeriodicTrigger: when a runner runs (counted in epochs and global steps,
never timed)."""

from __future__ import annotations

import keras
import pytest

from infer_callbacks import InferenceRunner, PeriodicTrigger, ScalarStats
from test_runner import Recorder, _ds, _model, data  # noqa: F401 - `data` is a fixture


class FakeRunner(keras.callbacks.Callback):
    """Anything with trigger(): counts the runs and when they happened."""

    def __init__(self):
        super().__init__()
        self.runs = []
        self.run_at_epoch_end = True
        self.began = 0

    def on_train_begin(self, logs=None):
        self.began += 1

    def trigger(self):
        self.runs.append(len(self.runs) + 1)
        return {"validation_x": float(len(self.runs))}


def _drive(trigger, epochs, steps_per_epoch):
    """Call the hooks as Keras's fit would, without a model."""
    trigger.on_train_begin({})
    epoch_logs = []
    for epoch in range(epochs):
        for batch in range(steps_per_epoch):
            batch_logs = {}
            trigger.on_train_batch_end(batch, batch_logs)
        logs = {}
        trigger.on_epoch_end(epoch, logs)
        epoch_logs.append(logs)
    trigger.on_train_end({})
    return epoch_logs


def test_trigger_takes_over_the_runner_schedule():
    runner = FakeRunner()
    trigger = PeriodicTrigger(runner, every_k_epochs=3)
    assert runner.run_at_epoch_end is False
    logs = _drive(trigger, epochs=7, steps_per_epoch=2)
    assert runner.runs == [1, 2] and runner.began == 1
    assert [("validation_x" in entry) for entry in logs] == [False, False, True, False, False, True, False]


def test_steps_before_train_and_epoch_logs():
    runner = FakeRunner()
    trigger = PeriodicTrigger(runner, every_k_steps=4, before_train=True)
    logs = _drive(trigger, epochs=3, steps_per_epoch=3)  # steps 4 and 8 of 9
    assert runner.runs == [1, 2, 3]
    # a step-triggered result also lands in the next epoch's logs, once
    assert [entry.get("validation_x") for entry in logs] == [1.0, 2.0, 3.0]


def test_periodic_trigger_epochs_and_steps(data):
    (x, y), (xv, yv) = data
    runs = []

    class Count(ScalarStats):
        def _before_inference(self):
            runs.append(1)
            super()._before_inference()

    model = _model()
    every2 = PeriodicTrigger(InferenceRunner(_ds(xv, yv, 32), [Count("loss")]), every_k_epochs=2,
                             before_train=True)
    recorder = Recorder()
    model.fit(_ds(x, y, 64), epochs=4, verbose=0, callbacks=[every2, recorder])  # 4 steps/epoch
    assert len(runs) == 1 + 2
    assert ["validation_loss" in logs for logs in recorder.epoch_logs] == [True, True, False, True]
    runs.clear()
    # every k-th *global* step (optimizer.iterations), as in tensorpack: the
    # model has already made 16 steps, so steps 18, 21, 24 of the next 8.
    steps = PeriodicTrigger(InferenceRunner(_ds(xv, yv, 32), [Count("loss")]), every_k_steps=3)
    model.fit(_ds(x, y, 64), epochs=2, verbose=0, callbacks=[steps])
    assert len(runs) == 3


def test_epoch_trigger_adds_no_batch_hook(data):
    # Keras dispatches batch hooks asynchronously only when no callback
    # overrides them (`_is_default`); an epoch-triggered runner must not.
    (_, _), (xv, yv) = data
    hooks = ("on_train_batch_end", "on_train_batch_begin", "on_batch_end")

    def is_default(cb):
        return all(getattr(getattr(cb, h), "_is_default", False) for h in hooks)

    runner = InferenceRunner(_ds(xv, yv, 32), ScalarStats("loss"))
    assert is_default(runner)
    assert is_default(PeriodicTrigger(InferenceRunner(_ds(xv, yv, 32), ScalarStats("loss")), every_k_epochs=2))
    assert not is_default(PeriodicTrigger(runner, every_k_steps=5))


@pytest.mark.parametrize("kwargs, match", [
    ({}, "needs a period"), ({"every_k_epochs": 0}, "every_k_epochs"), ({"every_k_steps": -2}, "every_k_steps")])
def test_periodic_trigger_bad_periods(data, kwargs, match):
    (_, _), (xv, yv) = data
    with pytest.raises(ValueError, match=match):
        PeriodicTrigger(InferenceRunner(_ds(xv, yv, 32), ScalarStats("loss")), **kwargs)
