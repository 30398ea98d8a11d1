"""Schedule: when a periodic callback is due, driven by counted steps and a
fake clock (no Keras, no sleeping)."""

from __future__ import annotations

import pytest

from infer_callbacks.runner.schedule import Schedule


def _drive(schedule, *, epochs, steps_per_epoch, per_call=1, clock=lambda step: 0.0, start=0):
    """Run ``epochs`` epochs of ``steps_per_epoch`` steps, ``per_call`` steps
    per training call; return ``[("step" | "epoch", epoch, global step)]``
    for every due answer."""
    due = []
    step = start
    schedule.start(step=step, now=clock(step), steps_per_epoch=steps_per_epoch)
    for epoch in range(1, epochs + 1):
        schedule.begin_epoch(step)
        done = 0
        while done < steps_per_epoch:
            n = min(per_call, steps_per_epoch - done)
            done, step = done + n, step + n
            if schedule.due_after_step(epoch, step, clock(step)):
                due.append(("step", epoch, step))
                schedule.ran(clock(step))
        if schedule.due_after_epoch(epoch, step, clock(step)):
            due.append(("epoch", epoch, step))
    return due


@pytest.mark.parametrize("fraction, steps, want", [
    (0.25, 8, [2, 4, 6, 8]),
    (0.5, 7, [4, 7]),        # half of 7 steps is reached after the 4th
    (0.1, 10, list(range(1, 11))),
    (1 / 3, 9, [3, 6, 9]),
    (0.3, 10, [3, 6, 9]),    # 0.3, 0.6, 0.9 of the epoch; the rest is not a full 0.3
    (1.0, 5, [5]),
    (0.25, 2, [1, 2]),       # more marks than steps: at most once per step
])
def test_fraction_fires_at_the_steps_that_complete_each_fraction(fraction, steps, want):
    # want: by hand, the first step count b with b / steps >= j * fraction for j = 1, 2, ...
    due = _drive(Schedule(every_epoch_fraction=fraction), epochs=2, steps_per_epoch=steps)
    assert due == [("step", 1, s) for s in want] + [("step", 2, steps + s) for s in want]


def test_fraction_with_several_steps_per_call_fires_once_per_call_that_crosses_a_mark():
    # 8 steps per epoch, 3 per call: calls end at 3, 6, 8; quarters end at 2, 4, 6, 8.
    due = _drive(Schedule(every_epoch_fraction=0.25), epochs=1, steps_per_epoch=8, per_call=3)
    assert due == [("step", 1, 3), ("step", 1, 6), ("step", 1, 8)]


def test_fraction_counts_from_the_epoch_begin_not_from_step_zero():
    # a second fit continuing at global step 13
    due = _drive(Schedule(every_epoch_fraction=0.5), epochs=1, steps_per_epoch=4, start=13)
    assert due == [("step", 1, 15), ("step", 1, 17)]


def test_fraction_needs_the_epoch_length():
    schedule = Schedule(every_epoch_fraction=0.25)
    with pytest.raises(ValueError, match=r"every_epoch_fraction=0.25.*steps=None.*steps_per_epoch=N"):
        schedule.start(step=0, now=0.0, steps_per_epoch=None)


def test_every_t_seconds_counts_from_the_start_and_from_the_end_of_each_run():
    schedule = Schedule(every_t_seconds=10)
    schedule.start(step=0, now=100.0)
    schedule.begin_epoch(0)
    assert not schedule.due_after_step(1, 1, now=109.9)
    assert schedule.due_after_step(1, 2, now=110.0)
    schedule.ran(now=125.0)                               # the run took 15 s: not counted
    assert not schedule.due_after_step(1, 3, now=134.0)
    assert schedule.due_after_step(1, 4, now=135.0)
    # 50 s in one training call: due once, not five times
    schedule.ran(now=135.0)
    assert schedule.due_after_step(1, 5, now=185.0)
    schedule.ran(now=185.0)
    assert not schedule.due_after_step(1, 6, now=186.0)
    assert not schedule.due_after_epoch(1, 6, now=500.0)  # time is checked after steps only


