"""The JAX engine's compiled step: several batches per ``jax.jit`` call,
on one device or whole batches per device, each batch's outputs kept apart.

One call runs up to ``K`` *rounds*; a round gives each of the ``R`` devices
one whole batch (batch ``k*R + i`` of the call goes to device ``i``, slot
``k``: tensorpack's data-parallel semantics). The host gets the call's
batches stacked (``host_blocks.Blocks``: all batches of a call have the same
shapes; a batch of other shapes, such as the partial last one, starts the
next call), fills a ``[K, ...]`` buffer per device, places each buffer on
its device, and the step,
``shard_map`` over the devices, runs the tower on slot ``0 .. count-1`` of
its buffer in a ``while`` loop, writing slot ``k``'s outputs to row ``k`` of
its output buffers: the same per-batch program for any ``R`` and ``K``, so
results do not depend on the device count. Slots past ``count`` are never
computed, so ``K`` comes from a few sizes (:func:`capacity`): a call with
fewer batches does not compile a new step.

The variables' values are the step's first argument (replicated on the
devices): the same compiled step serves every epoch's weights.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from infer_callbacks.runner.engine.host_chunk import JaxChunk

__all__ = ["JaxStep", "capacity", "chunk_size"]


def capacity(limit: int, max_rounds: int) -> int:
    """The buffer size (rounds) of a call asked to run ``limit`` rounds:
    the smallest power of 4 at least ``limit``, at most ``max_rounds``."""
    k = 1
    while k < limit:
        k *= 4
    return min(k, max_rounds)


# Batches run at once (``jax.vmap``) inside a call: a small model's batch
# costs less than a loop iteration's fixed cost on a CPU, so a group of them
# runs as one batched program (bench_jax.py's MLP: 1.9 -> 1.1 ms a pass).
# Bounded in rows and bytes so that a group's activations stay those of an
# ordinary batch; a large batch runs alone.
_CHUNK_ROWS, _CHUNK_BYTES, _CHUNK_MOST = 256, 256 << 10, 16


def chunk_size(per_batch: Sequence[tuple[tuple, np.dtype]], slots: int) -> int:
    """How many batches of these leaves (each ``(shape, dtype)`` per batch)
    the step runs at once: a power of two dividing ``slots``, at most 16,
    with at most 256 rows and 256 KiB of input together.

    >>> chunk_size([((32, 32), np.dtype("float32")), ((32,), np.dtype("int32"))], 1024)
    8
    >>> chunk_size([((250, 32, 32, 3), np.dtype("float32"))], 16), chunk_size([((4,), np.dtype("int64"))], 2)
    (1, 2)
    """
    rows = next((int(shape[0]) for shape, _ in per_batch if len(shape) >= 1), 1)
    nbytes = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in per_batch)
    c = 1
    while (2 * c <= min(_CHUNK_MOST, slots) and slots % (2 * c) == 0 and 2 * c * rows <= _CHUNK_ROWS
           and 2 * c * nbytes <= _CHUNK_BYTES):
        c *= 2
    return c


def _rows(batch_leaves: Sequence[np.ndarray]) -> int:
    for leaf in batch_leaves:
        if np.ndim(leaf) >= 1:
            return int(np.shape(leaf)[0])
    return -1


@dataclasses.dataclass
class Launched:
    """A dispatched call: its outputs (still computing) and what the host needs."""

    outputs: dict
    count: int
    rounds: int
    rows: int
    nbytes: int
    started: float
    compiled: bool


class JaxStep:
    """The compiled step of ``tower`` over ``devices``.

    Args:
        tower: a :class:`~infer_callbacks.runner.engine.jax.tower.JaxTower`.
        devices: the ``jax.Device`` list (one: a single device).
        ranks: each output's rank per batch (``0``: a scalar per batch).
    """

    def __init__(self, tower, devices: Sequence[jax.Device], ranks: dict[str, int]):
        self.tower, self.devices, self.ranks = tower, list(devices), dict(ranks)
        self.mesh = Mesh(np.array(self.devices), ("d",))
        self.replicated = NamedSharding(self.mesh, P())
        self.split = NamedSharding(self.mesh, P("d"))
        self.per_round = len(self.devices)  # batches per round: one per device
        self.compiles = 0
        local = jax.shard_map(self._local, mesh=self.mesh, in_specs=(P(), P("d"), P("d")),
                              out_specs=P("d"), check_vma=False)
        self._call = jax.jit(local)

    def _local(self, values, stacked, counts):
        """One device's ``[K, ...]`` slots: the first ``counts[0]`` through
        the tower, :func:`chunk_size` of them at a time."""
        self.compiles += 1  # runs when JAX traces a new shape, not per call
        leaves = jax.tree_util.tree_leaves(stacked)
        slots = leaves[0].shape[0]
        c = chunk_size([(a.shape[1:], a.dtype) for a in leaves], slots)
        first = jax.tree_util.tree_map(lambda a: a[0], stacked)
        shapes = jax.eval_shape(self.tower, values, first)
        init = {k: jnp.zeros((slots,) + s.shape, s.dtype) for k, s in shapes.items()}

        def run(chunk):  # [c, ...] batches -> [c, ...] outputs
            if c == 1:
                out = self.tower(values, jax.tree_util.tree_map(lambda a: a[0], chunk))
                return {k: v[None] for k, v in out.items()}
            return jax.vmap(lambda batch: self.tower(values, batch))(chunk)

        def body(i, outs):
            start = i * c
            out = run(jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, c), stacked))
            return {k: jax.lax.dynamic_update_slice_in_dim(outs[k], out[k].astype(outs[k].dtype), start, 0)
                    for k in outs}

        return jax.lax.fori_loop(0, (counts[0] + c - 1) // c, body, init)

    def place(self, values: Sequence) -> list:
        """The variables' values replicated on the devices (values already
        on the one device of a single-device step are passed as they are)."""
        values = list(values)
        if len(self.devices) == 1 and all(isinstance(v, jax.Array) and v.devices() == {self.devices[0]}
                                          for v in values):
            return values
        return jax.device_put(values, self.replicated)

    def launch(self, state: list, leaves: tuple, count: int, rounds: int, pack) -> Launched:
        """Dispatch the step (asynchronously) on ``count`` batches of one
        signature, ``leaves`` stacked ``[count, ...]`` (at most ``rounds * R``):
        batch ``k*R + i`` goes to device ``i``, slot ``k``, in a ``[rounds,
        ...]`` buffer per device (the block itself when it fills the buffer
        of a single device: no copy); ``pack(leaves)`` makes the input's structure."""
        started, before = time.perf_counter(), self.compiles
        r = len(self.devices)
        c = chunk_size([(leaf.shape[1:], leaf.dtype) for leaf in leaves], rounds)
        parts_of, nbytes = [], 0
        for leaf in leaves:
            parts = []
            for i in range(r):
                mine = leaf[i::r] if r > 1 else leaf
                if len(mine) == rounds:
                    buf = mine
                else:  # the slots a last group computes hold zeros, not garbage
                    buf = np.empty((rounds,) + leaf.shape[1:], leaf.dtype)
                    buf[:len(mine)] = mine
                    buf[len(mine):-(-len(mine) // c) * c] = 0
                parts.append(buf)
                nbytes += buf.nbytes
            parts_of.append(self._global(parts))
        counts = self._global([np.array([len(range(i, count, r))], np.int32) for i in range(r)])
        outputs = self._call(state, pack(parts_of), counts)
        return Launched(outputs, count, rounds, _rows(tuple(leaf[0] for leaf in leaves)), nbytes, started,
                        self.compiles != before)

    def _global(self, parts: list[np.ndarray]) -> jax.Array:
        if len(parts) == 1:
            return jax.device_put(parts[0], self.split)
        shape = (sum(p.shape[0] for p in parts),) + parts[0].shape[1:]
        arrays = [jax.device_put(p, d) for p, d in zip(parts, self.devices)]
        return jax.make_array_from_single_device_arrays(shape, self.split, arrays)

    def finish(self, launched: Launched) -> tuple[JaxChunk, int]:
        """Wait for a launched call; its outputs in dataset order as a
        :class:`JaxChunk`, and the bytes it moved."""
        r, n, k = len(self.devices), launched.count, launched.rounds
        values, nbytes = {}, launched.nbytes
        for name, out in launched.outputs.items():
            host = np.asarray(out)
            nbytes += host.nbytes
            if r > 1:  # device i's slot j is the call's batch j*R + i
                host = host.reshape((r, k) + host.shape[1:]).swapaxes(0, 1).reshape((r * k,) + host.shape[1:])
            values[name] = host[:n]
        return JaxChunk(values, np.full(n, launched.rows, np.int64), self.ranks), nbytes
