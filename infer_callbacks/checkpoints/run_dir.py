"""A checkpoint directory across runs: telling a new run from a resume, and
keeping an earlier run's files when a new run starts in the same directory.

``ModelSaver``, ``MinSaver`` and ``MaxSaver`` call :func:`start_run` in
``on_train_begin`` (on the chief). The rule is ``JSONWriter``'s for
``stats.json`` (:func:`infer_callbacks._util.new_run_reason`):

| the model's global step when training begins | what happens |
| --- | --- |
| past 0, and no step recorded in the directory is past it (it restored the latest checkpoint: ``fit(initial_epoch=ModelSaver.restore(model, dir))``, ``TrainConfig(session_init=dir)``; or the same model is trained on) | **resume**: the directory is continued in place, ``MinSaver``'s best so far stands |
| 0 (nothing restored), or before a step the directory records (an older checkpoint was restored) | **new run**: every file of the earlier run moves into ``<dir>/run-<N>/`` (the next free ``N``), with a warning naming it; the new run starts with no checkpoint and no best value |

The files moved are the run's, and only those: ``ckpt-<step>.*`` (also
``ckpt-<step>.weights.h5``, the Keras format), the ``checkpoint`` state file
(``checkpoints.json`` in the Keras format), ``training_finished``, and each best saver's
state file (``<filename>.json``) with its checkpoints (all it keeps). Other files
(``stats.json``, event files, a sidecar's state) stay. The moved directory is
a complete ``ModelSaver`` directory (the state file names checkpoints
relative to it): ``ModelSaver.restore(model, "<dir>/run-1")`` and
``SidecarEvaluator("<dir>/run-1", ...)`` read it.
"""

from __future__ import annotations

import json
import os
import re

from infer_callbacks._util import new_run_reason, reserve_numbered
from infer_callbacks._util.warn import warn_user
from infer_callbacks.checkpoints.best_list import BestList
from infer_callbacks.checkpoints.keras_format import STATE_FILE as KERAS_STATE_FILE
from infer_callbacks.checkpoints.layout import FINISHED_MARKER

__all__ = ["ASIDE_STEM", "recorded_run", "start_run"]

#: Earlier runs are kept as ``<dir>/run-<N>/``.
ASIDE_STEM = "run"
_MANAGED = re.compile(r"^ckpt-(\d+)\.(index|data-\d+-of-\d+|weights\.h5)$")
_FILES = re.compile(r"\.(index|data-\d+-of-\d+)$")
_STATE_FILES = ("checkpoint", KERAS_STATE_FILE)


def _best_state(path: str) -> dict | None:
    """A ``MinSaver``/``MaxSaver`` state file's content, or ``None`` for any
    other JSON file (``stats.json``, a sidecar's state)."""
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(state, dict) and {"monitor", "mode", "best", "checkpoint"} <= set(state) \
            and isinstance(state["checkpoint"], str):
        return state
    return None


def recorded_run(directory: str) -> tuple[list[str], list[int]]:
    """The files of the run recorded in ``directory`` (names, state files
    first) and the global steps it records."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return [], []
    states, files, steps = [], [], []
    for name in names:
        match = _MANAGED.match(name)
        if match:
            files.append(name)
            steps.append(int(match.group(1)))  # ModelSaver names checkpoints by global step
    for name in (*_STATE_FILES, FINISHED_MARKER):
        if name in names:
            states.append(name)
    for name in names:
        state = _best_state(os.path.join(directory, name)) if name.endswith(".json") else None
        if state is None:
            continue
        states.append(name)
        if isinstance(state.get("global_step"), int):
            steps.append(state["global_step"])
        for kept in BestList.checkpoints_of(state):  # every one of the k best
            files += [n for n in names if n not in files and (n == kept or (  # Keras file
                n.startswith(kept + ".") and _FILES.search(n)))]
    return states + files, steps


def start_run(directory: str, global_step: int | None, who: str) -> str | None:
    """Decide whether a run at ``global_step`` resumes ``directory``; when it
    is a new run, move the earlier run's files into ``<directory>/run-<N>``
    with a warning and return that path (``None``: a resume, or nothing to keep)."""
    names, steps = recorded_run(directory)
    if not names:
        return None
    why = new_run_reason(global_step, steps or [0])
    if why is None:
        return None
    aside = os.path.join(directory, f"{ASIDE_STEM}-<N>")
    try:
        aside = reserve_numbered(directory, ASIDE_STEM, is_dir=True)
        # State files first: readers (a sidecar) stop listing the old
        # checkpoints at once; nothing is deleted at any point.
        for name in names:
            os.replace(os.path.join(directory, name), os.path.join(aside, name))
    except OSError as e:
        raise OSError(
            e.errno, f"{who} cannot keep the checkpoints of another run in {directory!r} as "
            f"{aside!r}: {e.strerror}. Move them away yourself or use another checkpoint "
            "directory.") from e
    warn_user(
        f"{who}: {directory!r} held the checkpoints of another run ({why}); they were moved "
        f"to {aside!r} (restore them from there, e.g. ModelSaver.restore(model, {aside!r})). "
        "This run starts with no checkpoint and no best value. To continue that run instead, "
        "restore its latest checkpoint before training.")
    return aside
