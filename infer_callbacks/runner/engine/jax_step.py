"""The JAX engine's compiled step: several batches per ``jax.jit`` call,
on one device or whole batches per device, each batch's outputs kept apart.

One call runs up to ``K`` *rounds*; a round gives each of the ``R`` devices
one whole batch (batch ``k*R + i`` of the call goes to device ``i``, slot
``k``: tensorpack's data-parallel semantics). The host stacks the call's
batches per device into a ``[K, ...]`` buffer (all batches of a call have
the same shapes; a batch of other shapes, such as the partial last one,
starts the next call), places each buffer on its device, and the step,
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

from infer_callbacks.runner.engine.jax_chunk import JaxChunk

__all__ = ["JaxStep", "capacity", "signature"]


def capacity(limit: int, max_rounds: int) -> int:
    """The buffer size (rounds) of a call asked to run ``limit`` rounds:
    the smallest power of 4 at least ``limit``, at most ``max_rounds``."""
    k = 1
    while k < limit:
        k *= 4
    return min(k, max_rounds)


def signature(leaves: tuple) -> tuple:
    """What must be equal for two batches (their leaves) to share a call: shapes, dtypes."""
    return tuple((a.shape, a.dtype.str) for a in leaves)


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
        tower: a :class:`~infer_callbacks.runner.engine.jax_tower.JaxTower`.
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
        """One device's ``[K, ...]`` slots: the first ``counts[0]`` through the tower."""
        self.compiles += 1  # runs when JAX traces a new shape, not per call
        slots = jax.tree_util.tree_leaves(stacked)[0].shape[0]
        first = jax.tree_util.tree_map(lambda a: a[0], stacked)
        shapes = jax.eval_shape(self.tower, values, first)
        init = {k: jnp.zeros((slots,) + s.shape, s.dtype) for k, s in shapes.items()}

        def body(j, outs):
            batch = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_index_in_dim(a, j, keepdims=False),
                                           stacked)
            out = self.tower(values, batch)
            return {k: jax.lax.dynamic_update_index_in_dim(outs[k], out[k].astype(outs[k].dtype), j, 0)
                    for k in outs}

        return jax.lax.fori_loop(0, counts[0], body, init)

    def place(self, values: Sequence) -> list:
        """The variables' values replicated on the devices (a no-op for
        values already there)."""
        return jax.device_put(list(values), self.replicated)

    def launch(self, state: list, batches: list, rounds: int, pack) -> Launched:
        """Stack ``batches`` (tuples of numpy leaves of one signature, at
        most ``rounds * R``) per device and dispatch the step
        (asynchronously); ``pack(leaves)`` makes the input's structure."""
        started, before = time.perf_counter(), self.compiles
        r = len(self.devices)
        per_device = [batches[i::r] for i in range(r)]
        leaves, nbytes = [], 0
        for j, leaf in enumerate(batches[0]):
            parts = []
            for mine in per_device:
                buf = np.empty((rounds,) + leaf.shape, leaf.dtype)
                if mine:
                    np.stack([b[j] for b in mine], out=buf[:len(mine)])
                parts.append(buf)
                nbytes += buf.nbytes
            leaves.append(self._global(parts))
        counts = self._global([np.array([len(mine)], np.int32) for mine in per_device])
        outputs = self._call(state, pack(leaves), counts)
        return Launched(outputs, len(batches), rounds, _rows(batches[0]), nbytes, started,
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
