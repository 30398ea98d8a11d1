"""``SidecarEvaluator``: the runner's validation pass on each checkpoint
that :class:`~infer_callbacks.ModelSaver` writes, in another process (on the
same machine or another one), so that training never stops to validate.

Who owns what:

| piece | owns |
| --- | --- |
| ``ModelSaver`` (training side) | the checkpoints, their ``checkpoint`` state file, the "finished" marker |
| ``SidecarEvaluator`` | when to evaluate which checkpoint; its progress (``sidecar_state.json``) |
| ``InferenceRunner`` (standalone) | the validation pass and the inferencers |
| ``Monitors`` | where each row goes (``stats.json``, TensorBoard, stdout) |

The loop, in short::

    while not stopped:
        finished = training_finished(checkpoint_dir)     # read before listing
        todo = [c for c in complete_checkpoints(checkpoint_dir) if c.number > last_done]
        if todo: evaluate(todo[0]); persist progress; continue
        if finished or timed out: stop
        wait(poll_seconds)                               # interruptible: stop()

A checkpoint is complete once its state file lists it (written
atomically after its files): TensorFlow's ``checkpoint``
(:mod:`~infer_callbacks.sidecar.tf_checkpoints`) or Keras-format
``checkpoints.json`` (:mod:`~infer_callbacks.sidecar.saver_files`).
``keras.callbacks.ModelCheckpoint``'s files are judged by
:mod:`~infer_callbacks.sidecar.keras_files`. The command-line entry is in
:mod:`infer_callbacks.sidecar.cli` (``python -m infer_callbacks.sidecar``).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any, Callable, Sequence


from infer_callbacks._util import atomic_write_json, require_tensorflow
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.monitors.callback import Monitors, MonitorWriter
from infer_callbacks.runner.inference_runner import InferenceRunner
from infer_callbacks.sidecar.arguments import check_model, check_monitors, positive
from infer_callbacks.sidecar import saver_files, tf_checkpoints
from infer_callbacks.sidecar.keras_files import KerasFiles, resolve_format
from infer_callbacks.sidecar.listed import Listed, pending
from infer_callbacks.checkpoints.run_dir import ASIDE_STEM
from infer_callbacks.sidecar.runs import aside_runs, keep_results_aside, waiting_message
from infer_callbacks.sidecar.state import STATE_FILENAME, load_state
from infer_callbacks.sidecar.tf_checkpoints import training_finished

__all__ = ["SidecarEvaluator"]

_RETRY = object()  # _evaluate: the file is not to be evaluated yet


class SidecarEvaluator:
    """Evaluates each checkpoint of a :class:`~infer_callbacks.ModelSaver`
    directory, in order, exactly once, with the given inferencers, while
    training goes on elsewhere.

    Each evaluation restores the checkpoint into ``model``, runs an
    :class:`~infer_callbacks.InferenceRunner` over ``input`` and writes one
    row, labelled with the checkpoint's epoch and global step, through
    ``monitors``. Progress is kept in ``logdir/sidecar_state.json`` (replaced
    atomically), so a restarted sidecar carries on after the last checkpoint
    it evaluated. A checkpoint that ``max_to_keep`` deleted before the
    sidecar got to it is skipped with a warning.

    Checkpoints are taken in the order of their number (``ckpt-<global
    step>``); a resumed run continues the directory, and a new training
    run in it (which moves the earlier run's checkpoints into ``run-<N>/``)
    is recognised: its checkpoints are evaluated from the first, the
    earlier results moved into ``logdir/run-<N>/``, with a warning
    (:mod:`~infer_callbacks.sidecar.runs`). While no checkpoint has come it
    says once what it waits for and where checkpoints were found nearby. The progress is written after the row: a sidecar killed
    in between evaluates that checkpoint again on restart, and its
    ``stats.json`` row is replaced, not repeated.

    ``ModelSaver``'s Keras-format checkpoints (on JAX and PyTorch, or
    with ``checkpoint_format="keras"``) are read the same way, on every
    backend: exactly those ``checkpoints.json`` lists, with the epoch and
    step listed there; never the ``MinSaver`` / ``MaxSaver`` files.
    Without ``checkpoints.json``, ``checkpoint_format="keras"`` (or
    ``"auto"`` finding such files) watches ``keras.callbacks.ModelCheckpoint``'s
    ``*.weights.h5`` / ``*.keras`` files instead, ordered by the epoch in
    their names, each read once complete (a newer file, the user's
    ``training_finished`` marker, or ``settle_seconds`` unchanged); rules:
    :mod:`infer_callbacks.sidecar.keras_files`.

    :meth:`run` returns when training wrote its "finished" marker and every
    checkpoint up to it was handled, after ``max_evaluations`` evaluations in
    this call, after ``timeout`` seconds without a new checkpoint, or when
    :meth:`stop` is called; :attr:`stop_reason` says which.

    Args:
        model: a built, compiled ``keras.Model`` of the same architecture as
            the trained one (or a function returning it); its weights are
            replaced by each checkpoint's.
        input: the validation input (as for ``InferenceRunner``).
        infs: an :class:`~infer_callbacks.Inferencer` or a list of them.
        checkpoint_dir: the ``ModelSaver`` directory to watch.
        logdir: where ``stats.json``, the TensorBoard run and
            ``sidecar_state.json`` go. Without it, rows are only printed and a
            restarted sidecar starts from the first checkpoint again.
        tower_func: as for ``InferenceRunner`` (default: the Keras tower).
        max_evaluations: stop after this many evaluations in one :meth:`run`.
        poll_seconds: how often to look for a new checkpoint.
        timeout: stop after this many seconds without a new checkpoint
            (default: wait until the "finished" marker or :meth:`stop`).
        monitors: a :class:`~infer_callbacks.Monitors` or a list of writers
            (default: ``ScalarPrinter`` plus, with ``logdir``, ``JSONWriter``
            and ``TFEventWriter``).
        checkpoint_format: ``"tensorflow"`` (``ModelSaver``'s TensorFlow
            checkpoints; TensorFlow backend only), ``"keras"``
            (``ModelSaver``'s Keras-format checkpoints, or
            ``ModelCheckpoint``'s files; any backend) or ``"auto"``:
            ``"keras"`` when the directory holds ``checkpoints.json`` or such
            files and no ``checkpoint`` state file, else ``"tensorflow"``
            (pass ``"keras"`` to watch an empty directory).
        settle_seconds: Keras files only: how long the newest file's size
            and time must stay the same before it is read, when neither a
            newer file nor the marker exists.
        **runner_options: keyword arguments of the
            :class:`~infer_callbacks.InferenceRunner` that validates (a dict
            ``input`` with ``combine=``, ``limit_batches=``, ``batch_size=``,
            ``keras_names=``, ...).

    Example:

    ```python
    # in another process, while ModelSaver("train_log/ckpt") trains:
    SidecarEvaluator(build_model(), val_ds, [ScalarStats("loss"), ClassificationError()],
                     "train_log/ckpt", logdir="train_log/sidecar").run()
    ```
    """

    def __init__(self, model: Any, input: Any, infs: Inferencer | Sequence[Inferencer],
                 checkpoint_dir: str | os.PathLike, *, logdir: str | os.PathLike | None = None,
                 tower_func: Callable[..., Any] | None = None, max_evaluations: int | None = None,
                 poll_seconds: float = 1.0, timeout: float | None = None,
                 monitors: Monitors | Sequence[MonitorWriter] | None = None, checkpoint_format: str = "auto",
                 settle_seconds: float = 10.0, **runner_options: Any):
        if checkpoint_dir is None or (isinstance(checkpoint_dir, str) and not checkpoint_dir):
            raise ValueError("`checkpoint_dir` must be the directory of a ModelSaver or of "
                             "keras.callbacks.ModelCheckpoint's files. "
                             f"Received: checkpoint_dir={checkpoint_dir!r}")
        self.checkpoint_dir = os.fspath(checkpoint_dir)
        for name, path in (("checkpoint_dir", self.checkpoint_dir), ("logdir", logdir)):
            if path is not None and os.path.exists(path) and not os.path.isdir(path):
                raise ValueError(f"`{name}` must be a directory, but {os.fspath(path)!r} is a file. Pass "
                                 f"the directory{' that holds the checkpoints' if name == 'checkpoint_dir' else ''}"
                                 f". Received: {name}={os.fspath(path)!r}")
        self.checkpoint_format = resolve_format(self.checkpoint_dir, checkpoint_format)
        if self.checkpoint_format == "tensorflow":
            require_tensorflow("SidecarEvaluator (reads ModelSaver's TensorFlow checkpoints)",
                               instead="For the files keras.callbacks.ModelCheckpoint writes "
                                       "(*.weights.h5, *.keras), pass checkpoint_format='keras'.")
        settle_seconds = positive("settle_seconds", settle_seconds, integer=False, optional=False)
        self._files = (None if self.checkpoint_format == "tensorflow"
                       else KerasFiles(self.checkpoint_dir, settle_seconds=settle_seconds))
        self._listing = tf_checkpoints  # a ModelSaver's listing: `listed`, `restore`
        self.logdir = None if logdir is None else os.fspath(logdir)
        self.max_evaluations = positive("max_evaluations", max_evaluations, integer=True, optional=True)
        self.poll_seconds = positive("poll_seconds", poll_seconds, integer=False, optional=False)
        self.timeout = positive("timeout", timeout, integer=False, optional=True)
        self.model = check_model(model)
        self.runner = InferenceRunner(input, infs, tower_func, **runner_options)
        self.monitors = check_monitors(monitors, self.logdir)
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self._state = self._load_state()
        self._announced = False  # the "waiting for checkpoints" warning, once per run()

    # -- public -------------------------------------------------------------

    @property
    def state_path(self) -> str | None:
        """``logdir/sidecar_state.json``, or ``None`` without a ``logdir``."""
        return None if self.logdir is None else os.path.join(self.logdir, STATE_FILENAME)

    @property
    def last_evaluated(self) -> int:
        """The number of the last checkpoint handled (0: none yet): for a
        ``ModelSaver``'s, its global step; for ``ModelCheckpoint``'s files,
        the epoch in its name (or how many were handled)."""
        return self._state["last_number"]

    def stop(self) -> None:
        """Ask :meth:`run` to return, from another thread; an evaluation
        under way finishes first. (From a signal handler, run :meth:`run` in
        a worker thread, as the command line does: a handler may interrupt
        the very lock this method takes.)"""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called and :meth:`run` has not returned yet."""
        return self._stop.is_set()

    def run(self) -> list[dict]:
        """Evaluate checkpoints until a stop condition (see the class
        docstring). Returns the rows written in this call, each
        ``{"checkpoint", "epoch_num", "global_step", **results}``."""
        self.stop_reason = None
        self._announced = False
        rows: list[dict] = []
        self.monitors.open(None)  # None: carry on an existing stats.json
        self.runner.set_model(self.model)
        began = False
        try:
            self.runner.before_train()  # binds, traces, inferencers' before_train
            began = True
            last_new = time.monotonic()
            while self.stop_reason is None:
                if self._stop.is_set():
                    self.stop_reason = "stopped"
                    break
                # The marker is read before the listing: once it is there,
                # the listing holds every checkpoint training will write.
                self._check_new_run()
                files = self._keras_files()
                finished = files.finished() if files is not None else training_finished(self.checkpoint_dir)
                todo = files.todo(self._state, finished) if files is not None else self._todo()
                if todo:
                    row = self._evaluate(todo[0])
                    if row is _RETRY:
                        continue  # not complete after all: it waits settle_seconds again
                    last_new = time.monotonic()
                    if row is not None:
                        rows.append(row)
                        if self.max_evaluations is not None and len(rows) >= self.max_evaluations:
                            self.stop_reason = "max_evaluations"
                    continue
                if finished:
                    self.stop_reason = "finished"
                    break
                if not self._announced and not self._state["evaluated"]:
                    self._announce_wait()
                wait = self.poll_seconds
                if self.timeout is not None:
                    left = self.timeout - (time.monotonic() - last_new)
                    if left <= 0:
                        self.stop_reason = "timeout"
                        warnings.warn(
                            f"SidecarEvaluator: no new checkpoint in {self.checkpoint_dir!r} for "
                            f"{self.timeout} s (timeout={self.timeout}) and no 'training finished' "
                            f"marker; stopping {self._where()}.",
                            RuntimeWarning, stacklevel=2)
                        break
                    wait = min(wait, left)
                self._stop.wait(wait)
        finally:
            self._stop.clear()  # a later run() starts afresh
            try:
                if began:
                    self.runner.after_train()  # inferencers' after_train
            finally:
                self.monitors.close()
        return rows

    def _where(self) -> str:
        done = self._state["evaluated"]
        return f"after {done[-1]!r}" if done else "before evaluating any checkpoint"

    # -- progress -----------------------------------------------------------

    def _load_state(self) -> dict:
        state = load_state(self.state_path, self.checkpoint_dir)
        state.setdefault("aside_runs", aside_runs(self.checkpoint_dir))  # earlier runs, known already
        return state

    def _check_new_run(self, why: str | None = None) -> None:
        """Start afresh when a new training run began in the directory
        (:mod:`~infer_callbacks.sidecar.runs`): earlier results aside, a warning."""
        runs = aside_runs(self.checkpoint_dir)
        if why is None and runs > self._state["aside_runs"]:
            why = f"its earlier checkpoints were moved to {ASIDE_STEM}-{runs}/"
        if why is None:
            return
        aside = None
        if self.logdir is not None:
            self.monitors.close()
            try:
                aside = keep_results_aside(self.logdir)
            finally:
                self.monitors.open(None)
        self._state = load_state(None, self.checkpoint_dir)
        self._state["aside_runs"] = runs
        self._save_state()
        kept = f"; the results of the earlier run were moved to {aside!r}" if aside else ""
        warnings.warn(f"SidecarEvaluator: a new training run started in {self.checkpoint_dir!r} ({why}): "
                      f"evaluating its checkpoints from the first{kept}.", RuntimeWarning, stacklevel=3)

    def _announce_wait(self) -> None:
        """Say once what it waits for, and where checkpoints are if not here."""
        self._announced = True
        warnings.warn(waiting_message(self.checkpoint_dir, self.checkpoint_format, self.timeout),
                      RuntimeWarning, stacklevel=3)

    def _save_state(self) -> None:
        if self.state_path is not None:
            atomic_write_json(self.state_path, self._state)

    def _skip(self, name: str, why: str) -> None:
        warnings.warn(f"SidecarEvaluator: skipping checkpoint {name!r} of {self.checkpoint_dir!r}: "
                      f"{why} Keep more checkpoints (ModelSaver(max_to_keep=...)) or evaluate "
                      "faster (a smaller validation set, another device).", RuntimeWarning, stacklevel=4)
        self._state["skipped"].append(name)

    def _keras_files(self) -> KerasFiles | None:
        """The ``ModelCheckpoint`` files watched, or ``None`` for a
        ``ModelSaver``'s listing (from the first look that finds
        ``checkpoints.json`` on)."""
        if self._files is not None and saver_files.is_saver_dir(self.checkpoint_dir):
            self._files, self._listing = None, saver_files
        return self._files

    def _todo(self) -> list[Listed]:
        """The listed checkpoints after the last one handled, ascending; those
        deleted before their turn are skipped here, with a warning."""
        listed = self._listing.listed(self.checkpoint_dir)
        if listed and max(c.number for c in listed) < self._state["last_number"]:
            self._check_new_run(f"its checkpoints go back to step {max(c.number for c in listed)}, before "
                                f"step {self._state['last_number']} evaluated")
        todo, skipped = pending(self._state, listed)
        for name in skipped:
            self._skip(name, "it was deleted (ModelSaver's max_to_keep) before its turn.")
        if skipped:
            self._save_state()
        return todo

    # -- one checkpoint -----------------------------------------------------

    def _evaluate(self, ckpt: Any) -> Any:
        if self._files is not None:  # a Keras-format file
            restored = self._files.restore(self.model, ckpt, self._state)
            if restored is None:
                self._save_state()
                return _RETRY
            epoch, step = restored
        else:
            try:
                epoch, step = self._listing.restore(self.model, ckpt)
            except FileNotFoundError:
                self._skip(ckpt.name, "it was deleted (ModelSaver's max_to_keep) while being read.")
                self._mark_done(ckpt)
                return None
            epoch = ckpt.number if epoch is None else epoch
        step = epoch if step is None else step
        results = dict(self.runner.trigger(epoch_num=epoch, global_step=step))
        for report in self.runner.pop_reports():  # monitor-only values and images too
            self.monitors.write(report.epoch_num, report.global_step,
                                {**report.scalars, **report.monitor_scalars}, report.images)
        self._state["evaluated"].append(ckpt.name)
        if self._files is not None:
            self._files.mark_done(self._state, ckpt, epoch)
            self._save_state()
        else:
            self._mark_done(ckpt)
        return {"checkpoint": ckpt.name, "epoch_num": epoch, "global_step": step, **results}

    def _mark_done(self, ckpt: Listed) -> None:
        self._state["last_number"] = ckpt.number
        self._state["seen"] = {n: name for n, name in self._state["seen"].items() if int(n) > ckpt.number}
        self._save_state()
