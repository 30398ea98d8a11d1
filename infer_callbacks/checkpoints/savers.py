"""Checkpoints during training: ``ModelSaver`` (the latest N) and
``MinSaver`` / ``MaxSaver`` (the best by a logged statistic).

Checkpoints use the layout of :mod:`infer_callbacks.checkpoints.layout` (weights
named by attribute, the optimizer's state, ``epoch`` and ``global_step``) on
Keras's TensorFlow backend, Keras ``.weights.h5`` files on any other
(:mod:`~infer_callbacks.checkpoints.keras_format`, the same rules), so
training resumes where it stopped (``TrainConfig(session_init=dir)``, or
``model.fit(initial_epoch=ModelSaver.restore(model, dir))``) and
``PredictConfig`` / ``SidecarEvaluator`` read them.

Files a ``ModelSaver`` directory holds, and who reads them:

| file | written | rule for readers |
| --- | --- | --- |
| ``ckpt-<global_step>.index/.data-*`` | at each save | **a checkpoint is complete once listed in the state file** |
| ``checkpoint`` (the state file) | after the checkpoint's files, atomically | :func:`infer_callbacks.checkpoints.layout.list_checkpoints` |
| ``training_finished`` (JSON: ``epoch``, ``global_step``, ``checkpoint``) | in ``on_train_end``, atomically | training is over: nothing more will be listed |
| ``min-<stat>-<epoch>.*`` + ``min-<stat>.json`` | by ``MinSaver`` / ``MaxSaver`` | the JSON names the best checkpoint |
| ``run-<N>/`` | when a new run starts in the directory | an earlier run's files, a directory of this layout (:mod:`~infer_callbacks.checkpoints.run_dir`) |

Under ``MultiWorkerMirroredStrategy`` every worker takes part in each save
(reading distributed variables may need the other workers) but only the
chief writes to the checkpoint directory; the others write to a temporary
directory that is removed at once.

Saving other weights than the model's (the snapshot an asynchronous
validation measured): ``saver._save(epoch, weights=...)`` with a list aligned
with ``model.weights`` (``_BestSaver._save(epoch, value, weights=...)``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from typing import Any, Sequence

import keras

from infer_callbacks.checkpoints import any_format, keras_format, run_dir
from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util.copying import copy_callback
from infer_callbacks._util import atomic_write_json
from infer_callbacks.checkpoints.model_saver import ModelSaver, _chief, _global_step, _prepare_dir
from infer_callbacks.fit import keras_glue

__all__ = ["ModelSaver", "MinSaver", "MaxSaver"]


class _BestSaver(ChiefOnly, keras.callbacks.Callback):  # files: the chief's, whatever chief_only
    """Keeps the checkpoint of the epoch with the best ``monitor`` value."""

    mode = "min"

    def __init__(self, monitor: str | None, *, reverse: bool, filename: str | None,
                 checkpoint_dir: str | os.PathLike | None, monitor_stat: str | None,
                 checkpoint_format: str = "auto"):
        super().__init__()
        self._format = keras_format.resolve_format(checkpoint_format, type(self).__name__)
        if not isinstance(reverse, bool):
            raise TypeError(f"`reverse` must be a bool. Received: reverse={reverse!r}")
        if monitor is not None and monitor_stat is not None and monitor != monitor_stat:
            raise ValueError("Pass the statistic once, as `monitor` or as tensorpack's `monitor_stat`. "
                             f"Received: monitor={monitor!r}, monitor_stat={monitor_stat!r}")
        monitor = monitor if monitor is not None else monitor_stat
        if not isinstance(monitor, str) or not monitor:
            raise ValueError("`monitor` must be the name of a logged value such as "
                             f"'validation_error'. Received: monitor={monitor!r}")
        if reverse:
            self.mode = "max" if self.mode == "min" else "min"
        self.monitor = monitor
        self._given_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.checkpoint_dir = self._given_dir  # this run's: the given one, or its ModelSaver's
        self._fit_run: keras_glue.Run | None = None
        self.filename = filename or f"{self.mode}-{monitor}"
        if os.sep in self.filename or self.filename.startswith("."):
            raise ValueError(f"`filename` must be a plain file name. Received: filename={self.filename!r}")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._epoch = 0
        self._pending: tuple[int, dict] | None = None

    def __deepcopy__(self, memo: dict) -> "_BestSaver":
        """The same settings, no best value and no ``fit`` (keras-tuner copies
        callbacks for every trial); the directory is the given one again."""
        new = copy_callback(self, memo, fresh={
            "_fit_run": lambda: None, "_pending": lambda: None, "_producers": list, "_epoch": int,
            "best": lambda: None, "best_epoch": lambda: None})
        new.checkpoint_dir = new._given_dir
        return new

    @property
    def monitor_stat(self) -> str:
        """tensorpack's name for :attr:`monitor`."""
        return self.monitor

    @property
    def state_path(self) -> str:
        """The JSON file recording the best value, its epoch and checkpoint."""
        return os.path.join(self.checkpoint_dir, self.filename + ".json")

    @property
    def checkpoint_path(self) -> str | None:
        """The best checkpoint (a TensorFlow checkpoint's prefix, a Keras
        file's path), or ``None``."""
        state = self._read_state()
        return None if state is None else os.path.join(self.checkpoint_dir, state["checkpoint"])

    def _find_checkpoint_dir(self) -> str:
        if self._given_dir is not None:
            return self._given_dir
        for saver in self._fit_run.find(ModelSaver) if self._fit_run is not None else ():
            return saver.checkpoint_dir
        if self._fit_run is None:
            keras_glue.warn_unjoined(self, "it cannot find a ModelSaver's directory")
        raise ValueError(f"{type(self).__name__}({self.monitor!r}) needs a directory: pass "
                         "checkpoint_dir=... or add a ModelSaver to the same callbacks.")

    def _read_state(self) -> dict | None:
        if self.checkpoint_dir is None or not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path) as f:
                state = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.state_path} exists but cannot be read ({e}); it was left "
                             "untouched. Move it away or use another checkpoint_dir.") from e
        if not isinstance(state, dict) or not {"best", "epoch", "checkpoint"} <= set(state):
            raise ValueError(f"{self.state_path} is not a {type(self).__name__} state file; it was "
                             "left untouched. Move it away or use another checkpoint_dir.")
        return state

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    # -- Keras hooks --------------------------------------------------------

    def set_model(self, model) -> None:
        super().set_model(model)
        self._fit_run = keras_glue.join(self)

    def on_train_begin(self, logs=None) -> None:
        self.checkpoint_dir = _prepare_dir(self._find_checkpoint_dir(), type(self).__name__)
        self._chief = _chief(self.model)
        self._pending = None
        self.best = self.best_epoch = None
        # Asynchronous runners hold the weights their results measure.
        self._producers = [cb for cb in (self._fit_run.producers(exclude=self) if self._fit_run is not None else ())
                           if callable(getattr(cb, "snapshot_weights", None))]
        if self._chief:  # a new run moves an earlier run's best aside (run_dir.py)
            run_dir.start_run(self.checkpoint_dir, _global_step(self.model), type(self).__name__)
        state = self._read_state()
        if state is not None:  # resume: the best so far survives a restart
            if (state.get("monitor", self.monitor), state.get("mode", self.mode)) != (self.monitor, self.mode):
                raise ValueError(f"{self.state_path} records the {state.get('mode')} of "
                                 f"{state.get('monitor')!r}, not the {self.mode} of {self.monitor!r}. "
                                 "Pass another filename= or checkpoint_dir=.")
            self.best, self.best_epoch = float(state["best"]), int(state["epoch"])

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._resolve()
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._resolve()
        self._epoch = epoch
        if logs is None:
            return
        if self.monitor in logs:
            self._decide(epoch, logs)
        else:
            # Under fit, the runner producing `monitor` may come later in the
            # list: decide once every callback has seen this epoch's logs.
            self._pending = (epoch, logs)

    def trigger(self, logs=None) -> None:
        """Decide now on ``logs`` (what a ``PeriodicTrigger`` calls); logs
        without ``monitor`` (no validation at this step) are skipped."""
        if logs and self.monitor in logs:
            self._decide(self._epoch, logs)

    def on_train_end(self, logs=None) -> None:
        self._resolve()

    def _resolve(self) -> None:
        if self._pending is None:
            return
        epoch, logs = self._pending
        self._pending = None
        if self.monitor in logs:
            self._decide(epoch, logs)
        elif not any(getattr(p, "asynchronous", False) for p in getattr(self, "_producers", [])):
            # (an asynchronous runner's results reach only some epochs)
            warnings.warn(f"{type(self).__name__}: {self.monitor!r} is not in the logs of epoch "
                          f"{epoch + 1} (available: {sorted(logs)}); nothing saved.",
                          RuntimeWarning, stacklevel=2)

    def _decide(self, epoch: int, logs: dict) -> None:
        value = logs[self.monitor]
        value = float(value.numpy() if hasattr(value, "numpy") else value)
        if math.isfinite(value) and self._better(value):
            measured, weights = self._validated(epoch, logs)
            self._save(measured, value, weights=weights)

    def _validated(self, epoch: int, logs: dict) -> tuple[int, Any]:
        """The epoch (0-based) whose weights ``logs`` measure, and those
        weights when an asynchronous runner measured an earlier epoch than
        the one just ended (``None``: the model's current weights)."""
        for producer in getattr(self, "_producers", []):
            key = getattr(producer, "epoch_key", None)
            if key in logs and int(logs[key]) != epoch + 1:
                measured = int(logs[key])
                weights = producer.snapshot_weights(measured)
                if weights is not None:
                    return measured - 1, weights
                warnings.warn(f"{type(self).__name__}: the weights of epoch {measured}, which "
                              f"{self.monitor!r} measures, are no longer held; saving the current "
                              "weights instead.", RuntimeWarning, stacklevel=3)
        return epoch, None

    def _save(self, epoch: int, value: float, weights: Sequence[Any] | None = None) -> None:
        """Save the model (or ``weights``, aligned with ``model.weights``) as
        the best so far, measured at epoch ``epoch`` (0-based)."""
        step = _global_step(self.model)
        self.best, self.best_epoch = value, epoch + 1
        name = f"{self.filename}-{epoch + 1}" + (keras_format.SUFFIX if self._format == "keras" else "")
        if not self._chief:  # take part, write nothing that lasts
            tmp = tempfile.mkdtemp(prefix="bestsaver-")
            try:
                self._write(os.path.join(tmp, name), epoch, step, weights)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        old = self._read_state()
        self._write(os.path.join(self.checkpoint_dir, name), epoch, step, weights)
        atomic_write_json(self.state_path, {"monitor": self.monitor, "mode": self.mode, "best": value,
                                            "epoch": epoch + 1, "global_step": step, "checkpoint": name})
        if old is not None and old["checkpoint"] != name:
            any_format.remove(os.path.join(self.checkpoint_dir, old["checkpoint"]))

    def _write(self, path: str, epoch: int, step: int, weights: Sequence[Any] | None) -> None:
        any_format.write(self.model, path, self._format, weights=weights, epoch=epoch + 1, global_step=step)


