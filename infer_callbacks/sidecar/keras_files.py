"""Keras-format weights files as the sidecar's checkpoints, on every backend:
the ``*.weights.h5`` files ``keras.callbacks.ModelCheckpoint(...,
save_weights_only=True)`` writes, and the ``*.keras`` model files it writes
otherwise (only their weights are loaded, with ``model.load_weights``).

Who owns what:

| piece | owns |
| --- | --- |
| ``ModelCheckpoint`` (training side) | the files; it writes each one in place, not atomically |
| the user (training side, optional) | the ``training_finished`` marker file, written after ``fit`` returns |
| :class:`KerasFiles` | which files exist, their order, when one is complete, loading one |
| ``SidecarEvaluator`` | when to evaluate; the progress file (:class:`KerasFiles` keeps its part there) |

A directory holding ``ModelSaver``'s ``checkpoints.json`` is not read by
these rules: the sidecar evaluates what that file lists
(:mod:`infer_callbacks.sidecar.saver_files`).

Rules (also in docs/async.md):

- **Order**: by the epoch number in the file's name (the number after the
  word ``epoch``, else the first number: ``epoch003.weights.h5``,
  ``model.05-0.23.keras``), then modification time, then name; files whose
  name has no number come after the numbered ones, by modification time then
  name.
- **Complete** (never read before): a file is read once the marker exists,
  or once a file that comes after it in that order, modified no earlier,
  exists (``ModelCheckpoint`` closed it before starting the next one), or
  once its size and modification time stayed the same over ``settle_seconds``
  of looks. If it still cannot be read then, it is taken as still being
  written: a ``RuntimeWarning`` names it and the error, and it waits another
  ``settle_seconds``. A file certified by a newer one or the marker that
  cannot be read is damaged: skipped with a warning (a model that does not
  match it raises, as for TensorFlow checkpoints).
- **Once each**: a file is handled once per version (name, modification
  time and size): one rewritten in place (``save_best_only=True`` with a fixed name)
  is evaluated again.
- **Rows**: ``epoch_num`` is the number in the name, else how many files were
  handled, this one included; ``global_step`` is the optimizer's
  ``iterations`` stored in the file (Keras stores it when the model was
  compiled), else ``epoch_num``.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from typing import Any, Callable, NamedTuple

import keras

from infer_callbacks.checkpoints import keras_format

__all__ = ["FORMATS", "FINISHED_MARKER", "KerasFile", "KerasFiles", "epoch_of", "list_files", "resolve_format"]

FORMATS = ("auto", "tensorflow", "keras")
SUFFIXES = (".weights.h5", ".keras")
FINISHED_MARKER = "training_finished"  # the same name as ModelSaver's marker
_EPOCH_WORD = re.compile(r"epoch[_\-.=]?(\d+)", re.I)
_NUMBER = re.compile(r"\d+")


class KerasFile(NamedTuple):
    """One weights file: its name, path, epoch (from the name, or ``None``),
    size and modification time (ns)."""

    name: str
    path: str
    epoch: int | None
    size: int
    mtime_ns: int

    def order(self) -> tuple:
        numbered = self.epoch is not None
        return (0 if numbered else 1, self.epoch or 0, self.mtime_ns, self.name)


def epoch_of(name: str) -> int | None:
    """The epoch number in a file name: after the word ``epoch``, else the
    first number; ``None`` when there is none."""
    stem = next((name[:-len(s)] for s in SUFFIXES if name.endswith(s)), name)
    match = _EPOCH_WORD.search(stem) or _NUMBER.search(stem)
    if match is None:
        return None
    return int(match.group(1) if match.re is _EPOCH_WORD else match.group(0))


def list_files(directory: str) -> list[KerasFile]:
    """The Keras-format files of ``directory`` (hidden ones excepted), in order."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(SUFFIXES):
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:  # deleted between listing and stat
            continue
        out.append(KerasFile(entry.name, entry.path, epoch_of(entry.name), st.st_size, st.st_mtime_ns))
    return sorted(out, key=KerasFile.order)


def resolve_format(directory: str, checkpoint_format: Any) -> str:
    """``"tensorflow"`` or ``"keras"``. ``"auto"``: ``"tensorflow"`` when the
    directory has TensorFlow's ``checkpoint`` state file, else ``"keras"``
    when it holds ``ModelSaver``'s ``checkpoints.json`` or ``*.weights.h5`` /
    ``*.keras`` files, else the backend's own: ``"tensorflow"`` on
    TensorFlow (pass ``"keras"`` there to watch an empty directory for Keras
    files), ``"keras"`` on any other backend (it has no TensorFlow checkpoints)."""
    if checkpoint_format not in FORMATS:
        raise ValueError(f"`checkpoint_format` must be one of {list(FORMATS)}. "
                         f"Received: checkpoint_format={checkpoint_format!r}")
    if checkpoint_format != "auto":
        return checkpoint_format
    if os.path.exists(os.path.join(directory, "checkpoint")):
        return "tensorflow"
    if os.path.exists(os.path.join(directory, keras_format.STATE_FILE)):
        return "keras"  # a ModelSaver's Keras-format checkpoints
    if list_files(directory) or keras.backend.backend() != "tensorflow":
        return "keras"
    return "tensorflow"


