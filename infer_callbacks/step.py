"""The compiled validation step and the host side of its results.

One ``tf.function`` call runs up to ``limit`` *rounds*. A round gives every
replica one batch (or one slice of a batch) and runs the tower on all
replicas at once:

| mode      | who uses it                                   | replica ``i`` of round ``k`` gets      |
| --------- | --------------------------------------------- | -------------------------------------- |
| ``single``| no strategy: one tower, TensorFlow's placement | batch ``k``                            |
| ``whole`` | ``DataParallelInferenceRunner``, several workers | batch ``k*R + i`` (whole batches)    |
| ``split`` | a model built under a ``MirroredStrategy``      | slice ``i`` of batch ``k`` (Keras's way) |

Batches come from one plain ``tf.data`` iterator and reach the replicas
through ``experimental_distribute_values_from_function``: no distributed
iterator is built per run. In the last round a replica without a batch runs
on a copy of the round's first batch and its outputs are marked invalid.

Every output of every replica is flattened and written with its shape, so
batches whose non-batch dimensions differ (padded sequences) travel in one
call without a retrace; :func:`batches` cuts them apart on the host. Across
workers, values are exchanged with fixed-shape collectives only (see
:func:`_gather_flat`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

__all__ = ["NUM_SAMPLES", "make_step", "shard_for_worker", "batches"]

NUM_SAMPLES = "__num_samples__"

# Elements per collective when gathering across workers. A collective op's
# instance is fixed when the function is traced, so every call of it must see
# the same shape: values travel as zero-padded fixed-size chunks.
_CHUNK = 16384
_WIRE = {tf.bool: tf.int32, tf.int8: tf.int32, tf.uint8: tf.int32, tf.int16: tf.int32,
         tf.uint16: tf.int32, tf.bfloat16: tf.float32}


def _empty_like(spec: Any) -> Any:
    def empty(s: tf.TensorSpec):
        shape = [0] + [d or 0 for d in s.shape.as_list()[1:]] if s.shape.rank else []
        if s.dtype == tf.string:
            return tf.fill(shape, "")
        return tf.zeros(shape, s.dtype)
    return tf.nest.map_structure(empty, spec)


def shard_for_worker(dataset: tf.data.Dataset, replicas: int, local: int, worker: int) -> tf.data.Dataset:
    """The batches worker ``worker`` runs in ``whole`` mode: in every round of
    ``replicas`` batches, the ``local`` ones of its replicas, in order."""
    def mine(index, _):
        return tf.equal((index % replicas) // local, worker)
    return dataset.enumerate().filter(mine).map(lambda _, batch: batch)


def _flatten_outputs(replica_fn: Callable, names: list[str]) -> Callable:
    def fn(batch):
        out = replica_fn(batch)
        result = {}
        for n in names:
            v = tf.convert_to_tensor(out[n])
            if v.shape.rank == 0:
                v = tf.reshape(v, [1])  # a scalar travels as [1]; `batches` gives it back as a scalar
            result[n] = (tf.reshape(v, [-1]), tf.shape(v, out_type=tf.int64))
        return result
    return fn


def _gather_flat(strategy, flat) -> tuple[tf.Tensor, tf.Tensor]:
    """Every replica's flat vector from all workers: ``(values, sizes)`` with
    ``values`` the replicas' vectors concatenated in replica order. Only
    constant-shape collectives: one gather of sizes, then fixed-size chunks."""
    dtype = strategy.experimental_local_results(flat)[0].dtype
    if dtype == tf.string:
        raise ValueError("String tensors cannot be gathered across workers; fetch numbers instead.")
    wire = _WIRE.get(dtype, dtype)
    replicas = strategy.num_replicas_in_sync
    sizes = strategy.gather(strategy.run(lambda f: tf.reshape(tf.size(f, out_type=tf.int64), [1]),
                                         args=(flat,)), axis=0)
    num_chunks = (tf.reduce_max(sizes) + _CHUNK - 1) // _CHUNK

    def pad(f):
        f = tf.cast(f, wire)
        return tf.pad(f, [[0, num_chunks * _CHUNK - tf.size(f, out_type=tf.int64)]])

    padded = strategy.run(pad, args=(flat,))

    def body(k, ta):
        piece = strategy.run(lambda f: tf.reshape(f[k * _CHUNK:(k + 1) * _CHUNK], [1, _CHUNK]), args=(padded,))
        return k + 1, ta.write(tf.cast(k, tf.int32), strategy.gather(piece, axis=0))

    ta = tf.TensorArray(wire, size=0, dynamic_size=True, element_shape=[replicas, _CHUNK])
    _, ta = tf.while_loop(lambda k, ta: k < num_chunks, body, [tf.constant(0, tf.int64), ta],
                          parallel_iterations=1)
    table = tf.cond(num_chunks > 0,
                    lambda: tf.reshape(tf.transpose(ta.stack(), [1, 0, 2]), [replicas, -1]),
                    lambda: tf.zeros([replicas, 0], wire))
    parts = [table[r, :sizes[r]] for r in range(replicas)]
    return tf.cast(tf.concat(parts, 0), dtype), sizes


def make_step(replica_fn: Callable, specs: dict[str, tf.TensorSpec], element_spec: Any,
              strategy: tf.distribute.Strategy | None, mode: str, max_rounds: int,
              multi_worker: bool = False) -> Callable:
    """The validation ``tf.function``: ``step(iterator, limit)`` runs up to
    ``min(limit, max_rounds)`` rounds and returns ``(rounds, valid, values,
    shapes)``: ``valid`` ``[rounds*R]`` bool, and per name (in ``specs``
    order) the flat values of every replica of every round and their shapes
    ``[rounds*R, rank]``."""
    if mode not in ("single", "whole", "split"):
        raise ValueError(f"Unknown step mode {mode!r}; expected 'single', 'whole' or 'split'.")
    names = list(specs)
    flat_fn = _flatten_outputs(replica_fn, names)
    local = 1 if strategy is None else len(strategy.extended.worker_devices)
    total = 1 if strategy is None else strategy.num_replicas_in_sync
    pulls = local if mode == "whole" else 1
    empty = _empty_like(element_spec)

    def replica_args(values, has):
        if mode == "whole":
            # has[0] is False only when every later pull is empty too.
            fill = values[0]
            return [tf.nest.map_structure(lambda v, f, h=h: tf.cond(h, lambda: v, lambda: f), v, fill)
                    for v, h in zip(values, has)], has
        batch = values[0]
        rows = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
        size = (rows + total - 1) // total
        parts, ok = [], []
        for i in range(local):
            lo, hi = tf.minimum(i * size, rows), tf.minimum((i + 1) * size, rows)
            parts.append(tf.nest.map_structure(lambda v, lo=lo, hi=hi: v[lo:hi], batch))
            ok.append(tf.logical_and(has[0], hi > lo))
        return parts, ok

    def pull(iterator):
        optionals = [iterator.get_next_as_optional() for _ in range(pulls)]
        has = [o.has_value() for o in optionals]
        values = [tf.cond(h, o.get_value, lambda: empty) for o, h in zip(optionals, has)]
        if strategy is None:
            return values, has[:1]
        return replica_args(values, has)

    def run(args):
        if strategy is None:
            return flat_fn(args[0])
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda ctx: args[ctx.replica_id_in_sync_group % local])
        return strategy.run(flat_fn, args=(per_replica,))

    def collect(out, n):
        flat, shape = out[n]
        if strategy is None:
            return flat, tf.reshape(shape, [1, -1])
        if multi_worker:
            return (_gather_flat(strategy, flat)[0],
                    strategy.gather(strategy.run(lambda s: tf.reshape(s, [1, -1]), args=(shape,)), axis=0))
        flats = strategy.experimental_local_results(flat)
        return (tf.concat(flats, 0) if len(flats) > 1 else flats[0],
                tf.stack(strategy.experimental_local_results(shape)))

    def write(out, rounds, value_tas, shape_tas):
        value_tas, shape_tas = list(value_tas), list(shape_tas)
        for j, n in enumerate(names):
            flat, shape = collect(out, n)
            value_tas[j] = value_tas[j].write(rounds, flat)
            shape_tas[j] = shape_tas[j].write(rounds, shape)
        return value_tas, shape_tas

    # No autograph: the loop is an explicit while_loop, and the tower was
    # already traced without it when the fetch names were checked.
    @tf.function(autograph=False)
    def step(iterator, limit):
        value_tas = [tf.TensorArray(specs[n].dtype, size=0, dynamic_size=True, infer_shape=False,
                                    element_shape=[None]) for n in names]
        shape_tas = [tf.TensorArray(tf.int64, size=0, dynamic_size=True, infer_shape=False,
                                    element_shape=[None, max(specs[n].shape.rank, 1)]) for n in names]
        valid_ta = tf.TensorArray(tf.bool, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        limit = tf.minimum(limit, max_rounds)

        def body(rounds, done, value_tas, shape_tas, valid_ta):
            args, ok = pull(iterator)
            valid = _gather_valid(strategy, ok) if multi_worker else tf.stack(ok)

            def go():
                vt, st = write(run(args), rounds, value_tas, shape_tas)
                return rounds + 1, tf.constant(False), vt, st, valid_ta.write(rounds, valid)

            def stop():
                return rounds, tf.constant(True), list(value_tas), list(shape_tas), valid_ta

            return tf.cond(tf.reduce_any(valid), go, stop)

        rounds, _, value_tas, shape_tas, valid_ta = tf.while_loop(
            lambda rounds, done, *_: tf.logical_and(rounds < limit, tf.logical_not(done)), body,
            [tf.constant(0), tf.constant(False), value_tas, shape_tas, valid_ta], parallel_iterations=1)
        values = {n: tf.cond(rounds > 0, value_tas[j].concat, lambda n=n: tf.zeros([0], specs[n].dtype))
                  for j, n in enumerate(names)}
        shapes = {n: tf.cond(rounds > 0, shape_tas[j].concat,
                             lambda n=n: tf.zeros([0, max(specs[n].shape.rank, 1)], tf.int64))
                  for j, n in enumerate(names)}
        valid = tf.cond(rounds > 0, valid_ta.concat, lambda: tf.zeros([0], tf.bool))
        return rounds, valid, values, shapes

    return step


def _gather_valid(strategy, ok: list) -> tf.Tensor:
    local = len(ok)
    flags = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.reshape(tf.cast(ok[ctx.replica_id_in_sync_group % local], tf.int32), [1]))
    return tf.cast(strategy.gather(flags, axis=0), tf.bool)


def batches(valid: np.ndarray, values: dict[str, np.ndarray], shapes: dict[str, np.ndarray],
            ranks: dict[str, int], per_round: int, merge: bool) -> Iterator[dict[str, np.ndarray]]:
    """Cut one step's host arrays into per-batch dicts, in dataset order.

    ``per_round`` is the number of replicas (entries per round). With
    ``merge`` (``split`` mode), the valid slices of a round are concatenated
    back into the round's batch (rank-0 values, i.e. sample counts, are
    added); otherwise every valid entry is one batch.
    Rank-0 outputs come back as numpy scalars.
    """
    offsets = {}
    for n, shape in shapes.items():
        sizes = np.prod(shape, axis=1) if shape.shape[1] else np.ones(len(shape), np.int64)
        offsets[n] = np.concatenate([[0], np.cumsum(sizes)])

    def entry(j):
        out = {}
        for n in values:
            a, b = offsets[n][j], offsets[n][j + 1]
            v = values[n][a:b].reshape(shapes[n][j])
            out[n] = v.reshape(()) if ranks[n] == 0 else v
        return out

    if not merge:
        for j in np.flatnonzero(valid):
            yield entry(int(j))
        return
    for k in range(len(valid) // per_round):
        parts = [entry(k * per_round + i) for i in range(per_round) if valid[k * per_round + i]]
        if len(parts) == 1:
            yield parts[0]
        elif parts:
            yield {n: (np.sum([p[n] for p in parts]) if ranks[n] == 0 else np.concatenate([p[n] for p in parts], 0))
                   for n in values}
