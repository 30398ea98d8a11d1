"""``JSONWriter``: ``logdir/stats.json``, a list of per-epoch rows, written atomically; a new run keeps an old file as ``stats-<N>.json``."""

from __future__ import annotations

import json
import math
import os
import warnings

from infer_callbacks._util import atomic_write_json, new_run_reason, reserve_numbered
from infer_callbacks._util.warn import warn_user
from infer_callbacks.monitors.writer import prepare_logdir, optimizer_step, merge_epoch_row, MonitorWriter

__all__ = ["JSONWriter"]


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
        rows, epochs = len(self.stats), len({s["epoch_num"] for s in self.stats})
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
        held = f"{epochs} epoch{'s' * (epochs != 1)}" + (f" ({rows} rows)" if rows != epochs else "")
        warn_user(
            f"{self.path} held {held} of another run ({why}); it was kept as {backup} "
            "and a new stats.json is started. Pass JSONWriter(logdir, overwrite=True) to "
            "discard old files instead.")

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
