"""Validation across workers: each worker's share of the batches, and
fixed-shape collectives to exchange the step's results.

A collective op's instance is fixed when the function is traced, so every
call of it must see the same shape: values travel as zero-padded
fixed-size chunks.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["shard_for_worker", "gather_flat", "gather_valid"]

# Elements per collective.
_CHUNK = 16384
_WIRE = {tf.bool: tf.int32, tf.int8: tf.int32, tf.uint8: tf.int32, tf.int16: tf.int32,
         tf.uint16: tf.int32, tf.bfloat16: tf.float32}


def shard_for_worker(dataset: tf.data.Dataset, replicas: int, local: int, worker: int) -> tf.data.Dataset:
    """The batches worker ``worker`` runs in ``whole`` mode: in every round of
    ``replicas`` batches, the ``local`` ones of its replicas, in order."""
    def mine(index, _):
        return tf.equal((index % replicas) // local, worker)
    return dataset.enumerate().filter(mine).map(lambda _, batch: batch)


def gather_flat(strategy, flat) -> tuple[tf.Tensor, tf.Tensor]:
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


def gather_valid(strategy, ok: list) -> tf.Tensor:
    local = len(ok)
    flags = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.reshape(tf.cast(ok[ctx.replica_id_in_sync_group % local], tf.int32), [1]))
    return tf.cast(strategy.gather(flags, axis=0), tf.bool)
