"""Host dispatch (dispatch.py): built-ins that only sum take each step
call's batches as one block, other inferencers every batch in order, and
both give numpy's numbers; errors get a note naming the inferencer and the
batch or hook."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_step_threads_end
from infer_callbacks import ClassificationError, Inferencer, InferenceRunner, ScalarStats
from infer_callbacks.runner.dispatch import call_hook

N, BATCH = 60, 8  # 8 batches: 7 x 8 + 4


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(N, 6)).astype("float32"), rng.integers(0, 4, N).astype("int32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _numpy_loss_and_error(model, x, y):
    w, b = (np.asarray(v, np.float64) for v in model.get_weights())
    logits = x.astype(np.float64) @ w + b
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()), float(np.mean(logits.argmax(1) != y))


class EveryBatch(ScalarStats):
    """A subclass: it gets every batch (tensorpack code expects that)."""

    def _on_fetches(self, outputs):
        self.sizes.append(self.batch_extras()[0])
        super()._on_fetches(outputs)

    def _before_inference(self):
        self.sizes = []
        super()._before_inference()


def test_blocks_and_batches_give_the_same_numbers_as_numpy():
    model, x, y, ds = _setup()
    builtins = [ScalarStats("loss"), ClassificationError()]
    sub = EveryBatch("loss", prefix="batchwise")
    assert [inf.accepts_blocks() for inf in builtins] == [True, True] and not sub.accepts_blocks()
    runner = InferenceRunner(ds, [*builtins, sub], steps_per_execution=3, verbose=False)
    runner.set_model(model)
    results = runner.trigger()
    loss, error = _numpy_loss_and_error(model, x, y)
    assert sub.sizes == [BATCH] * 7 + [4]  # every batch, in dataset order
    assert results["validation_loss"] == pytest.approx(results["batchwise_loss"], rel=1e-12)
    np.testing.assert_allclose(results["validation_loss"], loss, rtol=1e-5)
    assert results["validation_error"] == pytest.approx(error, abs=1e-12)
    assert runner.num_samples_last_run == N


class FailsOnBatch(Inferencer):
    def __init__(self, k):
        self.k = k

    def _get_fetches(self):
        return ["label"]

    def _before_inference(self):
        self.seen = 0

    def _on_fetches(self, outputs):
        self.seen += 1
        if self.seen == self.k:
            raise RuntimeError("bad batch")

    def __repr__(self):
        return f"FailsOnBatch({self.k})"


@pytest.mark.parametrize("k", [1, 5, 8])
def test_an_inferencer_raising_on_batch_k_gets_a_note_naming_it_and_the_batch(k):
    model, _, _, ds = _setup()
    inf = FailsOnBatch(k)
    runner = InferenceRunner(ds, [ScalarStats("loss"), inf], steps_per_execution=3, verbose=False)
    runner.set_model(model)
    with pytest.raises(RuntimeError, match="bad batch") as info:
        runner.trigger()
    assert inf.seen == k
    notes = getattr(info.value, "__notes__", [])
    assert any(f"(raised by inferencer FailsOnBatch({k}) on validation batch {k} of" in n for n in notes), notes
    assert_step_threads_end()


def test_call_hook_passes_arguments_skips_missing_hooks_and_notes_errors():
    class Hooks:
        def set_run_context(self, ctx):
            return ("ctx", ctx)

        def after_inference(self):
            raise KeyError("missing")

        def __repr__(self):
            return "Hooks()"

    hooks = Hooks()
    assert call_hook(hooks, "set_run_context", 7) == ("ctx", 7)
    assert call_hook(hooks, "before_inference") is None  # no such hook: nothing to call
    with pytest.raises(KeyError) as info:
        call_hook(hooks, "after_inference")
    assert info.value.__notes__ == ["(raised by inferencer Hooks() in after_inference)"]
