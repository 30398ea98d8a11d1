"""``MultiWriter``: several writers as one, and the history of what they
wrote. ``Monitors`` (the callback, ``callback.py``) decides *which* rows
exist (an epoch's, a mid-epoch run's, a late asynchronous result's); this
module writes each row to every active writer: the console ones after
Keras's progress bar when asked to wait, the images to the writers that
take them, and the row into :attr:`MultiWriter.history` (what
``trainer.monitors.get_history`` reads).
"""

from __future__ import annotations

from typing import Any, Sequence

from infer_callbacks.monitors.writer import MonitorWriter, merge_epoch_row

__all__ = ["MultiWriter"]


class MultiWriter:
    """``writers`` written together.

    Args:
        writers: the :class:`~infer_callbacks.MonitorWriter` objects.

    Attributes:
        history: one dict per row written this run (``epoch_num``,
            ``global_step`` and the values), rows of one epoch merged.
    """

    def __init__(self, writers: Sequence[MonitorWriter] | MonitorWriter):
        if isinstance(writers, MonitorWriter):
            writers = [writers]
        writers = list(writers)
        for w in writers:
            if not isinstance(w, MonitorWriter):
                raise TypeError(
                    "Monitors takes a list of writers (ScalarPrinter(), JSONWriter(logdir), "
                    f"TFEventWriter(logdir)). Received: {w!r}")
        self.writers = writers
        self.active = writers  # all, or on a non-chief worker the console ones
        self.history: list[dict] = []
        self._console_pending: list[tuple] = []

    def open(self, model: Any = None, *, chief: bool = True) -> None:
        """Set up every writer (``model=None``: resume, ``stats.json`` keeps
        its rows); with ``chief=False`` only the console writers run."""
        self.history, self._console_pending = [], []
        self.active = [w for w in self.writers if chief or w.console]
        ready = []
        try:
            for w in self.active:
                w.setup(model)
                ready.append(w)
        except BaseException:
            for w in ready:  # e.g. a TFEventWriter opened before a JSONWriter refused
                w.close()
            raise

    def use_sets(self, names: list[str]) -> None:
        for w in self.active:
            w.use_sets(names)

    def write_rows(self, rows: list, shown: set, *, defer: bool) -> None:
        """Write ``(epoch_num, step, scalars, images, carried)`` rows:
        ``carried`` keys are in ``scalars`` but were measured (and written)
        at an earlier step, so no writer gets them again; the console
        leaves out ``shown`` keys (Keras printed them) and, with ``defer``,
        waits for :meth:`flush_console`."""
        for epoch_num, step, scalars, images, carried in rows:
            measured = {k: v for k, v in scalars.items() if k not in carried}
            merge_epoch_row(self.history, epoch_num, step, measured)
            for w in self.active:
                if w.console:
                    printed = (measured if getattr(w, "repeat_keras_logs", False)
                               else {k: v for k, v in measured.items() if k not in shown})
                    if defer:  # after Keras's progress bar has ended its line
                        self._console_pending.append((w, epoch_num, step, printed))
                    else:
                        w.write(epoch_num, step, printed)
                else:
                    w.write(epoch_num, step, measured)
                if images:
                    w.write_images(epoch_num, step, images)

    def flush_console(self) -> None:
        pending, self._console_pending = self._console_pending, []
        for w, epoch_num, step, scalars in pending:
            w.write(epoch_num, step, scalars)

    def close(self) -> None:
        for w in self.active:
            w.close()

    def get_history(self, name: str) -> list[tuple[int, float]]:
        """Every ``(global_step, value)`` of ``name`` written in this run, in epoch order."""
        return [(row["global_step"], row[name]) for row in self.history if name in row]

    def get_latest(self, name: str) -> float:
        """The value of ``name`` of the latest epoch that has it; ``KeyError``
        listing the names written so far."""
        values = self.get_history(name)
        if not values:
            known = sorted({k for row in self.history for k in row} - {"epoch_num", "global_step"})
            raise KeyError(f"Monitors have no value for {name!r} yet. Names written so far: {known}")
        return values[-1][1]
