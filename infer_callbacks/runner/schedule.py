"""``Schedule``: when a periodic callback is due. Pure Python, no Keras:
:class:`~infer_callbacks.PeriodicTrigger` feeds it epochs, global steps and
clock readings; the tests feed it counted steps and a fake clock.

| argument | due |
| --- | --- |
| ``every_k_epochs=k`` | after epoch ``e`` when ``e % k == 0`` |
| ``every_k_steps=k`` | after a training call that reached a multiple of ``k`` global steps |
| ``every_t_seconds=t`` | after a training call, once ``t`` seconds passed since training began or the last run ended |
| ``every_epoch_fraction=f`` | after the training calls that complete ``f``, ``2f``, ... of the epoch's steps |
| ``predicate=p`` | ``p(epoch, global_step)`` is true: after each epoch (``predicate_every="epoch"``) or each training call (``"step"``) |
| ``start_after_steps=n`` | nothing is due before global step ``n`` |
| ``start_after_epochs=n`` | nothing is due before epoch ``n`` has ended |
| ``before_train=True`` | also due once before the first training step |
| ``budgeted=True`` | no period needed: a :class:`~infer_callbacks.runner.time_budget.TimeBudget` decides as well, after every training call |

Several periods combine with "or"; a delay holds back every period. A step
check says "due" at most once per call, however many periods are due.
Epochs are 1-based: after a step, ``epoch`` is the epoch in progress; after
an epoch, the epoch that just ended.
"""

from __future__ import annotations

import inspect
import math
import numbers
from fractions import Fraction
from typing import Callable

import numpy as np

__all__ = ["Schedule"]

