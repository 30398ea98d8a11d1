"""``InferenceRunner``: when to validate, and where the results go.

| who                 | owns                                                        |
| ------------------- | ----------------------------------------------------------- |
| ``sets``            | each named input (prefetched) and its own inferencers       |
| ``engine``          | devices, the tower, the traced step: one binding per input structure |
| ``passes``/``dispatch`` | one run: every set's batches to its inferencers, in order |
| ``runs.py``         | binding the model, one run, ``on_test_*`` around it, reports |
| ``options.py``      | the keyword options, grouped and checked                    |
| this module         | the Keras lifecycle, ``logs``, the producer protocol        |
|                     | (``fit/producer.py``), deep copies                          |
| inferencers         | every number                                                |

A run: ``on_test_begin`` on every callback of the ``fit`` (so
``SwapEMAWeights`` swaps), each set's batches through the step, each
batch's numpy values to that set's inferencers in dataset order,
``on_test_end``, then the results into the epoch's ``logs`` ahead of every
other callback's ``on_epoch_end`` (see ``fit/keras_glue.py``: the runner joins
the run of the ``CallbackList`` that hands it its model, and moves itself
ahead of the callbacks that are not validation producers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import keras

from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util.copying import copy_callback
from infer_callbacks.fit import keras_glue
from infer_callbacks.fit.report import Report, ReportQueue, publish
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.context import RunContext
from infer_callbacks.runner.arguments import check_tower_func, make_sets
from infer_callbacks.runner.engine.base import check_inferencers
from infer_callbacks.runner.engine.select import current_engine
from infer_callbacks.runner.options import RunnerOptions
from infer_callbacks.runner.runs import Runs

__all__ = ["InferenceRunner"]


class InferenceRunner(Runs, ChiefOnly, keras.callbacks.Callback):
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
        asynchronous: validate a device-side snapshot of the weights in the
            background while training goes on; results reach ``logs`` at the
            first epoch end after they are ready, with ``epoch_key`` naming
            the epoch they measure. The last epoch is validated in the
            foreground. See ``runner/asynchronous.py``.

    The keyword options, grouped by what they govern -- the tower
    (``tower_name``, ``input_names``, ``generate``), speed
    (``steps_per_execution``, ``pipeline``, ``prefetch``), what is reported
    (``on_nonfinite``, ``keras_names``, ``combine``, ``limit_batches``,
    ``batch_size``, ``verbose``), asynchronous runs (``async_timeout``,
    ``epoch_key``) and runs across processes (``collective_timeout``) -- are
    each documented, with their defaults, in
    :class:`~infer_callbacks.runner.options.RunnerOptions`.

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
                 on_nonfinite: str = "warn", verbose: bool | str = "auto", asynchronous: bool = False,
                 async_timeout: float = 3600.0, epoch_key: str = "validation_epoch",
                 batch_size: int | None = None, keras_names: bool = False, combine: Any = None,
                 limit_batches: int | float | None = None, collective_timeout: float = 60.0,
                 generate: Callable | None = None):
        super().__init__()
        engine = current_engine()  # refuses a backend without an engine, naming it
        self.infs = check_inferencers(infs)
        check_tower_func(tower_func)
        self.options = RunnerOptions(
            tower_name=tower_name, input_names=input_names, generate=generate,
            steps_per_execution=steps_per_execution, pipeline=pipeline, prefetch=prefetch,
            on_nonfinite=on_nonfinite, keras_names=keras_names, combine=combine, limit_batches=limit_batches,
            batch_size=batch_size, verbose=verbose, async_timeout=async_timeout, epoch_key=epoch_key,
            collective_timeout=collective_timeout)
        for option in dataclasses.fields(RunnerOptions):  # each option is also an attribute, as before
            setattr(self, option.name, getattr(self.options, option.name))
        self.device = engine.device(device)  # a missing GPU id warns and falls back
        self.sets, self.combination = make_sets(input, self.infs, prefetch=prefetch, batch_size=batch_size,
                                                limit_batches=limit_batches, combine=combine)
        self.input = self.sets[0].input
        self.tower_func = tower_func
        self.tower_name = tower_name or "InferenceTower"
        self.input_names = list(input_names) if input_names is not None else None
        self.pipeline, self.async_timeout = bool(pipeline), float(async_timeout)
        self.collective_timeout = float(collective_timeout)
        self.asynchronous = bool(asynchronous)
        self.shutdown_timeout = 2.0
        self.run_at_epoch_end = True
        for name, value in self._RUN_STATE.items():
            setattr(self, name, value())

    # What a run leaves on the runner; a deep copy starts without it.
    _RUN_STATE = {"last_results": dict, "num_samples_last_run": int, "samples_per_set": dict,
                  "_validator": lambda: None,
                  "_fit_run": lambda: None, "_reports": ReportQueue,
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

    def publish(self, results: dict[str, float], logs: dict | None) -> None:
        """Put ``results`` into ``logs``, refusing to replace a key that
        another producer (Keras's own ``val_*`` metrics, another runner) put
        there."""
        publish(results, logs, self)

    def pop_reports(self) -> list[Report]:
        """The reports of the runs since the last call (for :class:`Monitors`)."""
        return self._reports.pop()

    @property
    def set_names(self) -> list[str]:
        """The names of this runner's validation sets (``[]`` for one unnamed set)."""
        return [s.name for s in self.sets if s.name is not None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tower_name!r}, {self.infs!r})"

    def __deepcopy__(self, memo: dict) -> "InferenceRunner":
        """The same inputs (shared, not copied), a copy of the inferencers and
        settings, no model, traced step, reports or ``fit`` (keras-tuner
        copies callbacks for every trial; see ``_util/copying.py``)."""
        return copy_callback(self, memo, share=("tower_func", "generate"), fresh=self._RUN_STATE)