def test_start_after_steps_holds_back_every_k_steps():
    due = _drive(Schedule(every_k_steps=4, start_after_steps=10), epochs=2, steps_per_epoch=10)
    assert [step for _, _, step in due] == [12, 16, 20]


def test_start_after_epochs_holds_back_steps_until_that_epoch_ended():
    due = _drive(Schedule(every_epoch_fraction=0.5, every_k_epochs=1, start_after_epochs=2),
                 epochs=3, steps_per_epoch=4)
    assert due == [("epoch", 2, 8), ("step", 3, 10), ("step", 3, 12), ("epoch", 3, 12)]


def test_start_after_steps_holds_back_the_timer():
    ticks = {step: float(step) for step in range(0, 20)}  # one second per step
    due = _drive(Schedule(every_t_seconds=3, start_after_steps=7), epochs=1, steps_per_epoch=12,
                 clock=ticks.__getitem__)
    assert [step for _, _, step in due] == [7, 10]


def test_predicate_after_epochs_and_after_steps():
    asked = []

    def predicate(epoch, global_step):
        asked.append((epoch, global_step))
        return epoch in (2, 3)

    due = _drive(Schedule(predicate=predicate), epochs=4, steps_per_epoch=2)
    assert due == [("epoch", 2, 4), ("epoch", 3, 6)]
    assert asked == [(1, 2), (2, 4), (3, 6), (4, 8)]

    due = _drive(Schedule(predicate=lambda epoch, step: step % 3 == 0, predicate_every="step"),
                 epochs=2, steps_per_epoch=4)
    assert due == [("step", 1, 3), ("step", 2, 6)]


def test_predicate_must_answer_true_or_false():
    schedule = Schedule(predicate=lambda epoch, step: None)
    schedule.start(step=0, now=0.0)
    with pytest.raises(TypeError, match=r"predicate\(epoch=1, global_step=5\) returned None"):
        schedule.due_after_epoch(1, 5, now=0.0)


def test_periods_combine_and_are_due_once_per_call():
    # every 2 steps or every 3 steps: step 6 is due once
    due = _drive(Schedule(every_k_steps=2, predicate=lambda e, s: s % 3 == 0, predicate_every="step"),
                 epochs=1, steps_per_epoch=6)
    assert [step for _, _, step in due] == [2, 3, 4, 6]


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, ValueError, "needs a period"),
    ({"start_after_steps": 5}, ValueError, "only delay a period"),
    ({"every_t_seconds": 0}, ValueError, "every_t_seconds=0"),
    ({"every_t_seconds": -1.5}, ValueError, "every_t_seconds=-1.5"),
    ({"every_t_seconds": "60"}, ValueError, "every_t_seconds='60'"),
    ({"every_t_seconds": float("inf")}, ValueError, "every_t_seconds=inf"),
    ({"every_epoch_fraction": 0}, ValueError, r"in \(0, 1\].*every_epoch_fraction=0"),
    ({"every_epoch_fraction": 1.5}, ValueError, "every_epoch_fraction=1.5"),
    ({"every_epoch_fraction": True}, ValueError, "every_epoch_fraction=True"),
    ({"every_k_steps": 1, "start_after_steps": -1}, ValueError, "start_after_steps=-1"),
    ({"every_k_steps": 1, "start_after_epochs": 1.5}, ValueError, "start_after_epochs=1.5"),
    ({"predicate": "epoch > 3"}, TypeError, "predicate='epoch > 3'"),
    ({"predicate": lambda epoch: True}, TypeError, r"predicate\(epoch, global_step\).*\(epoch\)"),
    ({"predicate": lambda e, s: True, "predicate_every": "batch"}, ValueError, "predicate_every='batch'"),
    ({"every_k_steps": 1, "predicate_every": "step"}, ValueError, "no predicate was given"),
    ({"before_train": True, "start_after_epochs": 2}, ValueError, "before_train=True.*drop one"),
    ({"before_train": 1}, TypeError, "before_train=1"),
])
def test_bad_schedules_name_the_argument_and_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        Schedule(**kwargs)
