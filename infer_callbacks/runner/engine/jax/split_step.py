"""The JAX engine's step under ``keras.distribution.DataParallel``: each
batch's batch dimension split across the distribution's devices (Keras's
convention, as a ``MirroredStrategy`` model on TensorFlow), several batches
per ``jax.jit`` call, each batch's outputs kept apart.

As in ``step.py``, the host gets a call's batches stacked (all of one shape:
a batch of other shapes, such as the partial last one, starts the next
call) into ``[K, B, ...]`` buffers, and the step runs the tower on slot
``0 .. count-1`` in a ``while`` loop. Here the buffers are placed with a
``NamedSharding`` over the distribution's mesh that splits ``B`` (the
variables replicated as Keras lays them out), and the step is one ``jax.jit``
over the whole global batch: XLA partitions the tower along the batch, so
per-example outputs come back concatenated in dataset order and reductions
over the batch are those of one device, up to round-off.

A batch of ``B`` rows that ``R`` devices do not divide is padded on the host
to the next multiple of ``R`` (a sharded array must divide evenly); the step
cuts the padding off (``[:B]``, ``B`` static per call) before the tower
runs, so no padded row reaches any output, per-batch reductions included,
and every inferencer sees the batch as the input made it. XLA keeps the
cut batch split (16 rows on 3 devices: each computes a padded share of 6)
and masks the padding out of reductions over the batch; per-example outputs
of such a batch are gathered on the devices before they reach the host.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from infer_callbacks.runner.engine.host_chunk import JaxChunk
from infer_callbacks.runner.engine.jax.distribution import BatchSplit
from infer_callbacks.runner.engine.jax.step import Launched

__all__ = ["JaxSplitStep", "padded_rows"]


def padded_rows(rows: int, parts: int) -> int:
    """``rows`` rounded up to a multiple of ``parts``.

    >>> padded_rows(16, 3), padded_rows(18, 3), padded_rows(1, 3)
    (18, 18, 3)
    """
    return -(-rows // parts) * parts


def _rows(leaves: Sequence[np.ndarray]) -> int:
    """The batch's rows: the leading dimension of its first leaf of rank >= 1 (``-1``: none)."""
    for leaf in leaves:
        if np.ndim(leaf) >= 1:
            return int(np.shape(leaf)[0])
    return -1


class JaxSplitStep:
    """The compiled step of ``tower`` with each batch split over ``split``'s mesh.

    Args:
        tower: a :class:`~infer_callbacks.runner.engine.jax.tower.JaxTower`.
        split: the :class:`~infer_callbacks.runner.engine.jax.distribution.BatchSplit`.
        ranks: each output's rank per batch (``0``: a scalar per batch).
        variables: the Keras variables whose values the step takes (for their layouts).

    Attributes:
        per_round: batches per round (one: a batch spans every device).
    """

    per_round = 1

    def __init__(self, tower, split: BatchSplit, ranks: dict[str, int], variables: Sequence = ()):
        self.tower, self.split, self.ranks = tower, split, dict(ranks)
        self.devices = split.devices
        self._value_shardings = split.value_shardings(variables)
        self.compiles = 0
        self._pack = None  # the input's structure (the binding's, the same for every call)
        self._call = jax.jit(self._global, static_argnames=("rows", "split"))

    def _global(self, values, flat, count, rows: int, split: tuple):
        """The ``[K, B_padded, ...]`` slots (``flat``: the leaves; ``split``:
        which of them are split along the batch): the first ``count`` through
        the tower, each split leaf cut back to its ``rows``."""
        self.compiles += 1  # runs when JAX traces a new shape, not per call

        def one(j):
            return self._pack([jax.lax.dynamic_index_in_dim(a, j, keepdims=False)[:rows] if cut
                               else jax.lax.dynamic_index_in_dim(a, j, keepdims=False)
                               for a, cut in zip(flat, split)])

        slots = flat[0].shape[0]
        shapes = jax.eval_shape(lambda v: self.tower(v, one(0)), values)
        init = {k: jnp.zeros((slots,) + s.shape, s.dtype) for k, s in shapes.items()}

        def body(j, outs):
            out = self.tower(values, one(j))
            return {k: jax.lax.dynamic_update_index_in_dim(outs[k], out[k].astype(outs[k].dtype), j, 0)
                    for k in outs}

        return jax.lax.fori_loop(0, count, body, init)

    def place(self, values: Sequence) -> list:
        """The variables' values laid out on the mesh as Keras lays them out
        (a no-op for the values of a model trained under the distribution)."""
        values = list(values)
        if len(values) != len(self._value_shardings):
            return jax.device_put(values, self.split.replicated)
        return jax.device_put(values, self._value_shardings)

    def launch(self, state: list, leaves: tuple, count: int, rounds: int, pack) -> Launched:
        """``count`` batches of one signature (``leaves`` stacked ``[count,
        ...]``, at most ``rounds``) in ``[rounds, ...]`` buffers, each batch
        padded to a multiple of the devices, placed split along the batch;
        dispatch the step (asynchronously); ``pack(leaves)`` makes the input's structure."""
        started, before = time.perf_counter(), self.compiles
        rows = _rows(tuple(leaf[0] for leaf in leaves))
        full = padded_rows(rows, self.split.size) if rows > 0 else rows
        placed, flags, nbytes = [], [], 0
        self._pack = self._pack or pack
        for leaf in leaves:
            split = rows > 0 and leaf.ndim >= 2 and leaf.shape[1] == rows
            shape = ((full,) + leaf.shape[2:]) if split else leaf.shape[1:]
            if count == rounds and (not split or full == rows):
                buf = leaf
            else:
                buf = np.zeros((rounds,) + shape, leaf.dtype)
                if split:
                    buf[:count, :rows] = leaf
                else:
                    buf[:count] = leaf
            sharding = self.split.data_sharding(shape) if split else self.split.replicated
            placed.append(jax.device_put(buf, sharding))
            flags.append(bool(split))
            nbytes += buf.nbytes
        count_on = jax.device_put(np.int32(count), self.split.replicated)
        outputs = self._call(state, placed, count_on, rows=rows, split=tuple(flags))
        return Launched(outputs, count, rounds, rows, nbytes, started, self.compiles != before)

    def finish(self, launched: Launched) -> tuple[JaxChunk, int]:
        """Wait for a launched call; its outputs (gathered from the devices,
        already in dataset order) as a :class:`JaxChunk`, and the bytes it moved."""
        n, values, nbytes = launched.count, {}, launched.nbytes
        for name, out in launched.outputs.items():
            host = np.asarray(out)
            nbytes += host.nbytes
            values[name] = host[:n]
        return JaxChunk(values, np.full(n, launched.rows, np.int64), self.ranks), nbytes