class MinSaver(_BestSaver):
    """Keeps the checkpoint with the smallest ``monitor``: ``<filename>-<epoch>``
    next to ``<filename>.json`` (the best value, epoch, step and checkpoint;
    replaced atomically, read back on a resume; a new run moves it aside
    into ``run-<N>/`` and starts with no best). Default filename
    ``min-<monitor>``. It reads ``monitor`` from the epoch's ``logs``
    whatever its place relative to the runner; works under ``fit`` and
    inside ``PeriodicTrigger``.

    Args:
        monitor: a key of the logs, e.g. ``'validation_error'``
            (tensorpack's ``monitor_stat``, also accepted by that name).
        reverse: keep the largest instead (tensorpack's argument).
        filename: the checkpoint's base name.
        checkpoint_dir: default: the directory of a :class:`ModelSaver`
            among the same callbacks.
        checkpoint_format: as :class:`ModelSaver`'s (``"auto"``: Keras
            ``<filename>-<epoch>.weights.h5`` files on a backend other than TensorFlow).

    Example:

    ```python
    callbacks=[MinSaver(monitor_stat="validation_error", checkpoint_dir="train_log"),
               InferenceRunner(val_ds, ClassificationError())]
    ```
    """

    mode = "min"

    def __init__(self, monitor: str | None = None, reverse: bool = False, filename: str | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, *, monitor_stat: str | None = None,
                 checkpoint_format: str = "auto"):
        super().__init__(monitor, reverse=reverse, filename=filename, checkpoint_dir=checkpoint_dir,
                         monitor_stat=monitor_stat, checkpoint_format=checkpoint_format)


class MaxSaver(_BestSaver):
    """Keeps the checkpoint with the largest ``monitor`` (``max-<monitor>``);
    otherwise as :class:`MinSaver`.

    Example: ``PeriodicTrigger(MaxSaver(monitor_stat="val_accuracy"), every_k_steps=250)``.
    """

    mode = "max"

    def __init__(self, monitor: str | None = None, filename: str | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, *, monitor_stat: str | None = None,
                 checkpoint_format: str = "auto"):
        super().__init__(monitor, reverse=False, filename=filename, checkpoint_dir=checkpoint_dir,
                         monitor_stat=monitor_stat, checkpoint_format=checkpoint_format)