class KerasFiles:
    """The sidecar's view of a directory of Keras-format weights files (see
    the module docstring for the rules).

    Args:
        directory: the directory ``ModelCheckpoint`` writes into.
        settle_seconds: how long a file's size and modification time must
            stay the same before it is read, when neither a newer file nor
            the marker says it is complete.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, directory: str, *, settle_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._looks: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, since)
        self._certified: set[tuple[str, int]] = set()
        self._warned: set[tuple[str, int, int]] = set()

    def finished(self) -> bool:
        """Whether the user's ``training_finished`` marker is in the directory."""
        return os.path.exists(os.path.join(self.directory, FINISHED_MARKER))

    def todo(self, state: dict, finished: bool) -> list[KerasFile]:
        """The complete files not handled yet, in order (``finished``: the
        marker was there before this listing, so every file listed is
        complete)."""
        done = state.setdefault("files", {})  # name -> [mtime_ns, size] handled
        now = self._clock()
        listed = list_files(self.directory)
        out = []
        for i, f in enumerate(listed):
            if done.get(f.name) == [f.mtime_ns, f.size]:
                continue
            size, mtime, since = self._looks.get(f.name, (None, None, now))
            if (size, mtime) != (f.size, f.mtime_ns):
                since = now  # new, or changed since the last look
            self._looks[f.name] = (f.size, f.mtime_ns, since)
            newer = any(g.mtime_ns >= f.mtime_ns for g in listed[i + 1:])
            if finished or newer:
                self._certified.add((f.name, f.mtime_ns))
                out.append(f)
            elif now - since >= self.settle_seconds:
                out.append(f)
        return out

    def restore(self, model: keras.Model, f: KerasFile, state: dict) -> tuple[int, int | None] | None:
        """Load ``f``'s weights into ``model``; ``(epoch_num, global_step or
        None)``, or ``None`` when it is not to be evaluated now (still being
        written, gone, or damaged and skipped)."""
        optimizer = getattr(model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        before = None if iterations is None else _int(iterations)
        if iterations is not None:
            iterations.assign(-1)  # tells "the file stored a step" from "it did not"
        try:
            model.load_weights(f.path)
        except FileNotFoundError:
            self._looks.pop(f.name, None)  # gone: no longer listed
            return None
        except Exception as e:  # noqa: BLE001 - h5py, zipfile and Keras raise various types
            if (f.name, f.mtime_ns) not in self._certified:
                self._not_yet(f, e)
                return None
            if isinstance(e, ValueError):
                raise ValueError(f"{f.path!r} does not match the model ({e}). Give the sidecar a model "
                                 "built as the trained one.") from e
            warnings.warn(f"SidecarEvaluator: skipping {f.path!r}: it cannot be read although a newer "
                          f"file (or the 'training_finished' marker) exists ({type(e).__name__}: {e}).",
                          RuntimeWarning, stacklevel=4)
            state.setdefault("skipped", []).append(f.name)
            self.mark_done(state, f, None)
            return None
        step = None if iterations is None else _int(iterations)
        if step is not None and step < 0:
            iterations.assign(before)
            step = None
        epoch = f.epoch if f.epoch is not None else state.get("handled", 0) + 1
        return epoch, step

    def mark_done(self, state: dict, f: KerasFile, epoch: int | None) -> None:
        """Record ``f`` (this version of it) as handled."""
        state.setdefault("files", {})[f.name] = [f.mtime_ns, f.size]
        state["handled"] = state.get("handled", 0) + 1
        if epoch is not None:
            state["last_number"] = epoch
        self._looks.pop(f.name, None)

    def _not_yet(self, f: KerasFile, error: Exception) -> None:
        """``f`` cannot be read yet: wait another ``settle_seconds``."""
        self._looks[f.name] = (f.size, f.mtime_ns, self._clock())
        if (f.name, f.size, f.mtime_ns) not in self._warned:
            self._warned.add((f.name, f.size, f.mtime_ns))
            warnings.warn(f"SidecarEvaluator: {f.path!r} cannot be read yet ({type(error).__name__}: "
                          f"{error}); taken as still being written, trying again in "
                          f"{self.settle_seconds} s (settle_seconds) or once a newer file exists.",
                          RuntimeWarning, stacklevel=4)


def _int(variable: Any) -> int:
    return int(keras.ops.convert_to_numpy(variable.value))
