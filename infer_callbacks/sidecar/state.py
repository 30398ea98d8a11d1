"""The sidecar's progress file (``logdir/sidecar_state.json``): which
checkpoints were evaluated or skipped, so a restart evaluates nothing twice."""

from __future__ import annotations

import json
import os
import warnings

__all__ = ["STATE_FILENAME", "load_state"]

STATE_FILENAME = "sidecar_state.json"


def load_state(path: str | None, checkpoint_dir: str) -> dict:
    """The sidecar's progress on ``checkpoint_dir`` from ``path`` (``None``:
    no state file), or a fresh one; a state file that cannot be read is an
    error and is left untouched."""
    fresh = {"checkpoint_dir": os.path.abspath(checkpoint_dir), "last_number": 0,
             "evaluated": [], "skipped": [], "seen": {}}
    if path is None or not os.path.exists(path):
        return fresh
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} exists but cannot be read ({e}); it was left untouched. "
                         "Move it away or use another logdir.") from e
    if not isinstance(state, dict) or not set(fresh) <= set(state):
        raise ValueError(f"{path} is not a SidecarEvaluator state file; it was left "
                         "untouched. Move it away or use another logdir.")
    if state["checkpoint_dir"] != fresh["checkpoint_dir"]:
        warnings.warn(f"{path} records progress on {state['checkpoint_dir']!r}, now watching "
                      f"{fresh['checkpoint_dir']!r}: carrying on after checkpoint "
                      f"{state['last_number']} (use another logdir to start afresh).",
                      RuntimeWarning, stacklevel=4)
        state["checkpoint_dir"] = fresh["checkpoint_dir"]
    return state

