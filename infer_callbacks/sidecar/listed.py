"""The checkpoints a ``ModelSaver`` directory lists, as the sidecar sees
them whatever their format (TensorFlow's ``checkpoint`` state file,
:mod:`~infer_callbacks.sidecar.tf_checkpoints`; Keras's ``checkpoints.json``,
:mod:`~infer_callbacks.sidecar.saver_files`), and which of them are still
to be evaluated: every listed checkpoint is complete (its writer lists it
after its files), so nothing waits to settle."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Listed", "pending"]


class Listed(NamedTuple):
    """A listed checkpoint: its name, path (a TensorFlow checkpoint's
    prefix, a Keras file's path), number (its global step, ``ckpt-<number>``),
    whether its files are gone, and its epoch when the listing records it
    (else the checkpoint itself does)."""

    name: str
    path: str
    number: int
    gone: bool
    epoch: int | None = None


def pending(state: dict, listed: list[Listed]) -> tuple[list[Listed], list[str]]:
    """``(todo, skipped)``: the checkpoints after the last one handled
    (``state["last_number"]``), ascending, and the names of those deleted
    before their turn: listed now with their files gone, or listed at an
    earlier look (``state["seen"]``) and no longer. Updates ``state``'s
    ``seen`` and, when some were skipped, ``last_number``."""
    last = state["last_number"]
    listed = sorted((c for c in listed if c.number > last), key=lambda c: c.number)
    present = {c.number for c in listed if not c.gone}
    seen = dict(state["seen"])  # {number: name}, JSON keys are str
    gone = {c.number: c.name for c in listed if c.gone}
    gone.update({int(n): name for n, name in seen.items() if int(n) not in present})
    todo = [c for c in listed if not c.gone]
    # Only those before the next one to evaluate are certainly skipped.
    upto = todo[0].number if todo else None
    skipped = sorted(n for n in gone if upto is None or n < upto)
    state["seen"] = {**{n: name for n, name in seen.items() if int(n) not in skipped},
                     **{str(c.number): c.name for c in listed}}
    if skipped:
        state["last_number"] = max(skipped)
    return todo, [gone[n] for n in skipped]
