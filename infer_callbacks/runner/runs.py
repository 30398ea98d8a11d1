"""What one validation run does, for the runners: bind the model (one
engine binding per input structure), run every set through it, and hand
the results on -- :class:`Runs`, the half of
:class:`~infer_callbacks.InferenceRunner` that the Keras lifecycle
(``inference_runner.py``: *when* a run happens and where its results go)
calls.

| method | does |
| --- | --- |
| :meth:`Runs.setup` | bind to the current model (devices, one trace per input structure, fetch names checked) |
| :meth:`Runs.trigger` | one run now (or, asynchronously, start one on a snapshot) |
| ``_launch`` | ``on_test_begin`` / ``on_test_end`` around a run, the snapshot taken, the pass here or in a :class:`~infer_callbacks.runner.asynchronous.BackgroundRun` |
| ``_pass`` | the sets through the validator (``validator.py``), results renamed, recorded and reported |

It reads the runner's own settings (set by ``InferenceRunner.__init__``:
``sets``, ``infs``, ``device``, ``tower_func``, the options of
``options.py``) and keeps the run's state in the attributes named by
``InferenceRunner._RUN_STATE``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infer_callbacks._util import global_step
from infer_callbacks.fit.report import Report
from infer_callbacks.inferencers.context import RunContext
from infer_callbacks.runner import keras_names
from infer_callbacks.runner.asynchronous import AsyncDriver, BackgroundRun
from infer_callbacks.runner.dispatch import call_hook
from infer_callbacks.runner.ema import ema_pending
from infer_callbacks.runner.engine.select import current_engine
from infer_callbacks.runner.passes import progress_bars
from infer_callbacks.runner.validator import Validator

__all__ = ["Runs"]


class Runs:
    """Binding and running, for a callback that validates (see the table above)."""

    def _all_infs(self) -> list:
        return [inf for s in self.sets for inf in s.infs]

    def before_train(self) -> None:
        """Bind to the model, trace and check the fetches, then the
        inferencers' ``before_train`` (what ``on_train_begin`` does; call it
        when driving the runner by hand, as ``SidecarEvaluator`` does)."""
        self.setup()
        for inf in self._all_infs():
            call_hook(inf, "before_train")

    def after_train(self) -> None:
        """Wait for an asynchronous run, then the inferencers' ``after_train``."""
        if self._async is not None:
            self._async.train_end()
        for inf in self._all_infs():
            call_hook(inf, "after_train")

    def setup(self) -> None:
        """Bind to the current model: choose devices, trace the tower once per
        input structure and check every fetch name (errors name the
        inferencer and list the available names). ``on_train_begin`` calls
        it; binding the same model again keeps the traced steps."""
        key = self._binding_key(self.model)
        if self._validator is None or not self._validator.matches(self.model, key):
            self._validator = Validator(
                self.model, self.sets, self.strategy_for(self.model), key, tower_func=self.tower_func,
                input_names=None if self.input_names is None else tuple(self.input_names),
                whole_batches=self.whole_batches, asynchronous=self.asynchronous,
                steps_per_execution=self.steps_per_execution, pipeline=self.pipeline,
                shutdown_timeout=self.shutdown_timeout, collective_timeout=self.collective_timeout,
                generate=self.generate)
            ctx = self._context(epoch_num=0)
            for inf in self._all_infs():
                call_hook(inf, "setup_run", ctx)
        if self.asynchronous and self._async is None:
            self._async = AsyncDriver(
                launch=lambda epoch, step: self._launch(epoch, step, foreground=False),
                foreground=lambda epoch, step: self._launch(epoch, step, foreground=True),
                publish=self.publish, set_last=self._set_last, timeout=self.async_timeout,
                epoch_key=self.epoch_key)

    def trigger(self, *, epoch_num: int | None = None, global_step: int | None = None) -> dict[str, float]:
        """Run one validation pass now; return its results (also kept in
        :attr:`last_results` and in a report for the monitors).

        With ``asynchronous=True``: snapshot the weights, start the pass in
        the background and return the results of the previous pass (empty
        if none), with ``epoch_key``."""
        self.setup()
        step = self._global_step() if global_step is None else int(global_step)
        epoch = (self._epochs_seen() if epoch_num is None else int(epoch_num))
        if self._async is not None:
            return self._async.trigger(epoch, step)
        return self._launch(epoch, step, foreground=True)

    def snapshot_weights(self, epoch_num: int) -> list[np.ndarray] | None:
        """The weights an asynchronous run validated for epoch ``epoch_num``
        (``model.weights`` order), while the snapshot still holds them; for
        savers that keep the validated weights. ``None`` otherwise."""
        return None if self._validator is None else self._validator.snapshot_weights(epoch_num)

    @property
    def snapshot_nbytes(self) -> int:
        """The bytes the asynchronous snapshot of the weights holds (0 without one)."""
        return 0 if self._validator is None else self._validator.snapshot_nbytes

    @property
    def tracing_count(self) -> int:
        """How many times the validation steps were traced (for tests)."""
        return 0 if self._validator is None else self._validator.tracing_count

    def strategy_for(self, model) -> Any:
        """Where this runner validates ``model``: the engine's placement
        (TensorFlow: a ``tf.distribute`` strategy or ``None`` for its own
        placement; JAX: a list of ``jax.Device``, a
        ``keras.distribution.DataParallel``'s batch split, or ``None``).
        Opaque to the runner: only the engine reads it."""
        return current_engine().placement(model, device=self.device, devices=self._whole_batch_devices(),
                                          cache=self._placement_cache)

    def _whole_batch_devices(self) -> list[str] | None:
        """The devices that take whole batches each (``None``: the plain runner)."""
        return None

    def _binding_key(self, model) -> tuple:
        """What must stay the same for the bindings to serve ``model`` again."""
        return (id(self.tower_func), self.device, current_engine().placement_key(model),
                len(getattr(model, "weights", ())))

    def _set_last(self, results: dict) -> None:
        self.last_results = results

    def _launch(self, epoch: int, step: int, foreground: bool = False):
        """One run over the validation sets (the snapshot's, for an
        asynchronous runner): in this thread, or in a :class:`BackgroundRun`."""
        self.setup()
        ctx = self._context(epoch_num=epoch, global_step=step)
        results: dict[str, float] = {}
        self._no_hooks = ema_pending(self.model)  # no EMA to swap in yet (ema.py): no on_test_* hooks
        self._fire("on_test_begin")
        try:
            if self._validator.snapshot is not None:
                self._validator.snapshot.take(epoch, step)
            if self._validator.generation is not None and not foreground:
                self._validator.generation.take(self.model, self._validator.snapshot)
            if foreground:
                results = self._pass(ctx, None)
        finally:
            self._fire("on_test_end", dict(results))
        if foreground:
            self.last_results = results
            return results
        return BackgroundRun(lambda run: self._pass(ctx, run))

    def _pass(self, ctx: RunContext, background) -> dict[str, float]:
        quiet = background is not None or not self.verbose or (self.params or {}).get("verbose", 1) == 0
        done = self._validator.run(self.sets, ctx, progress=progress_bars(self.tower_name, quiet, force=self.verbose is True),
                                   hooks=self._fire if background is None else (lambda *a: None),
                                   background=background, on_nonfinite=self.on_nonfinite,
                                   combination=self.combination, who=self)
        self.num_samples_last_run, self.samples_per_set = done.samples, done.samples_per_set
        results, monitor_only = done.results, done.monitor_only
        if self.keras_names:
            results, monitor_only = keras_names.rename(results, self), keras_names.rename(monitor_only, self)
        ctx.trainer.monitors.record(results, ctx.global_step)
        self._reports.add(Report(ctx.epoch_num, ctx.global_step, dict(results), monitor_only, done.images))
        return results

    def _global_step(self) -> int:
        return global_step(self.model)

    def _epochs_seen(self) -> int:
        return len(getattr(getattr(self.model, "history", None), "epoch", []) or [])

    def _context(self, epoch_num: int, global_step: int = 0) -> RunContext:
        strategy = self._validator.strategy if self._validator is not None else None
        handle = self._history_handle
        handle.model, handle.epoch_num, handle.global_step = self.model, epoch_num, global_step
        handle.is_chief = current_engine().is_chief(strategy)
        return RunContext(model=self.model, epoch_num=epoch_num, global_step=global_step,
                          is_chief=handle.is_chief, trainer=handle)

    def _fire(self, hook: str, *args) -> None:
        if self._fit_run is not None and not getattr(self, "_no_hooks", False):
            self._fit_run.fire(hook, *args)
