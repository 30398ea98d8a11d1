"""The writers held by :class:`~infer_callbacks.Monitors`: a stdout table,
``stats.json`` and TensorBoard event files. A writer decides how numbers are
written, never which numbers exist.

| writer | writes | on a re-run in the same logdir |
| --- | --- | --- |
| ``ScalarPrinter`` | a table per epoch on stdout | nothing to keep |
| ``JSONWriter`` | ``logdir/stats.json`` (atomic) | keeps the old file as ``stats-<N>.json`` |
| ``TFEventWriter`` | TensorBoard events | a new event file beside the old ones |
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from typing import Any, Sequence

import keras
import numpy as np

from infer_callbacks._util import atomic_write_json, global_step, new_run_reason, reserve_numbered
from infer_callbacks._util.copying import copy_callback

__all__ = ["MonitorWriter", "ScalarPrinter", "JSONWriter", "TFEventWriter"]


def prepare_logdir(logdir: Any, who: str) -> str:
    """``logdir`` as a writable, existing directory, or an error naming it."""
    if logdir is None or (isinstance(logdir, str) and not logdir):
        raise ValueError(
            f"{who} needs a log directory to write to. Received: logdir={logdir!r}. "
            f"Pass a path such as {who}('train_log')."
        )
    logdir = os.fspath(logdir)
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as e:
        raise OSError(f"{who} cannot create the log directory {logdir!r}: {e.strerror}.") from e
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise PermissionError(f"{who} cannot write to the log directory {logdir!r} (permission denied).")
    return logdir


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

    def write_images(self, epoch_num: int, step: int, images: dict[str, np.ndarray]) -> None:
        """Write the epoch's images, ``{name: H x W x C uint8 array}`` (e.g. a
        :class:`~infer_callbacks.ConfusionMatrix`). Default: ignore them."""

    def close(self) -> None:
        """Flush and release resources."""

    def __deepcopy__(self, memo: dict) -> "MonitorWriter":
        """A writer with the same settings and no open file (``Monitors`` are
        deep-copied per keras-tuner trial)."""
        return copy_callback(self, memo, fresh={"_writer": lambda: None})


class ScalarPrinter(MonitorWriter):
    """Prints the epoch's values as a table (tabulate).

    With ``fit(verbose=1)`` or ``verbose=2`` Keras already prints every key of
    the epoch's ``logs`` at the end of the epoch. The printer then shows only
    the other values (e.g. :class:`~infer_callbacks.ConfusionMatrix`'s
    per-class numbers, which go to the monitors but not into ``logs``, and
    results an asynchronous runner reports for an earlier epoch), on lines of
    their own after Keras's progress bar; nothing when nothing is left. With
    ``verbose=0`` (or outside ``fit``) it prints everything.

    Args:
        whitelist: print only these keys (default: all).
        blacklist: never print these keys.
        file: where to print (default: ``sys.stdout`` at write time).
        repeat_keras_logs: also print the keys Keras's progress output shows.

    Example:

    ```python
    from infer_callbacks import ScalarPrinter

    print(ScalarPrinter().format(3, 120, {"validation_loss": 0.25, "loss": 0.5}))
    ```
    """

    console = True

    def __init__(self, whitelist: Sequence[str] | None = None, blacklist: Sequence[str] = (), *,
                 file: Any = None, repeat_keras_logs: bool = False):
        if isinstance(whitelist, str) or isinstance(blacklist, str):
            raise TypeError(
                "ScalarPrinter's whitelist and blacklist are lists of keys. Received: "
                f"whitelist={whitelist!r}, blacklist={blacklist!r}")
        self.whitelist = None if whitelist is None else set(whitelist)
        self.blacklist = set(blacklist)
        self.file = file
        self.repeat_keras_logs = repeat_keras_logs

    def _shown(self, scalars: dict[str, float]) -> list[tuple[str, float]]:
        return [(k, v) for k, v in sorted(scalars.items())
                if (self.whitelist is None or k in self.whitelist) and k not in self.blacklist]

    def format(self, epoch_num: int, step: int, scalars: dict[str, float]) -> str:
        """The table :meth:`write` prints."""
        from tabulate import tabulate

        rows = [[k, f"{v:.6g}"] for k, v in self._shown(scalars)]
        return tabulate(rows, headers=[f"epoch {epoch_num}", f"step {step}"], tablefmt="simple",
                        disable_numparse=True)

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        if not self._shown(scalars):
            return
        print(self.format(epoch_num, step, scalars), file=self.file or sys.stdout, flush=True)


class JSONWriter(MonitorWriter):
    """Keeps ``logdir/stats.json``: a list of dicts with ``epoch_num``
    (1-based) and ``global_step``, one per epoch end and one per run in the
    middle of an epoch, sorted by epoch, then global step.

    - The file is replaced atomically (temporary file, fsync, rename): a crash
      or a full disk never leaves a partial file. A write that fails raises an
      ``OSError`` naming the file and the writer; the previous file stays.
    - A run that resumes (its model's global step is past 0, e.g.
      ``fit(initial_epoch=...)`` after restoring a checkpoint) keeps the earlier
      epochs and replaces the rows of the epochs it runs again.
    - A new run (global step 0), or one whose steps do not continue the file's,
      never loses the old file: it is renamed ``stats-<N>.json`` (the next free
      ``N``; an older backup is never overwritten), with a warning naming it.
      ``overwrite=True`` discards the old file instead.
    - Results reported later for an earlier epoch (asynchronous validation)
      are merged into that epoch's row (the row of the same epoch and step).
    - A file that is not such a list is refused and left untouched.

    Args:
        logdir: the directory of ``stats.json`` (created if needed).
        overwrite: discard an old ``stats.json`` of another run.

    Example:

    ```python
    import json, tempfile
    from infer_callbacks import JSONWriter

    writer = JSONWriter(tempfile.mkdtemp())
    writer.setup(None)
    writer.write(1, 10, {"validation_loss": 0.5})
    writer.write(1, 10, {"validation_recall_0": 0.75})  # merged into epoch 1's row
    print(json.load(open(writer.path)))
    ```
    """

    FILENAME = "stats.json"

    def __init__(self, logdir: str | os.PathLike, *, overwrite: bool = False):
        self.logdir = prepare_logdir(logdir, "JSONWriter")
        self.path = os.path.join(self.logdir, self.FILENAME)
        self.overwrite = overwrite
        self.stats: list[dict] = []
        self.backup_path: str | None = None
        self._first_write = True

    def setup(self, model) -> None:
        prepare_logdir(self.logdir, "JSONWriter")
        self.stats = self.load(self.path)
        self.backup_path = None
        self._first_write = True
        why = new_run_reason(optimizer_step(model), [s.get("global_step", 0) for s in self.stats[:1]])
        if why is not None:
            self._start_new_file(why)

    @staticmethod
    def load(path: str) -> list[dict]:
        """Read an existing ``stats.json`` (``[]`` when absent)."""
        if not os.path.exists(path):
            return []
        try:
            with open(path) as f:
                stats = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{path} exists but is not valid JSON ({e}); it was left untouched. "
                "Move it away or use another logdir."
            ) from e
        if not isinstance(stats, list) or not all(isinstance(s, dict) and "epoch_num" in s for s in stats):
            raise ValueError(
                f"{path} exists but is not a list of per-epoch dicts with 'epoch_num' "
                "(not written by JSONWriter?); it was left untouched. Move it away or "
                "use another logdir."
            )
        return stats

    def _start_new_file(self, why: str) -> None:
        """Keep the old file beside the new one (or drop it with overwrite)."""
        n = len(self.stats)
        self.stats = []
        if self.overwrite:
            return
        stem, ext = os.path.splitext(self.FILENAME)
        backup = os.path.join(self.logdir, f"{stem}-<N>{ext}")
        try:
            # Reserve the name (an older backup is never overwritten), then
            # move the old file onto it.
            backup = reserve_numbered(self.logdir, stem, ext)
            os.replace(self.path, backup)
        except OSError as e:
            raise OSError(
                e.errno, f"JSONWriter cannot keep {self.path} of another run as {backup}: "
                f"{e.strerror}. Use another logdir or JSONWriter(logdir, overwrite=True).") from e
        self.backup_path = backup
        warnings.warn(
            f"{self.path} held {n} epochs of another run ({why}); it was kept as {backup} "
            "and a new stats.json is started. Pass JSONWriter(logdir, overwrite=True) to "
            "discard old files instead.", RuntimeWarning, stacklevel=3)

    def _continues_file(self, epoch_num: int, step: int) -> bool:
        earlier = [s for s in self.stats if s["epoch_num"] < epoch_num]
        last_step = max((s.get("global_step", 0) for s in earlier), default=0)
        return not (isinstance(last_step, (int, float)) and last_step > step)

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        if self._first_write:
            self._first_write = False
            earlier = [s.get("global_step", 0) for s in self.stats if s["epoch_num"] < epoch_num]
            why = new_run_reason(step, earlier, f" at epoch {epoch_num}")
            if why is not None:
                self._start_new_file(why)
            rerun = [s for s in self.stats if s["epoch_num"] >= epoch_num]
            if rerun:
                warnings.warn(
                    f"{self.path}: replacing {len(rerun)} entries from epoch {epoch_num} on, "
                    "written by an earlier run.", RuntimeWarning, stacklevel=2)
            self.stats = [s for s in self.stats if s["epoch_num"] < epoch_num]
        values = {k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}
        merge_epoch_row(self.stats, epoch_num, step, values)
        try:
            self._atomic_write(self.stats)
        except OSError as e:
            raise OSError(
                e.errno, f"JSONWriter could not write {self.path} ({e.strerror}); the previous "
                f"{self.FILENAME} is unchanged. Free space or use another logdir.") from e

    def _atomic_write(self, stats: list[dict]) -> None:
        atomic_write_json(self.path, stats)


class TFEventWriter(MonitorWriter):
    """Writes TensorBoard event files (scalars at the global step they were
    measured at: a value is never repeated at a later step). A re-run in the
    same ``logdir`` adds a new event file beside the old ones.

    Args:
        logdir: the directory of the event files (required).
        flush_secs: how often the writer flushes on its own.

    Example:

    ```python
    import tempfile
    from infer_callbacks import TFEventWriter

    writer = TFEventWriter(tempfile.mkdtemp())
    writer.setup(None)
    writer.write(1, 10, {"validation_loss": 0.5})
    writer.close()
    ```
    """

    step_series = True

    def __init__(self, logdir: str | os.PathLike, *, flush_secs: int = 30):
        self.logdir = prepare_logdir(logdir, "TFEventWriter")
        self.flush_secs = flush_secs
        self._writer = None

    def setup(self, model) -> None:
        import tensorflow as tf

        prepare_logdir(self.logdir, "TFEventWriter")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir, flush_millis=self.flush_secs * 1000)

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        import tensorflow as tf

        if self._writer is None:
            self.setup(None)
        with self._writer.as_default():
            for key, value in scalars.items():
                tf.summary.scalar(key, value, step=step)
        self._writer.flush()

    def write_images(self, epoch_num: int, step: int, images: dict[str, np.ndarray]) -> None:
        import tensorflow as tf

        if not images:
            return
        if self._writer is None:
            self.setup(None)
        checked = {key: as_image(key, value) for key, value in images.items()}
        with self._writer.as_default():
            for key, image in checked.items():
                tf.summary.image(key, image[None], step=step, max_outputs=1)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
