"""The compiled validation step and the host side of its results.

One ``tf.function`` call runs up to ``limit`` *rounds*. A round gives every
replica one batch (or one slice of a batch) and runs the tower on all
replicas at once:

| mode      | who uses it                                   | replica ``i`` of round ``k`` gets      |
| --------- | --------------------------------------------- | -------------------------------------- |
| ``single``| no strategy: one tower, TensorFlow's placement | batch ``k``                            |
| ``whole`` | ``DataParallelInferenceRunner``, several workers | batch ``k*R + i`` (whole batches)    |
| ``split`` | a model built under a ``MirroredStrategy``      | slice ``i`` of batch ``k`` (Keras's way) |

Batches come from one plain ``tf.data`` iterator (or, for a Python input,
from the run's queue: see ``data/queue_feed.py``) and reach the replicas
through ``experimental_distribute_values_from_function``: no distributed
iterator is built per run. In the last round a replica without a batch runs
on a copy of the round's first batch and its outputs are marked invalid.

Every output of every replica is flattened and written with its shape, so
batches whose non-batch dimensions differ (padded sequences) travel in one
call without a retrace; ``chunk.Chunk`` cuts them apart on the host. Across
workers, values are exchanged with fixed-shape collectives only (see
``distribute/cross_worker.py``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from infer_callbacks.distribute.cross_worker import gather_flat, gather_valid
from infer_callbacks.towers.spec import NUM_SAMPLES_KEY

__all__ = ["NUM_SAMPLES", "make_step", "static_inner"]

NUM_SAMPLES = NUM_SAMPLES_KEY

def _empty_like(spec: Any) -> Any:
    def empty(s: tf.TensorSpec):
        shape = [0] + [d or 0 for d in s.shape.as_list()[1:]] if s.shape.rank else []
        if s.dtype == tf.string:
            return tf.fill(shape, "")
        return tf.zeros(shape, s.dtype)
    return tf.nest.map_structure(empty, spec)


def _flatten_outputs(replica_fn: Callable, names: list[str], dynamic: list[str]) -> Callable:
    """``fn(batch) -> ({name: flat values}, {dynamic name: shape})``."""
    def fn(batch):
        out = replica_fn(batch)
        flats, shapes = {}, {}
        for n in names:
            v = tf.convert_to_tensor(out[n])
            if v.shape.rank == 0:
                v = tf.reshape(v, [1])  # a scalar travels as [1]; `batches` gives it back as a scalar
            flats[n] = v if v.shape.rank == 1 else tf.reshape(v, [-1])
            if n in dynamic:
                shapes[n] = tf.shape(v, out_type=tf.int64)
        return flats, shapes
    return fn


def static_inner(spec: tf.TensorSpec) -> bool:
    inner = spec.shape.as_list()[1:]
    return all(d is not None for d in inner) and int(np.prod(inner)) > 0


def _source_reader(element_spec: Any, queued: bool) -> Callable:
    """``read(source) -> (has, get)`` for one batch: a ``tf.data`` iterator,
    or (``queued``) a ``FIFOQueue`` handle of ``(*flat batch, more)``
    elements, a ``more=False`` element marking the end."""
    if not queued:
        def read_iterator(iterator):
            optional = iterator.get_next_as_optional()
            return optional.has_value(), optional.get_value
        return read_iterator
    specs = tf.nest.flatten(element_spec)
    types = [s.dtype for s in specs] + [tf.bool]

    def read_queue(handle):
        *values, more = tf.raw_ops.QueueDequeueV2(handle=handle, component_types=types)
        for value, spec in zip(values, specs):
            value.set_shape(spec.shape)
        batch = tf.nest.pack_sequence_as(element_spec, values)
        return more, lambda: batch
    return read_queue


def make_step(replica_fn: Callable, specs: dict[str, tf.TensorSpec], element_spec: Any,
              strategy: tf.distribute.Strategy | None, mode: str, max_rounds: int,
              multi_worker: bool = False, device: str | None = None, queued: bool = False) -> Callable:
    """The validation ``tf.function``: ``step(source, limit)`` (``source``:
    an iterator, or with ``queued`` a queue handle) runs up to
    ``min(limit, max_rounds)`` rounds and returns ``(rounds, valid, values,
    sizes, shapes)``: ``valid`` ``[rounds*R]`` bool; per name (in ``specs``
    order) the flat values of every replica of every round; ``sizes``
    ``[rounds*R, names]``; and, for outputs whose non-batch dimensions are
    not static, their shapes ``[rounds*R, rank]``. :class:`Chunk` reads them.

    Without a strategy, ``device`` (if given) is where the tower runs: one
    replica needs no per-replica machinery."""
    if mode not in ("single", "whole", "split"):
        raise ValueError(f"Unknown step mode {mode!r}; expected 'single', 'whole' or 'split'.")
    names = list(specs)
    for n in names:
        if specs[n].shape.rank is None:
            raise ValueError(f"Output {n!r} must have a known rank; its spec is {specs[n]}.")
    specs = {n: tf.TensorSpec([1], s.dtype) if s.shape.rank == 0 else s for n, s in specs.items()}
    # Outputs whose non-batch dimensions are known travel without shapes:
    # the host gets each batch's rows from its size.
    dynamic = [n for n in names if not static_inner(specs[n])]
    flat_fn = _flatten_outputs(replica_fn, names, dynamic)
    # One array write per dtype a round (concatenated values), split per
    # name after the loop: in an overhead-bound pass the ops a round are the cost.
    groups: dict[tf.DType, list[int]] = {}
    for j, n in enumerate(names):
        groups.setdefault(specs[n].dtype, []).append(j)
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

    read = _source_reader(element_spec, queued)

    def pull(source):
        has, values = [], []
        for i in range(pulls):
            if queued and i:  # after the end marker, read no further (it comes twice only)
                h, v = tf.cond(has[-1], lambda: _read_now(read, source), lambda: (tf.constant(False), empty))
            else:
                h, get = read(source)
                v = tf.cond(h, get, lambda: empty)
            has.append(h)
            values.append(v)
        if strategy is None:
            return values, has[:1]
        return replica_args(values, has)

    def run(args):
        if strategy is None:
            if device is None:
                return flat_fn(args[0])
            with tf.device(device):
                return flat_fn(args[0])
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda ctx: args[ctx.replica_id_in_sync_group % local])
        return strategy.run(flat_fn, args=(per_replica,))

    def collect(out):
        """Per name the flat values of all replicas (replica order), per
        dynamic name their shapes ``[R, rank]``, and every replica's sizes
        ``[R, names]``."""
        out_flats, out_shapes = out
        flats, shapes, sizes = {}, {}, []
        for n in names:
            flat = out_flats[n]
            if strategy is None:
                flats[n], size = flat, tf.size(flat, tf.int64)
                if n in dynamic:
                    shapes[n] = tf.reshape(out_shapes[n], [1, -1])
            elif multi_worker:
                flats[n], size = gather_flat(strategy, flat)
                if n in dynamic:
                    shapes[n] = strategy.gather(strategy.run(lambda s: tf.reshape(s, [1, -1]),
                                                             args=(out_shapes[n],)), axis=0)
            else:
                parts = strategy.experimental_local_results(flat)
                flats[n] = tf.concat(parts, 0) if len(parts) > 1 else parts[0]
                size = tf.stack([tf.size(p, tf.int64) for p in parts])
                if n in dynamic:
                    shapes[n] = tf.stack(strategy.experimental_local_results(out_shapes[n]))
            sizes.append(size)
        sizes = tf.reshape(tf.stack(sizes), [1, -1]) if strategy is None else tf.stack(sizes, axis=1)
        return flats, shapes, sizes

    def write(out, rounds, value_tas, shape_tas, size_ta):
        flats, shapes, sizes = collect(out)
        value_tas = [ta.write(rounds, _joined([flats[names[j]] for j in group]))
                     for ta, group in zip(value_tas, groups.values())]
        shape_tas = [ta.write(rounds, shapes[n]) for ta, n in zip(shape_tas, dynamic)]
        return value_tas, shape_tas, size_ta.write(rounds, sizes)

    def split(value_tas, sizes, rounds):
        """Per name its flat values, from the per-dtype arrays."""
        per_round = tf.reduce_sum(tf.reshape(sizes, [rounds, -1, len(names)]), axis=1)  # [rounds, names]
        values = {}
        for ta, (dtype, group) in zip(value_tas, groups.items()):
            joined = tf.cond(rounds > 0, ta.concat, lambda dtype=dtype: tf.zeros([0], dtype))
            if len(group) == 1:
                values[names[group[0]]] = joined
                continue
            counts = tf.reshape(tf.gather(per_round, group, axis=1), [-1])
            labels = tf.repeat(tf.tile(tf.range(len(group)), [rounds]), counts)
            for j, part in zip(group, tf.dynamic_partition(joined, labels, len(group))):
                values[names[j]] = part
        return {n: values[n] for n in names}  # `sizes` columns are in this order

    def array(dtype, shape):
        return tf.TensorArray(dtype, size=0, dynamic_size=True, infer_shape=False, element_shape=shape)

    # No autograph: the loop is an explicit while_loop, and the tower was
    # already traced without it when the fetch names were checked.
    @tf.function(autograph=False)
    def step(source, limit):
        value_tas = [array(dtype, [None]) for dtype in groups]
        shape_tas = [array(tf.int64, [None, specs[n].shape.rank]) for n in dynamic]
        size_ta, valid_ta = array(tf.int64, [None, len(names)]), array(tf.bool, [None])
        limit = tf.minimum(limit, max_rounds)

        def body(rounds, done, value_tas, shape_tas, size_ta, valid_ta):
            def stop():
                return rounds, tf.constant(True), list(value_tas), list(shape_tas), size_ta, valid_ta

            if strategy is None:  # one batch a round: read it only when there is one
                has, get = read(source)

                def go_single():  # every round valid: `valid` is made after the loop
                    vt, st, zt = write(run([get()]), rounds, value_tas, shape_tas, size_ta)
                    return rounds + 1, tf.constant(False), vt, st, zt, valid_ta

                return tf.cond(has, go_single, stop)

            args, ok = pull(source)
            valid = gather_valid(strategy, ok) if multi_worker else tf.stack(ok)

            def go():
                vt, st, zt = write(run(args), rounds, value_tas, shape_tas, size_ta)
                return rounds + 1, tf.constant(False), vt, st, zt, valid_ta.write(rounds, valid)

            return tf.cond(tf.reduce_any(valid), go, stop)

        rounds, _, value_tas, shape_tas, size_ta, valid_ta = tf.while_loop(
            lambda rounds, done, *_: tf.logical_and(rounds < limit, tf.logical_not(done)), body,
            [tf.constant(0), tf.constant(False), value_tas, shape_tas, size_ta, valid_ta],
            parallel_iterations=1)

        def done(ta, empty):
            return tf.cond(rounds > 0, ta.concat, lambda: empty)

        sizes = done(size_ta, tf.zeros([0, len(names)], tf.int64))
        values = split(value_tas, sizes, rounds)
        shapes = {n: done(ta, tf.zeros([0, specs[n].shape.rank], tf.int64)) for ta, n in zip(shape_tas, dynamic)}
        valid = tf.ones([rounds], tf.bool) if strategy is None else done(valid_ta, tf.zeros([0], tf.bool))
        return rounds, valid, values, sizes, shapes

    return step


def _read_now(read: Callable, source) -> tuple:
    has, get = read(source)
    return has, get()


def _joined(flats: list) -> tf.Tensor:
    return flats[0] if len(flats) == 1 else tf.concat(flats, 0)
