"""Validation across processes, on the host: today the JAX engine's, under
JAX's distributed runtime (``keras.distribution.initialize``); nothing here
depends on the backend but the wire's default store.

Every process passes the same whole validation set; batch ``k`` belongs to
process ``k mod P`` (of ``P``), which runs it whole on one of its local
devices (batch ``j`` of its share on local device ``j mod L``, as
``DataParallelInferenceRunner`` does within a process): no batch is split
or padded, so a last batch of any size is exact. Then the host combines:

| the pass's inferencers | what travels between processes | who runs ``_on_fetches`` |
| --- | --- | --- |
| all mergeable built-ins (``inferencers/merging.py``) | each process's state once: O(state) bytes | each process on its own batches; the states are summed in process order before ``_after_inference`` |
| any other (a custom or ``KerasMetric``, ``GatherOutputs``, a subclass) | every batch's fetched outputs: O(examples) bytes | every process on every batch, in dataset order |

At the end each process sends its results and reads everyone's, so every
process returns process 0's numbers (the same up to the last bit in both
modes, since every process reduces the same values in the same order), or
every process raises. Every wait has a deadline (``collective_timeout``);
the wire is ``distribute/jax_processes.py``.

| who | owns |
| --- | --- |
| :class:`ProcessShare` | the placement: this process's devices, its index, the process count |
| :class:`Share` | a pass's input filter: this process's batches of every block read |
| :class:`ProcessPass` | one pass: its mode, the blocks it yields, the exchange at its end |
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Iterator

import numpy as np

from infer_callbacks.distribute.jax_processes import Channel, Message
from infer_callbacks.inferencers.merging import is_mergeable, load_merged, state_of
from infer_callbacks.runner.engine.host_chunk import JaxChunk

__all__ = ["ProcessShare", "Share", "ProcessPass"]

_passes = itertools.count()  # every process counts its passes alike: a pass's name is the same on each


@dataclasses.dataclass(frozen=True)
class ProcessShare:
    """Whole batches on this process's ``devices``, batch ``k`` of the set
    to process ``k mod count``."""

    devices: tuple
    index: int
    count: int


class Share:
    """Keeps this process's batches of ``(leaves stacked [m, ...], m)``
    blocks; :attr:`total` counts every batch read (all processes')."""

    def __init__(self, index: int, count: int):
        self.index, self.count, self.total = index, count, 0

    def __call__(self, blocks: Iterator[tuple]) -> Iterator[tuple]:
        for leaves, m in blocks:
            start, self.total = self.total, self.total + m
            offset = (self.index - start) % self.count
            if offset < m:
                yield tuple(a[offset::self.count] for a in leaves), len(range(offset, m, self.count))


def _one_batch(values: dict, counts: np.ndarray, j: int, ranks: dict) -> JaxChunk:
    return JaxChunk({n: v[j:j + 1] for n, v in values.items()}, counts[j:j + 1], ranks)


class ProcessPass:
    """One validation pass across processes.

    Args:
        local: the binding's generator of ``(count, JaxChunk)`` over this
            process's share (``share`` filters its input).
        share: that :class:`Share`.
        plan: ``[(inferencer, fetch names)]`` of the pass.
        ranks: each fetch's rank per batch.
        timeout: the most seconds any wait lasts.
        client: the key-value store (default: JAX's; see :class:`Channel`).
        name: the pass's name, the same on every process (default: the
            next of this process's passes, which every process counts alike).
    """

    def __init__(self, local: Iterator, share: Share, plan: list, ranks: dict, timeout: float,
                 client: Any = None, name: str | None = None):
        self.local, self.share, self.plan, self.ranks = local, share, plan, ranks
        name = name or f"pass{next(_passes)}"
        self.channel = Channel(name, timeout, (share.index, share.count), client)
        self.merge = all(is_mergeable(inf) for inf, _ in plan)

    @property
    def mode(self) -> str:
        return "state" if self.merge else "batches"

    def blocks(self) -> Iterator[tuple]:
        """``(dataset batches, chunk)`` pairs for ``run_pass`` (``chunk`` is
        ``None`` for batches other processes account for)."""
        try:
            yield from (self._merged() if self.merge else self._ordered())
        finally:
            self.local.close()

    # -- state mode -----------------------------------------------------------

    def _merged(self) -> Iterator[tuple]:
        p, n, position, mine = self.share.index, self.share.count, 0, 0
        for count, chunk in self.local:
            mine += count
            end = (mine - 1) * n + p + 1  # the set's batches up to this process's last one
            yield end - position, chunk
            position = end
        total = self.share.total
        if total > position:
            yield total - position, None
        states = [state_of(inf) for inf, _ in self.plan]
        arrays = {f"{i}|{k}": v for i, s in enumerate(states) for k, v in s.items()}
        self.channel.send(Message("state", {"batches": total, "infs": self._signature()}, arrays))
        every = []
        for q in range(n):
            if q == p:
                every.append(states)
                continue
            message = self.channel.receive(q, "its validation state")
            self._same_plan(q, message)
            self._same_set(q, message.meta["batches"], total)
            theirs = [{} for _ in self.plan]
            for key, value in message.arrays.items():
                i, name = key.split("|", 1)
                theirs[int(i)][name] = value
            every.append(theirs)
        for i, (inf, _) in enumerate(self.plan):
            load_merged(inf, [process[i] for process in every])

    def _signature(self) -> list[str]:
        return [f"{type(inf).__name__}{inf.result_names() or []}" for inf, _ in self.plan]

    def _same_plan(self, q: int, message: Message) -> None:
        """Refuses a process that combines otherwise or runs other inferencers."""
        theirs = "state" if message.kind == "state" else "batches"
        if theirs != self.mode or (theirs == "state" and message.meta.get("infs") != self._signature()):
            raise ValueError(
                f"process {q} and process {self.share.index} run different inferencers in this validation "
                f"(process {self.share.index}: {self._signature()}; process {q} combines by {theirs}"
                + (f": {message.meta.get('infs')}" if theirs == "state" else "") + "). Every process must "
                "run the same inferencers (an inferencer with chief_only=True runs on process 0 only and "
                "cannot be combined across JAX processes).")

    def _same_set(self, q: int, theirs: int, mine: int) -> None:
        """Refuses sets of different sizes, naming both processes' counts."""
        if theirs != mine:
            raise ValueError(
                f"process {q} read {theirs} validation batches but process {self.share.index} read "
                f"{mine}; every process must pass the same whole validation set (validation across JAX "
                f"processes gives batch k to process k mod {self.share.count} and needs all of them).")

    # -- batch mode -----------------------------------------------------------

    def _produce(self, buffer: collections.deque) -> bool:
        """Run and send this process's next call; ``False`` once its share ended."""
        try:
            count, chunk = next(self.local)
        except StopIteration:
            self.channel.send(Message("end", {"batches": self.share.total}))
            return False
        arrays = {f"v|{k}": v for k, v in chunk.values.items()}
        arrays["counts"] = chunk.counts
        self.channel.send(Message("chunk", {}, arrays))
        buffer.extend(_one_batch(chunk.values, chunk.counts, j, self.ranks) for j in range(len(chunk)))
        return True

    def _received(self, message: Message) -> list:
        values = {k[2:]: v for k, v in message.arrays.items() if k.startswith("v|")}
        counts = message.arrays["counts"]
        return [_one_batch(values, counts, j, self.ranks) for j in range(len(counts))]

    def _ordered(self) -> Iterator[tuple]:
        p, n = self.share.index, self.share.count
        mine: collections.deque = collections.deque()
        theirs = {q: collections.deque() for q in range(n) if q != p}
        ended: dict[int, int] = {}
        running, k = True, 0
        while True:
            owner = k % n
            if owner == p:
                while running and not mine:
                    running = self._produce(mine)
                if not mine:
                    break
                yield 1, mine.popleft()
            else:
                # One call ahead at least, so the others never wait on this one.
                while running and len(mine) <= 1:
                    running = self._produce(mine)
                if not theirs[owner] and owner not in ended:
                    message = self.channel.receive(owner, f"validation batch {k + 1}")
                    if message.kind == "state":
                        self._same_plan(owner, message)
                    if message.kind == "end":
                        ended[owner] = message.meta["batches"]
                    else:
                        theirs[owner].extend(self._received(message))
                if not theirs[owner]:
                    break
                yield 1, theirs[owner].popleft()
            k += 1
        while running:
            running = self._produce(mine)
        if self.share.total != k:
            raise ValueError(
                f"process {p} read {self.share.total} validation batches but the other processes sent "
                f"{k}; every process must pass the same whole validation set.")
        for q in theirs:
            while q not in ended:
                message = self.channel.receive(q, "the end of its validation batches")
                if message.kind == "state":
                    self._same_plan(q, message)
                if message.kind == "end":
                    ended[q] = message.meta["batches"]
                else:
                    ended[q] = k + 1 + len(self._received(message))  # more than this process read
            self._same_set(q, ended[q], k)

    # -- the end --------------------------------------------------------------

    def agree(self, results: dict, samples: int) -> tuple[dict, int]:
        """Send this process's results, read everyone's: process 0's
        results and the samples of the whole set, the same on every process."""
        names = sorted(results)
        local = samples  # in state mode, this process's own batches
        self.channel.send(Message("result", {"names": names, "samples": int(local)},
                                  {"values": np.array([results[k] for k in names], np.float64)}))
        chosen, total = dict(results), int(local)
        for q in range(self.share.count):
            if q == self.share.index:
                continue
            message = self.channel.receive(q, "its validation results")
            total += int(message.meta["samples"])
            if q == 0:
                chosen = dict(zip(message.meta["names"], (float(v) for v in message.arrays["values"])))
        return chosen, (total if self.merge else samples)

    def fail(self, error: BaseException) -> None:
        """Tell the other processes this one failed, naming the cause."""
        self.channel.fail(error)

