"""time_budget: validation takes about the share f of the wall time. The
rule alone on simulated loaded-machine timings (noisy step and run times),
then PeriodicTrigger(time_budget=) in fit on a fake clock (the shares
measured, never sleeping), the floor, the first and the last run, and one
real fit whose realised share is checked within a wide margin."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from infer_callbacks import InferenceRunner, PeriodicTrigger, ScalarStats
from infer_callbacks.runner.time_budget import TimeBudget
from helpers.schedules import FakeClock, WhenRun, schedule_ds as _ds, schedule_model as _model


def simulate(share, steps, step_seconds, run_seconds, seed=0):
    """The realised share and the number of runs of a training of ``steps``
    steps whose step and run times are drawn around the given means (a
    loaded machine: each varies by a factor of up to 3)."""
    rng = np.random.default_rng(seed)
    budget, now = TimeBudget(share), 0.0
    budget.start(now=now)
    for _ in range(steps):
        now += step_seconds * rng.uniform(0.5, 1.5) * (3.0 if rng.random() < 0.05 else 1.0)
        if budget.due(now=now):
            began, now = now, now + run_seconds * rng.uniform(0.6, 1.4) * (3.0 if rng.random() < 0.1 else 1.0)
            budget.ran(began=began, ended=now)
    return budget.realised(now=now), budget.runs


@pytest.mark.parametrize("share", [0.02, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("run_seconds", [0.5, 5.0, 40.0])
def test_the_realised_share_stays_near_the_budget(share, run_seconds):
    realised, runs = simulate(share, steps=20000, step_seconds=0.1, run_seconds=run_seconds)
    total = 20000 * 0.1 / (1 - share)
    # The rule keeps each run within the budget but for its cost's noise,
    # and cannot split the last gap: a margin of two runs' worth of time.
    margin = 0.02 + 2 * 3 * run_seconds / total
    assert abs(realised - share) <= margin, (realised, runs)
    assert runs >= 1


def test_the_first_run_is_always_due_and_measures_the_cost():
    budget = TimeBudget(0.01)
    budget.start(now=5.0)
    assert budget.due(now=5.0) and not budget.allows(now=5.0)
    budget.ran(began=5.0, ended=6.0)
    assert budget.last_cost == 1.0 and budget.runs == 1 and budget.realised(now=6.0) == 1.0
    assert not budget.due(now=50.0) and budget.due(now=5.0 + 199.0)  # (1+1)/(199+1) = 0.01


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), True, "0.1", None])
def test_time_budget_is_checked(bad):
    with pytest.raises(ValueError, match="time_budget="):
        TimeBudget(bad)
    if bad is not None:
        with pytest.raises(ValueError, match="time_budget="):
            PeriodicTrigger(InferenceRunner(_ds(4, 2), ScalarStats("loss")), time_budget=bad)


class Tick(keras.callbacks.Callback):
    """Advances the fake clock by ``seconds`` per training call."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def on_train_batch_end(self, batch, logs=None):
        self.clock.now += self.seconds


class Shares(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.shares = []

    def on_epoch_end(self, epoch, logs=None):
        self.shares.append(logs.get("validation_time_share"))


def _budgeted_fit(share, run_seconds, step_seconds=1.0, epochs=4, **kwargs):
    clock = FakeClock()
    when = WhenRun(clock, run_seconds)
    trigger = PeriodicTrigger(InferenceRunner(_ds(20, 10, seed=1), when, verbose=False), time_budget=share,
                              clock=clock, **kwargs)
    shares = Shares()
    _model().fit(_ds(200, 4), epochs=epochs, verbose=0, callbacks=[Tick(clock, step_seconds), shares, trigger])
    return when.runs, shares.shares, clock.now, trigger


@pytest.mark.parametrize("share, run_seconds", [(0.1, 5.0), (0.25, 2.0), (0.5, 10.0)])
def test_trigger_keeps_the_share_on_a_fake_clock(share, run_seconds):
    runs, shares, total, _ = _budgeted_fit(share, run_seconds)  # 50 steps of 1 s per epoch
    validated = run_seconds * len(runs)
    assert shares[-1] == pytest.approx(validated / total)  # what the monitors get is the measured share
    assert abs(shares[-1] - share) <= run_seconds / total + 0.02
    assert runs[0] == (1, 1)  # the first run, after the first step, measures the cost
    gaps = np.diff([step for _, step in runs])
    # After the first (which pays the first run back), every gap but the
    # last run's is the training time that balances one run: c (1 - f) / f
    # steps of 1 s.
    assert len(gaps) >= 3
    np.testing.assert_allclose(gaps[1:-1], run_seconds * (1 - share) / share, atol=1)


def test_a_floor_runs_at_least_that_often():
    runs, shares, total, _ = _budgeted_fit(0.01, 5.0, every_k_epochs=1)
    assert [e for e, s in runs] == [1, 1, 2, 3, 4]  # the first run, then every epoch end despite the budget
    assert shares[-1] > 0.01  # the floor wins over the budget, and the share says so


def test_a_last_run_at_the_end_when_the_budget_allows():
    runs, _, _, _ = _budgeted_fit(0.2, 10.0, epochs=2)  # 100 steps, room for more runs
    assert runs[-1] == (2, 100)
    runs, _, _, _ = _budgeted_fit(0.05, 10.0, epochs=2)  # (10+5) > 0.05 (110+10): no room
    assert runs == [(1, 1)]


def test_delays_hold_the_budget_back():
    runs, _, _, _ = _budgeted_fit(0.2, 1.0, start_after_steps=60)
    assert runs[0] == (2, 60)


def test_a_real_fit_keeps_a_wide_margin():
    """Real time on a shared machine. The validation step is compiled by a
    first fit (else its first run, tracing included, may cost more than the
    whole training here, and the budget rightly allows no second run); then
    the share of the wall time the runs took, as the trigger reports it,
    stays within a wide margin of the budget: the rule's bound (one run's
    cost over the time) plus 0.15 for a loaded machine."""
    model = _model()
    runner = InferenceRunner(_ds(400, 50, seed=1), ScalarStats("loss"), verbose=False)
    model.fit(_ds(40, 8), epochs=1, verbose=0, callbacks=[runner])
    trigger = PeriodicTrigger(runner, time_budget=0.3)
    shares = Shares()
    model.fit(_ds(4000, 8), epochs=3, verbose=0, callbacks=[shares, trigger])
    budget = trigger.budget
    assert budget.runs >= 2
    elapsed = budget.validated / shares.shares[-1]
    assert 0.0 < shares.shares[-1] <= 0.3 + budget.last_cost / elapsed + 0.15
