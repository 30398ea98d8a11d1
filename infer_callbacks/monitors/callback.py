"""``Monitors``: write each epoch's results to stdout, ``stats.json`` and
TensorBoard. Monitors decide where numbers go, never what is measured.

Where the numbers come from:

| source | what | written under |
| --- | --- | --- |
| the epoch's ``logs`` | every scalar (training metrics, runner results) | the current epoch and global step |
| ``pop_reports()`` of sibling runners (``report.Report``), with the ``pop_derived_reports()`` of an ``Objective`` merged into the report of the same step | ``scalars``, ``monitor_scalars`` (monitors only, not ``logs``, e.g. ``ConfusionMatrix``'s per-class values), ``images`` | the report's ``epoch_num`` / ``global_step`` (an asynchronous runner reports epoch ``e`` later) |

A report is the epoch's when it has the epoch's number and final global step
(the same weights); any other report is a row of its own: a run in the
middle of an epoch (read after each training call but the epoch's last) or a
late one. Rows are keyed by ``(epoch_num, global_step)``. A number is
written only in the row of the step where it was measured: the latest
mid-epoch results that the epoch's ``logs`` carry (for ``EarlyStopping`` and
the other callbacks) are not written again in the epoch's row, by any
writer (``stats.json``, TensorBoard, the console) nor in :attr:`Monitors.history`.

The runners are those of the run this callback joins in ``set_model``
(:func:`infer_callbacks.fit.keras_glue.join`: the ``CallbackList`` that
holds it, looking through wrappers such as ``PeriodicTrigger``). Nothing is
read from or stored on the user's model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import keras

from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util import as_scalar
from infer_callbacks._util.copying import copy_callback
from infer_callbacks.distribute.devices import is_chief, model_strategy
from infer_callbacks.fit import keras_glue
from infer_callbacks.monitors.json_writer import JSONWriter
from infer_callbacks.monitors.printer import ScalarPrinter
from infer_callbacks.monitors.tf_events import TFEventWriter
from infer_callbacks.monitors.multi_writer import MultiWriter
from infer_callbacks.monitors.writer import MonitorWriter, optimizer_step

__all__ = ["Monitors", "MonitorWriter", "ScalarPrinter", "JSONWriter", "TFEventWriter"]


def _scalars(values: dict | None) -> dict[str, float]:
    out = {}
    for key, value in (values or {}).items():
        v = as_scalar(value)
        if v is not None:
            out[key] = v
    return out


class Monitors(ChiefOnly, keras.callbacks.Callback):
    """A Keras callback that writes each epoch's results to its writers.

    Every scalar in the epoch's ``logs`` is written (training metrics and the
    runners' results), and every report of the runners in the same callback
    list: values meant for the monitors only (``ConfusionMatrix``'s per-class
    recall and precision), images (``TFEventWriter`` writes them, the others
    ignore them), and results that an asynchronous runner reports for an
    earlier epoch, which are written under that epoch and its global step
    (``stats.json`` merges them into that epoch's row). A run in the middle
    of an epoch (``PeriodicTrigger(every_k_steps=...)``) is written right
    after the training call it followed, as a row of its own at its global
    step (see docs/monitors.md, "Runs in the middle of an epoch").

    The console writer (:class:`ScalarPrinter`) prints after Keras's progress
    bar, and, when ``fit`` prints the logs (``verbose`` 1 or 2), only what the
    bar does not show.

    Outside ``fit`` (e.g. a sidecar evaluator), use :meth:`open`,
    :meth:`write` and :meth:`close`.

    Args:
        writers: a list of :class:`MonitorWriter` (``ScalarPrinter()``,
            ``JSONWriter(logdir)``, ``TFEventWriter(logdir)``).

    Attributes:
        history: the rows written in this run, one dict per epoch end and
            per mid-epoch run (``epoch_num``, ``global_step`` and the values
            measured at that step), sorted by epoch, then step.

    Example:

    ```python
    import keras, numpy as np, tempfile
    from infer_callbacks import InferenceRunner, ScalarStats, Monitors, ScalarPrinter, JSONWriter

    x, y = np.random.rand(64, 4).astype("float32"), np.random.rand(64, 1).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    monitors = Monitors([ScalarPrinter(), JSONWriter(tempfile.mkdtemp())])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[
        InferenceRunner([(x, y)], ScalarStats("loss")), monitors])
    print(monitors.get_history("validation_loss"))
    ```
    """

    def __init__(self, writers: Sequence[MonitorWriter] | MonitorWriter):
        super().__init__()
        self._out = MultiWriter(writers)
        self.writers = self._out.writers
        self._sources: list = []
        self._derived: list = []  # Objectives: values computed from the runners' results
        self._fit_run: keras_glue.Run | None = None
        self._written: dict[str, int] = {}  # keys written as their own rows this epoch -> their epoch

    def __deepcopy__(self, memo: dict) -> "Monitors":
        """Copies of the writers, no history and no ``fit`` (keras-tuner copies
        callbacks for every trial; see ``_util/copying.py``)."""
        new = copy_callback(self, memo, fresh={
            "_sources": list, "_derived": list, "_written": dict, "_fit_run": lambda: None})
        new._out = MultiWriter(new.writers)  # the copied writers, no history
        return new

    # ---- standalone use -------------------------------------------------

    def open(self, model: keras.Model | None = None, *, chief: bool = True) -> None:
        """Set up every writer (what ``on_train_begin`` does). ``model=None``
        means "resume": ``stats.json`` keeps its rows. With ``chief=False``
        (a worker other than the chief) only the console writers run: the
        files are the chief's."""
        self._out.open(model, chief=chief)

    def write(self, epoch_num: int, global_step: int, scalars: dict, images: dict | None = None, *,
              console_skip: Iterable[str] = ()) -> None:
        """Write one epoch's values (merged into that epoch's row when it was
        written before) and images to every writer.

        Args:
            epoch_num: the 1-based epoch (or checkpoint's epoch) they measure.
            global_step: its global step.
            scalars: ``{name: number}``.
            images: ``{name: H x W x C uint8}``.
            console_skip: keys the console writers leave out (already shown).
        """
        self._out.write_rows([(epoch_num, global_step, _scalars(scalars), dict(images or {}), set())],
                             set(console_skip), defer=False)

    def close(self) -> None:
        """Close every writer (what ``on_train_end`` does)."""
        self._out.close()

    # ---- what an inferencer's trainer handle reads ----------------------

    @property
    def history(self) -> list[dict]:
        """One dict per row written in this run (``epoch_num``, ``global_step``, the values)."""
        return self._out.history

    def get_history(self, name: str) -> list[tuple[int, float]]:
        """Every ``(global_step, value)`` of ``name`` written in this run, in
        epoch order (as the inferencers' ``trainer.monitors.get_history``)."""
        return self._out.get_history(name)

    def get_latest(self, name: str) -> float:
        """The value of ``name`` of the latest epoch that has it (tensorpack's
        ``trainer.monitors.get_latest``). Raises ``KeyError`` listing the
        names written so far."""
        return self._out.get_latest(name)

    # ---- Keras callback -------------------------------------------------

    def set_model(self, model) -> None:
        super().set_model(model)
        self._fit_run = keras_glue.join(self)

    def on_train_begin(self, logs=None) -> None:
        # chief_only=False: every worker runs all its writers (infer_callbacks/_util/chief.py)
        self.open(self.model, chief=not self.chief_only or is_chief(model_strategy(self.model)))
        if self._fit_run is None:
            self._sources, self._derived = [], []
            keras_glue.warn_unjoined(self, "it writes only the epochs' logs: no runner's images, "
                                     "monitor-only values or asynchronous results")
        else:
            self._sources = self._fit_run.producers(exclude=self)  # found once per run
            self._derived = [c for c in self._fit_run.members()
                             if c is not self and callable(getattr(c, "pop_derived_reports", None))]
        names = list(dict.fromkeys(n for source in self._sources for n in getattr(source, "set_names", ())))
        self._out.use_sets(names)

    def _keras_prints_logs(self) -> bool:
        """``fit`` (and the trainer host) print every ``logs`` key at epoch
        end with ``verbose`` 1 or 2 (``"auto"`` is 1)."""
        verbose = (self.params or {}).get("verbose", 0)
        return bool(verbose)

    def _pop_reports(self) -> list:
        reports = []
        for source in self._sources:
            reports.extend(source.pop_reports() or ())
        for source in self._derived:  # into the report of the same run, else a report of its own
            for d in source.pop_derived_reports() or ():
                at = next((i for i, r in enumerate(reports)
                           if (r.epoch_num, r.global_step) == (d.epoch_num, d.global_step)), None)
                if at is None:
                    reports.append(d)
                else:
                    reports[at] = dataclasses.replace(reports[at], scalars={**reports[at].scalars, **d.scalars})
        return reports

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._flush_console()
        self._written = {}

    def on_train_batch_end(self, batch, logs=None) -> None:
        # A run after a training step (PeriodicTrigger every_k_steps=,
        # every_t_seconds=, every_epoch_fraction=) gets a row of its own at its
        # global step, now. The epoch's last call is left to on_epoch_end: a
        # run there measured the epoch's final weights and belongs to its row.
        # (Overriding this hook turns off Keras's asynchronous batch-hook
        # dispatch, which TensorFlow's backend does not use anyway.)
        steps = (self.params or {}).get("steps")
        if not (self._sources or self._derived) or (steps is not None and batch + 1 >= steps):
            return
        reports = self._pop_reports()
        if reports:
            self._write_rows([self._report_row(r) for r in reports], set(), defer=self._keras_prints_logs())

    def _report_row(self, r, step: int | None = None) -> tuple:
        """A report's row; its keys are remembered until the epoch ends."""
        scalars = {**_scalars(r.scalars), **_scalars(r.monitor_scalars)}
        for key in _scalars(r.scalars):
            self._written[key] = r.epoch_num
        return (r.epoch_num, r.global_step if step is None else step, scalars, dict(r.images or {}), set())

    def on_epoch_end(self, epoch, logs=None) -> None:
        epoch_num = epoch + 1
        step = optimizer_step(self.model)
        scalars = _scalars(logs)
        shown = set(scalars) if self._keras_prints_logs() else set()
        reports = self._pop_reports()
        # A report of this epoch at its final step measured the epoch's weights.
        now = [r for r in reports if r.epoch_num == epoch_num and (step is None or r.global_step == step)]
        rows = [self._report_row(r) for r in reports if not any(r is n for n in now)]
        step = epoch_num if step is None else step
        for key, measured in self._written.items():
            if measured != epoch_num:  # in this epoch's logs, but measuring an earlier epoch
                scalars.pop(key, None)
        # The latest mid-epoch results stay in the epoch's logs, not in its
        # row: every writer already has them at the step they were measured.
        carried = {k for k, measured in self._written.items() if measured == epoch_num and k in scalars}
        images: dict = {}
        for r in now:
            scalars.update(_scalars(r.scalars))
            scalars.update(_scalars(r.monitor_scalars))
            carried -= set(_scalars(r.scalars))
            images.update(r.images or {})
        rows = [(epoch_num, step, scalars, images, carried)] + sorted(rows, key=lambda row: row[:2])
        self._written = {}
        self._write_rows(rows, shown, defer=self._keras_prints_logs())

    def _write_rows(self, rows: list, shown: set, *, defer: bool) -> None:
        self._out.write_rows(rows, shown, defer=defer)

    def _flush_console(self) -> None:
        self._out.flush_console()

    def on_train_end(self, logs=None) -> None:
        try:
            # Reports that arrived after the last epoch end (a runner that
            # finished in its own on_train_end), then the last printed table.
            reports = self._pop_reports()
            if reports:
                self._write_rows([self._report_row(r) for r in reports], set(), defer=False)
            self._flush_console()
        finally:
            self._sources, self._derived = [], []  # hold no runner beyond the run
            self.close()
