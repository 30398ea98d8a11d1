"""``Monitors``: write each epoch's results to stdout, ``stats.json`` and
TensorBoard. Monitors decide where numbers go, never what is measured."""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from typing import Any, Sequence

import keras
import numpy as np

from ._util import atomic_write_json

__all__ = ["Monitors", "MonitorWriter", "ScalarPrinter", "JSONWriter", "TFEventWriter"]


def _scalar(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "biuf":
        return float(value)
    if hasattr(value, "numpy"):
        return _scalar(np.asarray(value.numpy()))
    return None


def _prepare_logdir(logdir: Any, who: str) -> str:
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


def _image(key: str, value: Any) -> np.ndarray:
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


def _optimizer_step(model) -> int | None:
    """The model's global step (``optimizer.iterations``), if it has one."""
    iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
    if iterations is None:
        return None
    try:
        return int(np.asarray(iterations.numpy() if hasattr(iterations, "numpy") else iterations))
    except (TypeError, ValueError):
        return None


class MonitorWriter:
    """Base class of the writers held by :class:`Monitors`.

    Override ``write(epoch_num, step, scalars)``; optionally ``setup(model)``
    (called at ``on_train_begin``), ``write_images(epoch_num, step, images)``
    and ``close()``.
    """

    def setup(self, model: keras.Model | None) -> None:
        """Prepare to write; raise here for a bad configuration."""

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def write_images(self, epoch_num: int, step: int, images: dict[str, np.ndarray]) -> None:
        """Write the epoch's images, ``{name: H x W x C uint8 array}`` (e.g. a
        :class:`~infer_callbacks.ConfusionMatrix`). Default: ignore them."""

    def close(self) -> None:
        """Flush and release resources."""


class ScalarPrinter(MonitorWriter):
    """Prints the epoch's values as a table (tabulate).

    Args:
        whitelist: print only these keys (default: all).
        blacklist: never print these keys.
        file: where to print (default: ``sys.stdout`` at write time).
    """

    def __init__(self, whitelist: Sequence[str] | None = None, blacklist: Sequence[str] = (), *,
                 file=None):
        self.whitelist = None if whitelist is None else set(whitelist)
        self.blacklist = set(blacklist)
        self.file = file

    def format(self, epoch_num: int, step: int, scalars: dict[str, float]) -> str:
        from tabulate import tabulate

        rows = [[k, f"{v:.6g}"] for k, v in sorted(scalars.items())
                if (self.whitelist is None or k in self.whitelist) and k not in self.blacklist]
        return tabulate(rows, headers=[f"epoch {epoch_num}", f"step {step}"], tablefmt="simple",
                        disable_numparse=True)

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        import sys

        print(self.format(epoch_num, step, scalars), file=self.file or sys.stdout, flush=True)


class JSONWriter(MonitorWriter):
    """Keeps ``logdir/stats.json``: a list of per-epoch dicts with
    ``epoch_num`` (1-based) and ``global_step``.

    The file is replaced atomically (write to a temporary file, fsync,
    rename), so a crash never leaves a partial file. On a resumed run the
    existing entries are kept and entries of re-run epochs are replaced. A
    file that is not such a list is refused (and left untouched).
    """

    FILENAME = "stats.json"

    def __init__(self, logdir: str | os.PathLike, *, overwrite: bool = False):
        self.logdir = _prepare_logdir(logdir, "JSONWriter")
        self.path = os.path.join(self.logdir, self.FILENAME)
        self.overwrite = overwrite
        self.stats: list[dict] = []
        self._checked_continuity = False

    def setup(self, model) -> None:
        _prepare_logdir(self.logdir, "JSONWriter")
        self.stats = self.load(self.path)
        self._checked_continuity = False
        step = _optimizer_step(model)
        if self.stats and step == 0:
            if not self.overwrite:
                raise ValueError(
                    f"{self.path} already holds {len(self.stats)} epochs from another run, "
                    "and this run starts from step 0 (not a resume); it was left untouched. "
                    "Use another logdir, delete the file, or pass JSONWriter(logdir, overwrite=True).")
            self.stats = []

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

    def _check_continuity(self, epoch_num: int, step: int) -> None:
        earlier = [s for s in self.stats if s["epoch_num"] < epoch_num]
        last_step = max((s.get("global_step", 0) for s in earlier), default=0)
        if isinstance(last_step, (int, float)) and last_step > step:
            raise ValueError(
                f"{self.path} is from another run: its epoch {max(s['epoch_num'] for s in earlier)} "
                f"ended at global step {last_step}, but this run reached epoch {epoch_num} at "
                f"step {step}. The file was left untouched; use another logdir or "
                "JSONWriter(logdir, overwrite=True).")

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        if not self._checked_continuity:
            if self.overwrite:
                self.stats = [s for s in self.stats if s["epoch_num"] < epoch_num]
            else:
                self._check_continuity(epoch_num, step)
            self._checked_continuity = True
        dropped = [s for s in self.stats if s["epoch_num"] >= epoch_num]
        if dropped:
            warnings.warn(
                f"{self.path}: replacing {len(dropped)} entries from epoch {epoch_num} on, "
                "written by an earlier run.", RuntimeWarning, stacklevel=2)
        self.stats = [s for s in self.stats if s["epoch_num"] < epoch_num]
        entry = {"epoch_num": epoch_num, "global_step": step}
        entry.update({k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()})
        self.stats.append(entry)
        self._atomic_write(self.stats)

    def _atomic_write(self, stats: list[dict]) -> None:
        atomic_write_json(self.path, stats)


class TFEventWriter(MonitorWriter):
    """Writes TensorBoard event files (scalars at the global step).

    Args:
        logdir: the directory of the event files (required).
        flush_secs: how often the writer flushes on its own.
    """

    def __init__(self, logdir: str | os.PathLike, *, flush_secs: int = 30):
        self.logdir = _prepare_logdir(logdir, "TFEventWriter")
        self.flush_secs = flush_secs
        self._writer = None

    def setup(self, model) -> None:
        import tensorflow as tf

        _prepare_logdir(self.logdir, "TFEventWriter")
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
        checked = {key: _image(key, value) for key, value in images.items()}
        with self._writer.as_default():
            for key, image in checked.items():
                tf.summary.image(key, image[None], step=step, max_outputs=1)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Monitors(keras.callbacks.Callback):
    """A Keras callback that writes each epoch's ``logs`` to its writers.

    Every scalar in the epoch's ``logs`` is written: the training metrics
    and the results of the runners. Images the runners produced in the epoch
    (e.g. by :class:`~infer_callbacks.ConfusionMatrix`) go to each writer's
    ``write_images`` (``TFEventWriter`` writes them; the others ignore them).
    Keeps :attr:`history`, the list of scalars written.

    Args:
        writers: a list of :class:`MonitorWriter` (``ScalarPrinter()``,
            ``JSONWriter(logdir)``, ``TFEventWriter(logdir)``).

    Example:

    ```python
    model.fit(..., callbacks=[InferenceRunner(val_ds, ScalarStats("loss")),
                              Monitors([ScalarPrinter(), JSONWriter("train_log")])])
    ```
    """

    def __init__(self, writers: Sequence[MonitorWriter]):
        super().__init__()
        if isinstance(writers, MonitorWriter):
            writers = [writers]
        writers = list(writers)
        for w in writers:
            if not isinstance(w, MonitorWriter):
                raise TypeError(
                    "Monitors takes a list of writers (ScalarPrinter(), JSONWriter(logdir), "
                    f"TFEventWriter(logdir)). Received: {w!r}")
        self.writers = writers
        self.history: list[dict] = []

    def on_train_begin(self, logs=None) -> None:
        ready = []
        try:
            for w in self.writers:
                w.setup(self.model)
                ready.append(w)
        except BaseException:
            for w in ready:  # e.g. a TFEventWriter opened before a JSONWriter refused
                w.close()
            raise

    def _global_step(self, epoch: int) -> int:
        step = _optimizer_step(self.model)
        return epoch + 1 if step is None else step

    def on_epoch_end(self, epoch, logs=None) -> None:
        scalars = {}
        for key, value in (logs or {}).items():
            v = _scalar(value)
            if v is not None:
                scalars[key] = v
        epoch_num = epoch + 1
        step = self._global_step(epoch)
        self.history.append({"epoch_num": epoch_num, "global_step": step, **scalars})
        for w in self.writers:
            w.write(epoch_num, step, scalars)
        images = self._take_images()
        if images:
            for w in self.writers:
                w.write_images(epoch_num, step, images)

    def _take_images(self) -> dict[str, np.ndarray]:
        """The images the runners published on the model since the last
        epoch end (they are not Keras ``logs``: History and CSVLogger expect
        scalars there); taken, so each is written once."""
        published = getattr(self.model, "_infer_callbacks_images", None) if self.model is not None else None
        if not published:
            return {}
        images = dict(published)
        published.clear()
        return images

    def on_train_end(self, logs=None) -> None:
        for w in self.writers:
            w.close()
