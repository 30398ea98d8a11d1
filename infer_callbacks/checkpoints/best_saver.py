"""``BestSaver``, the callback behind ``MinSaver`` / ``MaxSaver``: when
to decide (the epoch's logs whatever its place in the list, a
``PeriodicTrigger``'s call), which weights a value measured (an asynchronous
runner's snapshot) and the files it writes. Which checkpoints stay is
:mod:`~infer_callbacks.checkpoints.best_list`'s rule; the public classes and
the file table are in :mod:`~infer_callbacks.checkpoints.savers`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Sequence

import keras

from infer_callbacks.checkpoints import any_format, keras_format, run_dir
from infer_callbacks.checkpoints.best_list import BestList, check_keep_best
from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util.copying import copy_callback
from infer_callbacks._util.warn import warn_user
from infer_callbacks._util import atomic_write_json, global_step
from infer_callbacks.checkpoints.model_saver import ModelSaver, chief_of, prepare_checkpoint_dir
from infer_callbacks.fit import keras_glue

__all__ = ["BestSaver"]


class BestSaver(ChiefOnly, keras.callbacks.Callback):  # files: the chief's, whatever chief_only
    """Keeps the checkpoints of the ``keep_best`` epochs with the best ``monitor`` values."""

    mode = "min"

    def __init__(self, monitor: str | None, *, reverse: bool, filename: str | None,
                 checkpoint_dir: str | os.PathLike | None, monitor_stat: str | None,
                 checkpoint_format: str = "auto", keep_best: int = 1):
        super().__init__()
        self.keep_best = check_keep_best(keep_best)
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
        self._list = BestList(self.mode, self.keep_best)

    def __deepcopy__(self, memo: dict) -> "BestSaver":
        """The same settings, no best value and no ``fit`` (keras-tuner copies
        callbacks for every trial); the directory is the given one again."""
        new = copy_callback(self, memo, fresh={
            "_fit_run": lambda: None, "_pending": lambda: None, "_producers": list, "_epoch": int,
            "best": lambda: None, "best_epoch": lambda: None})
        new.checkpoint_dir = new._given_dir
        new._list = BestList(new.mode, new.keep_best)
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
    def kept(self) -> list[dict]:
        """The kept checkpoints, best first: ``value``, ``epoch``,
        ``global_step``, ``checkpoint`` (a name in :attr:`checkpoint_dir`)."""
        return [dict(e) for e in self._list.kept]

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

    def _name(self, epoch: int) -> str:
        return f"{self.filename}-{epoch + 1}" + (keras_format.SUFFIX if self._format == "keras" else "")

    # -- Keras hooks --------------------------------------------------------

    def set_model(self, model) -> None:
        super().set_model(model)
        self._fit_run = keras_glue.join(self)

    def on_train_begin(self, logs=None) -> None:
        self.checkpoint_dir = prepare_checkpoint_dir(self._find_checkpoint_dir(), type(self).__name__)
        self._chief = chief_of(self.model)
        self._pending = None
        self.best = self.best_epoch = None
        self._list = BestList(self.mode, self.keep_best)
        # Asynchronous runners hold the weights their results measure.
        self._producers = [cb for cb in (self._fit_run.producers(exclude=self) if self._fit_run is not None else ())
                           if callable(getattr(cb, "snapshot_weights", None))]
        if self._chief:  # a new run moves an earlier run's best aside (run_dir.py)
            run_dir.start_run(self.checkpoint_dir, global_step(self.model), type(self).__name__)
        state = self._read_state()
        if state is not None:  # resume: the best so far survives a restart
            if (state.get("monitor", self.monitor), state.get("mode", self.mode)) != (self.monitor, self.mode):
                raise ValueError(f"{self.state_path} records the {state.get('mode')} of "
                                 f"{state.get('monitor')!r}, not the {self.mode} of {self.monitor!r}. "
                                 "Pass another filename= or checkpoint_dir=.")
            try:
                dropped = self._list.load(state)
            except ValueError as e:
                raise ValueError(f"{self.state_path}: {e}; it was left untouched. Move it away or use "
                                 "another checkpoint_dir.") from e
            self.best, self.best_epoch = float(state["best"]), int(state["epoch"])
            if dropped and self._chief:  # keep_best is smaller than the recorded run's
                atomic_write_json(self.state_path, self._list.state(self.monitor))
                for name in dropped:
                    any_format.remove(os.path.join(self.checkpoint_dir, name))

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
            warn_user(f"{type(self).__name__}: {self.monitor!r} is not in the logs of epoch "
                      f"{epoch + 1} (available: {sorted(logs)}); nothing saved.")

    def _decide(self, epoch: int, logs: dict) -> None:
        value = logs[self.monitor]
        value = float(value.numpy() if hasattr(value, "numpy") else value)
        if self._list.accepts(value, self._name(epoch)):
            measured, weights = self._validated(epoch, logs)
            if measured == epoch or self._list.accepts(value, self._name(measured)):
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
                warn_user(f"{type(self).__name__}: the weights of epoch {measured}, which "
                          f"{self.monitor!r} measures, are no longer held; saving the current "
                          "weights instead.")
        return epoch, None

    def _save(self, epoch: int, value: float, weights: Sequence[Any] | None = None) -> None:
        """Save the model (or ``weights``, aligned with ``model.weights``)
        as one of the best, measured at epoch ``epoch`` (0-based): the
        checkpoint, then the state file (atomically), then the removal of
        the checkpoint it no longer keeps."""
        step = global_step(self.model)
        name = self._name(epoch)
        if not self._chief:  # take part, write nothing that lasts
            tmp = tempfile.mkdtemp(prefix="bestsaver-")
            try:
                self._write(os.path.join(tmp, name), epoch, step, weights)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self._list.add(value, epoch + 1, step, name)
            self._set_best()
            return
        self._write(os.path.join(self.checkpoint_dir, name), epoch, step, weights)
        dropped = self._list.add(value, epoch + 1, step, name)
        self._set_best()
        atomic_write_json(self.state_path, self._list.state(self.monitor))
        for old in dropped:
            any_format.remove(os.path.join(self.checkpoint_dir, old))

    def _set_best(self) -> None:
        best = self._list.best
        self.best, self.best_epoch = (None, None) if best is None else (best["value"], best["epoch"])

    def _write(self, path: str, epoch: int, step: int, weights: Sequence[Any] | None) -> None:
        any_format.write(self.model, path, self._format, weights=weights, epoch=epoch + 1, global_step=step)
