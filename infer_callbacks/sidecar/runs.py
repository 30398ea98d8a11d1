"""The sidecar across training runs: telling that a new run started in the
watched directory, keeping the earlier run's results aside, and saying
where checkpoints are when the watched directory has none.

A new training run in a ``ModelSaver`` directory moves the earlier run's
checkpoints into ``<checkpoint_dir>/run-<N>/``
(:mod:`infer_callbacks.checkpoints.run_dir`) and writes new ones under the
same names (``ckpt-<global step>``). The sidecar records how many such
directories it has seen; one more means a new run (also when the listed
checkpoints' steps went back past the last one evaluated, e.g. a directory
emptied by hand). Its own results of the earlier run (``stats.json``,
TensorBoard events, ``sidecar_state.json``) then move into
``<logdir>/run-<N>/``, as the savers do, and the new run's checkpoints are
evaluated from the first.
"""

from __future__ import annotations

import os
import re

from infer_callbacks._util import reserve_numbered
from infer_callbacks.checkpoints.run_dir import ASIDE_STEM

__all__ = ["aside_runs", "keep_results_aside", "checkpoints_nearby", "waiting_message"]

_ASIDE = re.compile(rf"^{ASIDE_STEM}-\d+$")
_RESULTS = re.compile(r"^(stats(-\d+)?\.json|sidecar_state\.json|events\.out\.tfevents\..*)$")
_CHECKPOINT_FILES = re.compile(r"^(checkpoint|checkpoints\.json|.*\.weights\.h5|.*\.keras|.*\.index)$")


def aside_runs(directory: str) -> int:
    """How many earlier runs' ``run-<N>`` directories ``directory`` holds."""
    try:
        return sum(1 for e in os.scandir(directory) if e.is_dir() and _ASIDE.match(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return 0


def keep_results_aside(logdir: str) -> str | None:
    """Move the sidecar's results in ``logdir`` into ``logdir/run-<N>``;
    its path, or ``None`` when there was nothing to move."""
    try:
        names = sorted(n for n in os.listdir(logdir) if _RESULTS.match(n))
    except FileNotFoundError:
        return None
    if not names:
        return None
    aside = reserve_numbered(logdir, ASIDE_STEM, is_dir=True)
    for name in sorted(names, key=lambda n: n != "sidecar_state.json"):  # the progress first
        os.replace(os.path.join(logdir, name), os.path.join(aside, name))
    return aside


def _holds_checkpoints(directory: str) -> bool:
    try:
        return any(_CHECKPOINT_FILES.match(n) for n in os.listdir(directory))
    except OSError:
        return False


def checkpoints_nearby(directory: str, limit: int = 5) -> list[str]:
    """Directories near ``directory`` that hold checkpoints: its
    sub-directories (two levels), its parent and the parent's other
    sub-directories; at most ``limit``, nearest first."""
    directory = os.path.normpath(os.path.abspath(directory))
    candidates: list[str] = []

    def subdirs(d: str) -> list[str]:
        try:
            return sorted(e.path for e in os.scandir(d) if e.is_dir() and not _ASIDE.match(e.name))
        except OSError:
            return []

    for sub in subdirs(directory):
        candidates += [sub] + subdirs(sub)
    parent = os.path.dirname(directory)
    if parent != directory:
        candidates += [parent] + [d for d in subdirs(parent) if d != directory]
    found = [os.path.relpath(d) for d in candidates if _holds_checkpoints(d)]
    return found[:limit]


def waiting_message(directory: str, checkpoint_format: str, timeout: float | None) -> str:
    """What a sidecar with no checkpoint yet says: what it waits for, whether
    it will stop, and the directories nearby that hold checkpoints."""
    what = "does not exist (yet)" if not os.path.exists(directory) else "holds no checkpoint yet"
    nearby = checkpoints_nearby(directory)
    hint = (f" Checkpoints were found in {nearby}: pass one of those as the checkpoint directory?"
            if nearby else "")
    stop = (f" It stops after {timeout} s without one (timeout)." if timeout is not None
            else " It waits until one appears (no timeout; stop it with Ctrl-C, or pass timeout=).")
    return (f"SidecarEvaluator: waiting for checkpoints in {directory!r}, which {what}: a ModelSaver's (or "
            f"keras.callbacks.ModelCheckpoint's, format {checkpoint_format!r}) files.{stop}{hint}")
