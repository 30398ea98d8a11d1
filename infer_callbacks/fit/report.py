"""What one validation run reports: the numbers of one epoch's weights."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

__all__ = ["Report", "ReportQueue", "publish"]


@dataclasses.dataclass
class Report:
    """One validation run's results, as a runner hands them to monitors.

    Attributes:
        epoch_num: the 1-based epoch whose weights were measured (0 before
            training, e.g. ``PeriodicTrigger(before_train=True)``); for a
            run in the middle of an epoch, the epoch in progress.
        global_step: the optimizer step of those weights. With
            ``epoch_num`` it says where the report belongs: at the epoch's
            final step it is the epoch's (its row, its ``logs``), at an
            earlier step a run in the middle of the epoch, which
            :class:`~infer_callbacks.Monitors` write as a row of its own.
        scalars: the results that also went into Keras's ``logs``.
        monitor_scalars: results for the monitors only (e.g. per-class
            values that would flood ``History`` and the progress bar).
        images: ``{name: HxWxC uint8 array}`` for TensorBoard.
    """

    epoch_num: int
    global_step: int
    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    monitor_scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def publish(results: dict, logs: dict | None, who: object) -> None:
    """Put ``results`` into ``logs``, refusing to replace a key that another
    producer (Keras's own ``val_*`` metrics, another runner) put there."""
    if logs is None:
        return
    taken = sorted(k for k in results if k in logs)
    if taken:
        raise ValueError(
            f"{who!r} reports {taken}, but the epoch's logs already hold "
            f"{'these keys' if len(taken) > 1 else 'this key'} from another producer (Keras's "
            "own validation_data metrics or another runner). Give the inferencer another "
            "prefix or summary name, e.g. BinaryClassificationStats(..., prefix='validation').")
    logs.update(results)


class ReportQueue:
    """A producer's reports between two ``pop`` calls, safe across the
    threads of a run (a background run adds while ``Monitors`` pop)."""

    def __init__(self):
        self._reports: list[Report] = []
        self._lock = threading.Lock()

    def add(self, report: Report) -> None:
        with self._lock:
            self._reports.append(report)

    def pop(self) -> list[Report]:
        """Every report added since the last call, oldest first."""
        with self._lock:
            reports, self._reports = self._reports, []
        return reports
