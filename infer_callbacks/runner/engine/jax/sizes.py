"""The JAX engine's call sizes: how many rounds each step call's buffers
hold, so that validating compiles only in the first pass.

``jax.jit`` compiles the step once per batch signature (shapes, dtypes) and
call size ``K`` (rounds). The pace of calls (``pipeline.Pacer``) learns
from timings, so left alone it would ask for a larger ``K`` in a later
epoch and compile there. So:

* a call's ``K`` fits the batches it read (the smallest size already
  compiled for their signature that holds them, else :func:`capacity`);
  a partial last batch, or sequences padded per batch, run as ``K = 1``
  whatever the pace;
* after the first pass, a call of a known signature reads at most as many
  batches as the largest size compiled for it: later epochs reuse the
  first pass's steps (a new signature still compiles: it must).

Example:

>>> sizes = CallSizes(max_rounds=1024, per_round=1)
>>> sizes.rounds("full", 3), sizes.rounds("full", 1), sizes.rounds("last", 1)
(4, 4, 1)
>>> sizes.pass_ended(); sizes.most("full", 16), sizes.most("new", 16)
(4, 16)
"""

from __future__ import annotations

from typing import Hashable

from infer_callbacks.runner.engine.jax.step import capacity

__all__ = ["CallSizes"]


class CallSizes:
    """The call sizes compiled per batch signature, and the rule above.

    Args:
        max_rounds: the most rounds a call runs (``steps_per_execution``).
        per_round: batches per round (one per device).
    """

    def __init__(self, max_rounds: int, per_round: int):
        self.max_rounds, self.per_round = max_rounds, per_round
        self.compiled: dict[Hashable, set[int]] = {}
        self.learning = True  # until a first pass has run

    def most(self, signature: Hashable, rounds: int) -> int:
        """How many batches of ``signature`` a call that the pace gives
        ``rounds`` may read."""
        known = self.compiled.get(signature)
        if not self.learning and known:
            rounds = min(rounds, max(known))
        return rounds * self.per_round

    def rounds(self, signature: Hashable, count: int) -> int:
        """The size of a call running ``count`` batches of ``signature``
        (recorded as compiled)."""
        need = -(-count // self.per_round)
        fits = [k for k in self.compiled.get(signature, ()) if k >= need]
        k = min(fits) if fits else capacity(need, self.max_rounds)
        self.compiled.setdefault(signature, set()).add(k)
        return k

    def pass_ended(self) -> None:
        """A pass ran: from now on calls reuse the sizes compiled for their signature."""
        self.learning = False
