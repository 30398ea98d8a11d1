"""The base of the writers held by :class:`~infer_callbacks.Monitors`, and
what they share: the log directory, images, the global step, the rows of
``stats.json`` and ``Monitors.history`` (one per epoch, or per mid-epoch run).

| writer | module | writes | on a re-run in the same logdir |
| --- | --- | --- | --- |
| ``ScalarPrinter`` | ``printer.py`` | a table per epoch on stdout | nothing to keep |
| ``JSONWriter`` | ``json_writer.py`` | ``logdir/stats.json`` (atomic) | keeps the old file as ``stats-<N>.json`` |
| ``TFEventWriter`` | ``tf_events.py`` | TensorBoard events | a new event file beside the old ones |

A writer decides how numbers are written, never which numbers exist.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from infer_callbacks._util import global_step, prepare_dir
from infer_callbacks._util.copying import copy_callback

__all__ = ["MonitorWriter", "prepare_logdir", "as_image", "optimizer_step", "merge_epoch_row"]


def prepare_logdir(logdir: Any, who: str) -> str:
    """``logdir`` as a writable, existing directory, or an error naming it."""
    return prepare_dir(logdir, who, "log directory")


def as_image(key: str, value: Any) -> np.ndarray:
    """``value`` as an ``H x W x C`` uint8 image (C in 1, 3, 4); a 2-D array
    is one grey channel."""
    image = np.asarray(value)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or image.dtype != np.uint8 \
            or 0 in image.shape:
        raise ValueError(
            f"Image {key!r} must be an H x W x C uint8 array with C in (1, 3, 4). "
            f"Received shape {image.shape} dtype {image.dtype}; convert it with "
            "np.clip(x * 255, 0, 255).astype(np.uint8).")
    return image


def optimizer_step(model) -> int | None:
    """The model's global step (``optimizer.iterations``), if it has one."""
    return global_step(model, default=None)


def _row_key(row: dict) -> tuple:
    step = row.get("global_step", 0)
    return row["epoch_num"], step if isinstance(step, (int, float)) else 0


def merge_epoch_row(rows: list[dict], epoch_num: int, step: int, values: dict) -> None:
    """Merge ``values`` into the row of ``epoch_num`` at global ``step`` in
    ``rows`` (one dict per epoch end and per run in the middle of an epoch,
    kept sorted by epoch, then step), adding the row if there is none yet."""
    row = next((r for r in rows if r["epoch_num"] == epoch_num and r.get("global_step") == step), None)
    if row is None:
        rows.append({"epoch_num": epoch_num, "global_step": step, **values})
        rows.sort(key=_row_key)
    else:
        row.update(values)


class MonitorWriter:
    """Base class of the writers held by :class:`~infer_callbacks.Monitors`.

    Override ``write(epoch_num, step, scalars)``; optionally ``setup(model)``
    (called at ``on_train_begin``), ``write_images(epoch_num, step, images)``
    and ``close()``. ``write`` may be called more than once for an epoch: an
    asynchronous runner reports epoch ``e``'s results at a later epoch end,
    under ``e`` and its global step. A run in the middle of an epoch
    (``PeriodicTrigger(every_k_steps=...)``) is written under the epoch in
    progress and its own global step, before the epoch's row.

    Example:

    ```python
    from infer_callbacks import MonitorWriter

    class ListWriter(MonitorWriter):
        def __init__(self):
            self.rows = []
        def write(self, epoch_num, step, scalars):
            self.rows.append((epoch_num, step, dict(scalars)))

    writer = ListWriter()
    writer.write(1, 10, {"validation_loss": 0.5})
    assert writer.rows == [(1, 10, {"validation_loss": 0.5})]
    ```
    """

    #: A console writer shows only what Keras's progress output does not
    #: already show, after that output (see :class:`ScalarPrinter`).
    console = False

    #: A writer of series by global step (TensorBoard) gets each value once,
    #: at the step it was measured: an epoch's row then leaves out the
    #: validation results of a run earlier in that epoch, which the epoch's
    #: ``logs`` (and the other writers) carry to the epoch's end.
    step_series = False

    def setup(self, model: keras.Model | None) -> None:
        """Prepare to write; raise here for a bad configuration."""

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def use_sets(self, names: list[str]) -> None:
        """The names of the run's validation sets (from its runners), before
        the first write; a writer may lay their keys out by set. Default: nothing."""

    def write_images(self, epoch_num: int, step: int, images: dict[str, np.ndarray]) -> None:
        """Write the epoch's images, ``{name: H x W x C uint8 array}`` (e.g. a
        :class:`~infer_callbacks.ConfusionMatrix`). Default: ignore them."""

    def close(self) -> None:
        """Flush and release resources."""

    def __deepcopy__(self, memo: dict) -> "MonitorWriter":
        """A writer with the same settings and no open file (``Monitors`` are
        deep-copied per keras-tuner trial)."""
        return copy_callback(self, memo, fresh={"_writer": lambda: None})
