"""The JAX engine's step (``jax_step.JaxStep``) and call sizes
(``jax_sizes.CallSizes``) on a tower of plain ``jax.numpy``: every batch's
outputs, computed alone or in a ``vmap`` group, equal numpy per batch,
whatever the count in a call and the padding past it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infer_callbacks.runner.engine.jax.sizes import CallSizes
from infer_callbacks.runner.engine.jax.step import JaxStep, chunk_size


def tower(values, batch):
    x, y = batch
    return {"score": (x * values[0]).sum(-1) + y, "batch_max": x.max()}  # per row; one per batch


@pytest.mark.parametrize("rows,count,rounds", [(4, 16, 16), (4, 11, 16), (4, 1, 4), (300, 5, 16)])
def test_each_batch_equals_numpy_alone_or_in_a_group(rows, count, rounds):
    rng = np.random.default_rng(rows + count)
    x = rng.normal(size=(count, rows, 3)).astype("float32")
    y = rng.normal(size=(count, rows)).astype("float32")
    w = np.array([1.0, -2.0, 0.5], "float32")
    step = JaxStep(tower, [jax.devices()[0]], {"score": 1, "batch_max": 0})
    launched = step.launch(step.place([jnp.asarray(w)]), (x, y), count, rounds, tuple)
    chunk, _ = step.finish(launched)
    assert len(chunk) == count
    for j, out in enumerate(chunk.batches()):
        np.testing.assert_allclose(out["score"], (x[j] * w).sum(-1) + y[j], rtol=1e-6)
        np.testing.assert_allclose(out["batch_max"], x[j].max())
    grouped = chunk_size([((rows, 3), x.dtype), ((rows,), y.dtype)], rounds)
    assert grouped == (1 if rows == 300 else min(rounds, 16))  # 300 rows: each batch alone


def test_later_passes_reuse_the_sizes_a_first_pass_compiled():
    sizes = CallSizes(max_rounds=1024, per_round=1)
    first = [sizes.rounds("full", n) for n in (1, 3, 10, 40)] + [sizes.rounds("last", 1)]
    assert first == [1, 4, 16, 64, 1]
    sizes.pass_ended()
    assert sizes.most("full", 1024) == 64          # no larger call than compiled
    assert sizes.rounds("full", 20) == 64 and sizes.rounds("full", 2) == 4
    assert sizes.most("new shape", 256) == 256     # a new signature compiles as it must