PREDICATE_EVERY = ("epoch", "step")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_positive_int(name: str, value) -> None:
    if value is not None and (not _is_int(value) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")


def _check_predicate(predicate) -> None:
    if not callable(predicate):
        raise TypeError("`predicate` must be a callable `predicate(epoch, global_step) -> bool`, e.g. "
                        f"predicate=lambda epoch, step: epoch >= 3. Received: predicate={predicate!r}")
    try:
        signature = inspect.signature(predicate)
    except (TypeError, ValueError):  # no signature to read (a builtin)
        return
    try:
        signature.bind(1, 1)
    except TypeError:
        raise TypeError(f"`predicate` is called as predicate(epoch, global_step), but its signature is "
                        f"{signature}. Received: predicate={predicate!r}") from None


class Schedule:
    """When a periodic callback is due; see the module docstring for the
    arguments (keyword-only, as ``PeriodicTrigger`` takes them).

    The caller drives it in this order::

        start(step=, now=, steps_per_epoch=)    # before training
        for each epoch: begin_epoch(step)
            after each training call: due_after_step(epoch, step, now)
            after the epoch: due_after_epoch(epoch, step, now)
        ran(now) after each run (restarts the timer of every_t_seconds)

    Example:

    ```python
    from infer_callbacks.runner.schedule import Schedule

    s = Schedule(every_epoch_fraction=0.5)
    s.start(step=0, now=0.0, steps_per_epoch=4)
    s.begin_epoch(step=0)
    assert [s.due_after_step(1, step, now=0.0) for step in (1, 2, 3, 4)] == [False, True, False, True]
    ```
    """

    def __init__(self, *, every_k_epochs: int | None = None, every_k_steps: int | None = None,
                 every_t_seconds: float | None = None, every_epoch_fraction: float | None = None,
                 predicate: Callable[[int, int], bool] | None = None, predicate_every: str = "epoch",
                 start_after_steps: int = 0, start_after_epochs: int = 0, before_train: bool = False,
                 budgeted: bool = False):
        _check_positive_int("every_k_epochs", every_k_epochs)
        _check_positive_int("every_k_steps", every_k_steps)
        if every_t_seconds is not None and (not _is_real(every_t_seconds) or not math.isfinite(every_t_seconds)
                                            or every_t_seconds <= 0):
            raise ValueError("`every_t_seconds` must be a positive, finite number of seconds or None. "
                             f"Received: every_t_seconds={every_t_seconds!r}")
        if every_epoch_fraction is not None and (not _is_real(every_epoch_fraction)
                                                 or not 0 < every_epoch_fraction <= 1):
            raise ValueError("`every_epoch_fraction` must be a number in (0, 1], e.g. 0.25 for every quarter "
                             f"of an epoch. Received: every_epoch_fraction={every_epoch_fraction!r}")
        for name, value in (("start_after_steps", start_after_steps), ("start_after_epochs", start_after_epochs)):
            if not _is_int(value) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer (0: no delay). Received: {name}={value!r}")
        if not isinstance(before_train, bool):
            raise TypeError(f"`before_train` must be True or False. Received: before_train={before_train!r}")
        if predicate is not None:
            _check_predicate(predicate)
        if predicate_every not in PREDICATE_EVERY:
            raise ValueError(f"`predicate_every` must be one of {PREDICATE_EVERY} (when `predicate` is "
                             f"evaluated). Received: predicate_every={predicate_every!r}")
        if predicate is None and predicate_every != "epoch":
            raise ValueError(f"predicate_every={predicate_every!r} says when to evaluate `predicate`, "
                             "but no predicate was given: pass predicate=lambda epoch, global_step: ...")
        if before_train and (start_after_steps or start_after_epochs):
            raise ValueError("before_train=True runs before the first step, but start_after_steps="
                             f"{start_after_steps} / start_after_epochs={start_after_epochs} say no run "
                             "before then: drop one of them.")
        if all(v is None for v in (every_k_epochs, every_k_steps, every_t_seconds, every_epoch_fraction,
                                   predicate)) and not (before_train or budgeted):
            raise ValueError("PeriodicTrigger needs a period: pass every_k_epochs=, every_k_steps=, "
                             "every_t_seconds=, every_epoch_fraction=, predicate=, time_budget= or before_train=True "
                             "(start_after_steps= / start_after_epochs= only delay a period).")
        self.every_k_epochs = every_k_epochs
        self.every_k_steps = every_k_steps
        self.every_t_seconds = every_t_seconds
        self.every_epoch_fraction = every_epoch_fraction
        self.predicate = predicate
        self.predicate_every = predicate_every
        self.start_after_steps = start_after_steps
        self.start_after_epochs = start_after_epochs
        self.before_train = before_train
        self.budgeted = budgeted  # a TimeBudget decides too, after every training call
        self._marks: frozenset[int] = frozenset()  # steps into the epoch that end a fraction
        self._last_step = 0
        self._epoch_start = 0
        self._timer_start = 0.0

    @property
    def checks_steps(self) -> bool:
        """Whether anything can be due after a training call (else
        :meth:`due_after_step` need not be called)."""
        return (self.budgeted or self.every_k_steps is not None or self.every_t_seconds is not None
                or self.every_epoch_fraction is not None
                or (self.predicate is not None and self.predicate_every == "step"))

    def start(self, *, step: int, now: float, steps_per_epoch: int | None = None) -> None:
        """Begin a training run at global ``step``, time ``now``, with epochs
        of ``steps_per_epoch`` steps (``None``: unknown). Forgets any earlier run."""
        if self.every_epoch_fraction is not None:
            if not _is_int(steps_per_epoch) or steps_per_epoch < 1:
                raise ValueError(
                    f"PeriodicTrigger(every_epoch_fraction={self.every_epoch_fraction!r}) needs the number "
                    f"of steps in an epoch, but fit does not know it (steps={steps_per_epoch!r}: a dataset "
                    "of unknown length, e.g. a generator or a repeated tf.data.Dataset). Pass "
                    "model.fit(..., steps_per_epoch=N), or schedule by every_k_steps= instead.")
            fraction = Fraction(repr(float(self.every_epoch_fraction)))  # 0.1 is 1/10, as written
            self._marks = frozenset(math.ceil(j * fraction * steps_per_epoch)
                                    for j in range(1, math.floor(1 / fraction) + 1))
        self._last_step = self._epoch_start = int(step)
        self._timer_start = now

    def begin_epoch(self, step: int) -> None:
        """An epoch begins at global ``step`` (fractions count from here)."""
        self._epoch_start = self._last_step = int(step)

    def ran(self, now: float) -> None:
        """A run ended at ``now``: ``every_t_seconds`` counts from here."""
        self._timer_start = now

    def _ask(self, epoch: int, step: int) -> bool:
        answer = self.predicate(epoch, step)
        if not isinstance(answer, (bool, np.bool_)):
            raise TypeError(f"`predicate` must return True or False; predicate(epoch={epoch}, "
                            f"global_step={step}) returned {answer!r}.")
        return bool(answer)

    def due_after_step(self, epoch: int, step: int, now: float) -> bool:
        """Whether a run is due after the training call that reached global
        ``step`` in (1-based) ``epoch``, at time ``now``."""
        prev, self._last_step = self._last_step, int(step)
        if step < self.start_after_steps or epoch - 1 < self.start_after_epochs:
            return False
        if self.every_k_steps is not None and step // self.every_k_steps > prev // self.every_k_steps:
            return self._due(now)
        if self.every_t_seconds is not None and now - self._timer_start >= self.every_t_seconds:
            return self._due(now)
        done_before, done = prev - self._epoch_start, step - self._epoch_start
        if any(done_before < mark <= done for mark in self._marks):
            return self._due(now)
        if self.predicate is not None and self.predicate_every == "step" and self._ask(epoch, step):
            return self._due(now)
        return False

    def started(self, epoch: int, step: int, *, after_epoch: bool = False) -> bool:
        """Whether the delays (``start_after_steps``, ``start_after_epochs``)
        are over after global ``step`` in ``epoch`` (ended, with ``after_epoch``)."""
        return step >= self.start_after_steps and (epoch if after_epoch else epoch - 1) >= self.start_after_epochs

    def due_after_epoch(self, epoch: int, step: int, now: float) -> bool:
        """Whether a run is due after (1-based) ``epoch`` ended at global ``step``."""
        self._last_step = int(step)
        if step < self.start_after_steps or epoch < self.start_after_epochs:
            return False
        if self.every_k_epochs is not None and epoch % self.every_k_epochs == 0:
            return self._due(now)
        if self.predicate is not None and self.predicate_every == "epoch" and self._ask(epoch, step):
            return self._due(now)
        return False

    def _due(self, now: float) -> bool:
        self._timer_start = now  # the run starts now; ran() moves this to its end
        return True
