"""``InferenceRunner``: when to validate, and where the results go.

| who                 | owns                                                        |
| ------------------- | ----------------------------------------------------------- |
| ``sets``            | each named input (prefetched) and its own inferencers       |
| ``engine.binding``  | devices, the tower, the traced step: one per input structure |
| ``passes``/``dispatch`` | one run: every set's batches to its inferencers, in order |
| this module         | the Keras lifecycle, ``logs``, ``on_test_*`` around each    |
|                     | run, reports for the monitors, the asynchronous schedule    |
| inferencers         | every number                                                |

A run: ``on_test_begin`` on every callback of the ``fit`` (so
``SwapEMAWeights`` swaps), each set's batches through the step, each
batch's numpy values to that set's inferencers in dataset order,
``on_test_end``, then the results into the epoch's ``logs`` ahead of every
other callback's ``on_epoch_end`` (see ``keras_glue.py``: the runner joins
the run of the ``CallbackList`` that hands it its model, and moves itself
ahead of the callbacks that are not validation producers).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import keras
import numpy as np

from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util.copying import copy_callback
from infer_callbacks._util import global_step
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.context import RunContext
from infer_callbacks.fit import keras_glue
from infer_callbacks.runner import keras_names
from infer_callbacks.runner.arguments import check_options, make_sets
from infer_callbacks.runner.asynchronous import AsyncDriver, BackgroundRun
from infer_callbacks.runner.dispatch import call_hook as _hook
from infer_callbacks.runner.engine.base import check_inferencers
from infer_callbacks.runner.engine.select import current_engine
from infer_callbacks.runner.passes import progress_bars
from infer_callbacks.fit.report import Report, publish
from infer_callbacks.runner.validator import Validator

__all__ = ["InferenceRunner"]


class InferenceRunner(ChiefOnly, keras.callbacks.Callback):
    """Runs inferencers over one or several validation sets at the end of every epoch.

    Results go into the epoch's ``logs`` before any other callback's
    ``on_epoch_end`` runs, wherever the runner stands in the list (so
    ``History``, ``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``,
    :class:`Monitors` and your own callbacks see them), and into
    :attr:`last_results`. Around each run the other callbacks get
    ``on_test_begin`` / ``on_test_batch_*`` / ``on_test_end``, as with
    ``fit(validation_data=...)``.

    Args:
        input: a ``tf.data.Dataset``, a tensorpack-style DataFlow, a
            re-iterable of batches, a function returning an iterable, or
            Keras-style arrays: a tuple ``(x, y)`` or ``(x, y, sample_weight)``
            (as ``fit(validation_data=...)`` takes them). Or a dict of such
            inputs, ``{"clean": ds1, "noisy": ds2}``: several named sets, run
            one after another in each run, each with its own copy of the
            inferencers (the first set uses the objects passed); a result
            ``validation_loss`` of set ``clean`` is reported as
            ``validation_clean_loss`` (see ``sets.py``).
        infs: an :class:`Inferencer` or a list of them.
        tower_func: ``tower_func(*batch) -> dict[str, Tensor]``; by default
            the Keras model's own tower (outputs, ``loss``, ``wrong-top1``...).
        device: run on this one device (``'/cpu:0'``, ``'/gpu:1'`` or a GPU
            id such as ``0``); by default the model's own strategy (under
            JAX, Keras's ``DataParallel`` distribution: batches split), or
            the backend's placement. A GPU id this machine does not have
            falls back to that default with a ``RuntimeWarning`` (soft
            placement); a device string that does not exist is an error.
        tower_name: a name for this runner's tower (tensorpack's argument;
            shown in messages and the progress bar).
        input_names: names of the positional batch elements, when
            ``tower_func``'s parameter names are not the ones to fetch.
        steps_per_execution: the most batches per ``tf.function`` call.
            ``None`` (default): as many as take about a quarter of a second
            and hold at most 64 MiB of fetched values, up to 1024 (64 when
            validating across workers, where every call has this size). A
            pass starts at the pace the previous one reached.
        pipeline: run the calls in a background thread, so the device works
            on the next batches while the host feeds the inferencers (on
            TensorFlow; JAX's dispatch is asynchronous, so its engine
            overlaps them with no thread of its own; PyTorch runs each
            batch eagerly in the runner's thread).
        prefetch: batches to prefetch; ``None`` lets tf.data tune it.
        on_nonfinite: ``'warn'`` (report NaN/inf and go on) or ``'raise'``.
        verbose: show a progress bar (on a terminal, and not with
            ``fit(verbose=0)``).
        asynchronous: validate a device-side snapshot of the weights in the
            background while training goes on; results reach ``logs`` at the
            first epoch end after they are ready, with ``epoch_key`` naming
            the epoch they measure. The last epoch is validated in the
            foreground. See ``asynchronous.py``.
        async_timeout: the most seconds to wait for a background run.
        epoch_key: the ``logs`` key naming the epoch an asynchronous result
            measures.
        batch_size: the batch size for Keras-style arrays (default 32, as
            ``evaluate``); an error with any other input.
        keras_names: report ``validation_X`` as ``val_X`` (Keras's own
            names, which ``EarlyStopping(mode="auto")`` and Keras's
            ``TensorBoard`` understand); see ``keras_names.py``.
        combine: with several sets, also report each result under its
            unnamed key (``validation_loss``), combined over the sets:
            ``'mean'``, ``'min'``, ``'max'``, ``{set name: weight}`` (a
            weighted sum) or a function of ``{set name: value}``.
        limit_batches: validate on the same first ``N`` batches of each set
            every run (an int, or a fraction of the set's batches); the
            numbers are exact over those, and ``validation_num_samples``
            says how many samples they cover.

    Example:

    ```python
    model.fit(train_ds, epochs=10, callbacks=[
        InferenceRunner(val_ds, [ScalarStats("loss"), ClassificationError()]),
        keras.callbacks.EarlyStopping(monitor="validation_error", mode="min", patience=2),
    ])
    ```

    Standalone, outside ``fit``: ``runner.set_model(model); runner.trigger()``.
    """

    whole_batches = False  # True for DataParallelInferenceRunner: whole batches per replica
    chief_only = False  # every worker takes part (infer_callbacks/_util/chief.py)

    def __init__(self, input: Any, infs: Inferencer | Sequence[Inferencer],
                 tower_func: Callable[..., Any] | None = None, device: str | int | None = None, *,
                 tower_name: str | None = None, input_names: Sequence[str] | None = None,
                 steps_per_execution: int | None = None, pipeline: bool = True, prefetch: int | None = None,
                 on_nonfinite: str = "warn", verbose: bool = True, asynchronous: bool = False,
                 async_timeout: float = 3600.0, epoch_key: str = "validation_epoch",
                 batch_size: int | None = None, keras_names: bool = False, combine: Any = None,
                 limit_batches: int | float | None = None):
        super().__init__()
        engine = current_engine()  # refuses a backend without an engine, naming it
        self.infs = check_inferencers(infs)
        check_options(tower_func=tower_func, steps_per_execution=steps_per_execution,
                      on_nonfinite=on_nonfinite, tower_name=tower_name, keras_names=keras_names)
        self.device = engine.device(device)  # a missing GPU id warns and falls back
        self.sets, self.combination = make_sets(input, self.infs, prefetch=prefetch, batch_size=batch_size,
                                                limit_batches=limit_batches, combine=combine)
        self.input = self.sets[0].input
        self.tower_func = tower_func
        self.tower_name = tower_name or "InferenceTower"
        self.input_names = list(input_names) if input_names is not None else None
        self.steps_per_execution = steps_per_execution
        self.pipeline = bool(pipeline)
        self.on_nonfinite = on_nonfinite
        self.verbose = verbose
        self.shutdown_timeout = 2.0
        self.run_at_epoch_end = True
        self.asynchronous = bool(asynchronous)
        self.async_timeout = float(async_timeout)
        self.epoch_key = epoch_key
        self.keras_names = keras_names
        for name, value in self._RUN_STATE.items():
            setattr(self, name, value())

    # What a run leaves on the runner; a deep copy starts without it.
    _RUN_STATE = {"last_results": dict, "num_samples_last_run": int, "samples_per_set": dict,
                  "_validator": lambda: None,
                  "_fit_run": lambda: None, "_reports": list, "_reports_lock": threading.Lock,
                  "_history_handle": lambda: RunContext(model=None).trainer, "_async": lambda: None,
                  "_placement_cache": dict}

    # -- Keras hooks --------------------------------------------------------

    def set_model(self, model) -> None:
        super().set_model(model)
        self._fit_run = keras_glue.join(self)

    def on_train_begin(self, logs=None) -> None:
        if self._fit_run is None or not self._fit_run.promote(self):
            self._fit_run = None
            keras_glue.warn_unjoined(
                self, "callbacks placed before it miss its results in on_epoch_end, and no callback gets "
                "on_test_begin/on_test_end around its runs (SwapEMAWeights does not swap)")
        self.before_train()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        if self._async is not None:
            self._async.epoch_begin()

    def on_epoch_end(self, epoch, logs=None) -> None:
        if not self.run_at_epoch_end:
            return
        if self._async is None:
            self.publish(self.trigger(epoch_num=epoch + 1), logs)
            return
        last = epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
        self._async.epoch_end(epoch + 1, self._global_step(), logs, last)

    def on_train_end(self, logs=None) -> None:
        self.after_train()
        self._fit_run = None  # that fit is over: later runs fire no on_test_* on its callbacks

    # -- public -------------------------------------------------------------

    def _all_infs(self) -> list:
        return [inf for s in self.sets for inf in s.infs]

    def before_train(self) -> None:
        """Bind to the model, trace and check the fetches, then the
        inferencers' ``before_train`` (what ``on_train_begin`` does; call it
        when driving the runner by hand, as ``SidecarEvaluator`` does)."""
        self.setup()
        for inf in self._all_infs():
            _hook(inf, "before_train")

    def after_train(self) -> None:
        """Wait for an asynchronous run, then the inferencers' ``after_train``."""
        if self._async is not None:
            self._async.train_end()
        for inf in self._all_infs():
            _hook(inf, "after_train")

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
                shutdown_timeout=self.shutdown_timeout)
            ctx = self._context(epoch_num=0)
            for inf in self._all_infs():
                _hook(inf, "setup_run", ctx)
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
        snapshot = self._validator.snapshot if self._validator is not None else None
        if snapshot is None or snapshot.epoch_num != epoch_num:
            return None
        return snapshot.numpy()

    def publish(self, results: dict[str, float], logs: dict | None) -> None:
        """Put ``results`` into ``logs``, refusing to replace a key that
        another producer (Keras's own ``val_*`` metrics, another runner) put
        there."""
        publish(results, logs, self)

    def pop_reports(self) -> list[Report]:
        """The reports of the runs since the last call (for :class:`Monitors`)."""
        with self._reports_lock:
            reports, self._reports = self._reports, []
        return reports

    @property
    def set_names(self) -> list[str]:
        """The names of this runner's validation sets (``[]`` for one unnamed set)."""
        return [s.name for s in self.sets if s.name is not None]

    @property
    def snapshot_nbytes(self) -> int:
        """The bytes the asynchronous snapshot of the weights holds (0 without one)."""
        snapshot = self._validator.snapshot if self._validator is not None else None
        return 0 if snapshot is None else snapshot.nbytes

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tower_name!r}, {self.infs!r})"

    def __deepcopy__(self, memo: dict) -> "InferenceRunner":
        """The same inputs (shared, not copied), a copy of the inferencers and
        settings, no model, traced step, reports or ``fit`` (keras-tuner
        copies callbacks for every trial; see ``_util/copying.py``)."""
        return copy_callback(self, memo, share=("tower_func",), fresh=self._RUN_STATE)

    # -- internals ----------------------------------------------------------

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
        self._fire("on_test_begin")
        try:
            if self._validator.snapshot is not None:
                self._validator.snapshot.take(epoch, step)
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
        done = self._validator.run(self.sets, ctx, progress=progress_bars(self.tower_name, quiet),
                                   hooks=self._fire if background is None else (lambda *a: None),
                                   background=background, on_nonfinite=self.on_nonfinite,
                                   combination=self.combination, who=self)
        self.num_samples_last_run, self.samples_per_set = done.samples, done.samples_per_set
        results, monitor_only = done.results, done.monitor_only
        if self.keras_names:
            results, monitor_only = keras_names.rename(results, self), keras_names.rename(monitor_only, self)
        ctx.trainer.monitors.record(results, ctx.global_step)
        with self._reports_lock:
            self._reports.append(Report(ctx.epoch_num, ctx.global_step, dict(results), monitor_only,
                                        done.images))
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
        if self._fit_run is not None:
            self._fit_run.fire(hook, *args)
