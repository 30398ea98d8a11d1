"""``PeriodicTrigger``: run any callback on a schedule (epochs, steps,
seconds, fractions of an epoch, a predicate, after a delay, a share of the
wall time). *When* is decided by :class:`~infer_callbacks.runner.schedule.Schedule`
and :class:`~infer_callbacks.runner.time_budget.TimeBudget`; this module
meets Keras: it reads the global step and the clock, runs the callback and
hands its results to the epoch's ``logs``."""

from __future__ import annotations

import inspect
import time
from typing import Callable

import keras

from infer_callbacks._util import global_step
from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util.copying import copy_callback
from infer_callbacks.runner.schedule import Schedule
from infer_callbacks.runner.time_budget import TimeBudget

#: The key of the realised share of the wall time the runs took (``time_budget=``), in the epoch's logs.
SHARE_KEY = "validation_time_share"

__all__ = ["PeriodicTrigger"]


def _is_runner(callback) -> bool:
    return callable(getattr(callback, "trigger", None)) and callable(getattr(callback, "pop_reports", None))


def _trigger_takes_logs(callback) -> bool | None:
    """How to call ``callback.trigger``: ``True`` with the logs, ``False``
    with nothing (tensorpack's ``def trigger(self)``), ``None`` when there is
    no ``trigger`` (the callback gets ``on_epoch_end`` instead)."""
    trigger = getattr(callback, "trigger", None)
    if not callable(trigger) or _is_runner(callback):
        return None
    try:
        params = list(inspect.signature(trigger).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): pass the logs
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_logs = bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in params)
    required = [p.name for p in positional[1 if takes_logs else 0:] if p.default is p.empty]
    required += [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if required:
        raise TypeError(f"PeriodicTrigger calls `{type(callback).__name__}.trigger()` with no arguments or "
                        f"with one (the logs), but its signature is trigger{inspect.signature(trigger)}: "
                        f"give {', '.join(required)} a default.")
    return takes_logs


class PeriodicTrigger(ChiefOnly, keras.callbacks.Callback):
    """Runs a callback on a schedule instead of at the end of every epoch.

    The wrapped callback gets ``set_model``, ``set_params``,
    ``on_train_begin`` and ``on_train_end`` as usual. At its schedule:

    * an :class:`InferenceRunner` validates. A run after a training step
      (mid-epoch) puts its results into that batch's ``logs``, gets a row of
      its own at its global step in the :class:`Monitors`, and its results
      go into the epoch's ``logs`` at the epoch end unless a later run of the
      epoch replaced them (``History`` and ``EarlyStopping`` see the latest);
    * any other callback (``MaxSaver``, ``ModelCheckpoint``, your own) gets
      ``trigger(logs)`` if it has one (``trigger()`` if it takes no
      argument, as tensorpack's callbacks do), else
      ``on_epoch_end(epoch, logs)``, with the latest epoch's logs and any
      newer validation results.

    Periods combine with "or"; the callback runs at most once per training
    call and once per global step (a run due at an epoch end whose last step
    already ran it is not repeated). See :mod:`infer_callbacks.runner.schedule`.

    Args:
        callback: the callback to run (tensorpack's ``triggerable``).
        every_k_epochs: run after every k-th epoch.
        every_k_steps: run after every k-th global step: it reads
            ``optimizer.iterations`` after each training call, so with
            ``compile(steps_per_execution=n)`` it still fires whenever a
            multiple of k was reached (once per call that crosses one).
        before_train: also run once before the first training step.
        every_t_seconds: run after the first training call that ends at
            least t seconds after training began or the previous run ended
            (the runs' own time is not counted).
        every_epoch_fraction: run after the calls that complete each
            fraction of the epoch (0.25: after a quarter, a half, three
            quarters and all of its steps). Needs the epoch's length
            (``fit``'s ``steps_per_epoch``, or a dataset of known length).
        start_after_steps: no run before this global step.
        start_after_epochs: no run before this many epochs have ended.
        predicate: ``predicate(epoch, global_step) -> bool``, run when true;
            ``epoch`` is 1-based (the epoch that ended, or the one in
            progress).
        predicate_every: when ``predicate`` is asked: ``"epoch"`` (after
            each epoch) or ``"step"`` (after each training call).
        time_budget: a share of the wall time in (0, 1): runs are spaced so
            that they take about that share, from their measured cost
            (:mod:`~infer_callbacks.runner.time_budget`): the first run
            measures it, the periods given with it are a floor (runs at
            least that often), the delays hold it back, and a last run at
            the final epoch's end measures the final weights when the
            budget allows. The realised share goes into each epoch's
            ``logs`` (and the monitors) as ``validation_time_share``.
        clock: a zero-argument function returning seconds (default
            ``time.monotonic``), for ``every_t_seconds`` and ``time_budget``.

    Example:

    ```python
    PeriodicTrigger(InferenceRunner(val_ds, ScalarStats("loss")), every_k_epochs=5)
    PeriodicTrigger(InferenceRunner(val_ds, ScalarStats("loss")), every_epoch_fraction=0.25,
                    start_after_epochs=1)
    PeriodicTrigger(InferenceRunner(val_ds, ScalarStats("loss")), time_budget=0.1, every_k_epochs=5)
    ```
    """

    def __init__(self, callback: keras.callbacks.Callback, every_k_epochs: int | None = None,
                 every_k_steps: int | None = None, before_train: bool = False, *,
                 every_t_seconds: float | None = None, every_epoch_fraction: float | None = None,
                 start_after_steps: int = 0, start_after_epochs: int = 0,
                 predicate: Callable[[int, int], bool] | None = None, predicate_every: str = "epoch",
                 time_budget: float | None = None, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.budget = None if time_budget is None else TimeBudget(time_budget)
        self.schedule = Schedule(
            every_k_epochs=every_k_epochs, every_k_steps=every_k_steps, before_train=before_train,
            every_t_seconds=every_t_seconds, every_epoch_fraction=every_epoch_fraction,
            start_after_steps=start_after_steps, start_after_epochs=start_after_epochs,
            predicate=predicate, predicate_every=predicate_every, budgeted=self.budget is not None)
        if not callable(clock):
            raise TypeError("`clock` must be a zero-argument function returning seconds, such as "
                            f"time.monotonic. Received: clock={clock!r}")
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError("`callback` must be a keras.callbacks.Callback (an InferenceRunner, a saver, "
                            f"...). Received: {callback!r}")
        self.callback = callback
        self.clock = clock
        self.chief_only = getattr(callback, "chief_only", True)  # tensorpack's ProxyCallback
        self._takes_logs = _trigger_takes_logs(callback)  # the signature, read once
        self._epoch = 0
        self._last_run: tuple[int, int] | None = None  # (epoch, step) of the last mid-epoch run
        self._pending: dict[str, float] = {}
        self._latest: dict = {}

    every_k_epochs = property(lambda self: self.schedule.every_k_epochs)
    every_k_steps = property(lambda self: self.schedule.every_k_steps)
    before_train = property(lambda self: self.schedule.before_train)

    def __deepcopy__(self, memo: dict) -> "PeriodicTrigger":
        """A copy of the schedule and of the wrapped callback, with no run
        state (keras-tuner copies callbacks for every trial)."""
        return copy_callback(self, memo, share=("clock",), fresh={
            "_epoch": int, "_last_run": lambda: None, "_pending": dict, "_latest": dict})

    @property
    def runner(self):
        """The wrapped callback (tensorpack code calls it ``runner`` too)."""
        return self.callback

    def set_model(self, model) -> None:
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params) -> None:
        super().set_params(params)
        self.callback.set_params(params)

    def _iterations(self) -> int:
        return global_step(self.model)

    def _fire(self, epoch: int, logs: dict | None, at_epoch_end: bool, step: int) -> None:
        if not at_epoch_end:
            self._last_run = (self._epoch, step)
        began = self.clock()
        try:
            self._run(epoch, logs, at_epoch_end, step)
        finally:
            ended = self.clock()
            self.schedule.ran(ended)
            if self.budget is not None:  # the foreground cost (an asynchronous run's snapshot)
                self.budget.ran(began=began, ended=ended)

    def _budget_due(self, epoch: int, step: int, now: float, *, last: bool = False) -> bool:
        if self.budget is None or not self.schedule.started(epoch, step, after_epoch=last):
            return False
        return self.budget.allows(now=now) if last else self.budget.due(now=now)

    def _run(self, epoch: int, logs: dict | None, at_epoch_end: bool, step: int) -> None:
        if _is_runner(self.callback):
            results = self.callback.trigger(epoch_num=epoch if at_epoch_end else self._epoch, global_step=step)
            self._pending = dict(results)  # the latest run's, for the epoch's logs
            if logs is not None and not at_epoch_end:
                logs.update(results)
            return
        merged = {**self._latest, **self._pending, **(logs or {})}
        if self._takes_logs:
            self.callback.trigger(merged)
        elif self._takes_logs is False:
            self.callback.trigger()
        else:
            self.callback.on_epoch_end(max(epoch - 1, 0), merged)

    def on_train_begin(self, logs=None) -> None:
        step = self._iterations()
        self.schedule.start(step=step, now=self.clock(), steps_per_epoch=(self.params or {}).get("steps"))
        if self.budget is not None:
            self.budget.start(now=self.clock())
        self.callback.on_train_begin(logs)
        self._pending, self._latest, self._last_run = {}, {}, None
        if self.schedule.before_train:
            self._fire(0, logs, at_epoch_end=False, step=step)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch + 1
        if self.schedule.checks_steps:
            self.schedule.begin_epoch(self._iterations())
        self.callback.on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None) -> None:
        if not self.schedule.checks_steps:  # only epochs are counted
            return
        step, now = self._iterations(), self.clock()
        floor = self.schedule.due_after_step(self._epoch, step, now)
        if floor or self._budget_due(self._epoch, step, now):
            self._fire(self._epoch, logs, at_epoch_end=False, step=step)

    def on_epoch_end(self, epoch, logs=None) -> None:
        step, now = self._iterations(), self.clock()
        due = self.schedule.due_after_epoch(epoch + 1, step, now)
        final = epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
        due = due or (final and self._budget_due(epoch + 1, step, now, last=True))
        # A run due now whose weights the epoch's last call already measured is not repeated.
        if due and self._last_run != (epoch + 1, step):
            self._fire(epoch + 1, logs, at_epoch_end=True, step=step)
        if self._pending and logs is not None:
            publish = getattr(self.callback, "publish", None)
            if callable(publish):
                publish(self._pending, logs)
            else:
                logs.update(self._pending)
        self._pending = {}
        if self.budget is not None and logs is not None:
            logs[SHARE_KEY] = self.budget.realised(now=self.clock())
        self._latest = dict(logs or {})

    def on_train_end(self, logs=None) -> None:
        self.callback.on_train_end(logs)
