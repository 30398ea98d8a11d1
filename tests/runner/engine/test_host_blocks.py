"""The JAX engine's input blocks (``jax_input.Blocks``): every batch of the
input, in order, exactly as iterating the ``tf.data`` pipeline gives it,
whatever the call sizes asked; Keras-style arrays read as views."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from infer_callbacks.data.source import InputSource
from infer_callbacks.runner.engine.host_blocks import Blocks, block_signature, grouped


def _batches_of(blocks: Blocks, sizes) -> list[tuple]:
    """Every batch handed over by ``take``, asked ``sizes`` in turn (cycled)."""
    out, i = [], 0
    while not blocks.exhausted:
        leaves, m = blocks.take(sizes[i % len(sizes)])
        i += 1
        if not m:
            break
        assert 1 <= m <= sizes[(i - 1) % len(sizes)]
        assert len({block_signature(leaves)}) == 1 and all(len(a) == m for a in leaves)
        out.extend(tuple(a[j] for a in leaves) for j in range(m))
    return out


def _expected(dataset) -> list[tuple]:
    return [tuple(tf.nest.flatten(e)) for e in dataset.as_numpy_iterator()]


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(g) == len(e)
        for a, b in zip(g, e):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 90), batch=st.integers(1, 16), sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
       limit=st.one_of(st.none(), st.integers(1, 8)))
def test_arrays_give_every_batch_in_order_as_keras_batches_them(n, batch, sizes, limit):
    rng = np.random.default_rng(n)
    x = {"a": rng.normal(size=(n, 3)).astype("float32"), "b": rng.integers(0, 5, size=(n,))}
    y = rng.normal(size=(n, 2))
    source = InputSource((x, y), batch_size=batch, limit_batches=limit)
    assert source.arrays is not None
    _assert_same(_batches_of(Blocks(source), sizes), _expected(source.dataset))


def test_array_blocks_are_views_of_the_users_arrays():
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20)
    source = InputSource((x, y), batch_size=4)
    leaves, m = Blocks(source).take(3)
    assert m == 3 and leaves[0].shape == (3, 4, 2)
    assert np.shares_memory(leaves[0], x) and np.shares_memory(leaves[1], y)


@pytest.mark.parametrize("group", [1, 2, 4])
def test_grouped_tf_data_with_padded_sequences_gives_each_batch_as_the_input_made_it(group):
    lengths = [3, 5, 5, 2, 7, 7, 7, 1, 4]

    def gen():
        for i, t in enumerate(lengths):
            yield np.full((2, t), i, "int32"), np.full((2,), i, "float32")

    ds = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.float32)))
    source = InputSource(ds)
    blocks = Blocks(source, group, grouped(source.dataset, group) if group > 1 else None)
    got = _batches_of(blocks, [3, 1, 4])
    _assert_same(got, _expected(source.dataset))
    assert [g[0].shape[1] for g in got] == lengths
