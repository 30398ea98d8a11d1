"""InferenceRunner under KERAS_BACKEND=jax: the numbers of Keras's evaluate
on JAX and of numpy, whatever the batching (partial last batch, several
batches per call, Python inputs, several sets). Each test runs in a fresh
process: this one stays on TensorFlow."""

from __future__ import annotations

import keras
import pytest

from conftest import run_python
from jax_prelude import PRELUDE

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

JAX = {"KERAS_BACKEND": "jax"}


def _ok(out):
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return out.stdout


def test_fit_matches_evaluate_and_numpy_every_batching():
    out = _ok(run_python(PRELUDE + '''
x, y, w = data()
val = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)   # 12 full batches and one of 11
model = make_model()
main = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], tower_func=ops_tower(model))
batches = Batches()
small = InferenceRunner(val, [ScalarStats("loss", prefix="small"), batches], tower_func=ops_tower(model),
                        steps_per_execution=3, pipeline=False)
python = InferenceRunner([(x[i:i + 16], y[i:i + 16], w[i:i + 16]) for i in range(0, len(x), 16)],
                         [ScalarStats("loss", prefix="python")], tower_func=ops_tower(model))
arrays = InferenceRunner((x, y, w), [ScalarStats("loss", prefix="arrays")], tower_func=ops_tower(model),
                         batch_size=7)
hist = model.fit(x, y, sample_weight=w, batch_size=32, epochs=2, verbose=0,
                 callbacks=[main, small, python, arrays])
loss, acc = model.evaluate(val, verbose=0)
ref = numpy_reference(model, x, y, w)
close(main.last_results, {"validation_loss": loss, "validation_error": 1 - acc})
close(main.last_results, ref, rtol=1e-6)
assert hist.history["validation_loss"][-1] == main.last_results["validation_loss"]
for r, key in ((small, "small_loss"), (python, "python_loss"), (arrays, "arrays_loss")):
    close({"validation_loss": r.last_results[key]}, ref, rtol=1e-6)
# per-batch values in dataset order, the partial last batch apart
assert [len(b) for b in batches.seen] == [16] * 12 + [11], [len(b) for b in batches.seen]
np.testing.assert_allclose(np.concatenate(batches.seen), model.predict(x, batch_size=16, verbose=0),
                           rtol=1e-5, atol=1e-6)
assert main.num_samples_last_run == len(x)
# compiled step variants: a few call sizes and the partial batch's shape, not one per epoch
assert main.tracing_count <= 6, main.tracing_count
print("OK", main.last_results, loss, acc)
''', env=JAX, timeout=300))
    assert "OK" in out


def test_several_sets_scalar_per_batch_and_unknown_fetch():
    out = _ok(run_python(PRELUDE + '''
x, y, w = data(120)
model = make_model()
model.fit(x, y, epochs=1, verbose=0)
sets = {"clean": tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
        "noisy": tf.data.Dataset.from_tensor_slices((x + 0.5, y)).batch(25)}
r = InferenceRunner(sets, [ScalarStats(["loss", "batch_mean"]), ClassificationError()],
                    tower_func=ops_tower(model), combine="mean")
r.set_model(model); r.before_train()
got = r.trigger()
for name, ds in sets.items():
    loss, acc = model.evaluate(ds, verbose=0)
    close({"l": got[f"validation_{name}_loss"], "e": got[f"validation_{name}_error"]},
          {"l": loss, "e": 1 - acc})
    # a scalar per batch, weighted by the batch's samples (the batch means' weighted mean)
    close({"m": got[f"validation_{name}_batch_mean"]}, {"m": loss})
close({"c": got["validation_loss"]}, {"c": (got["validation_clean_loss"] + got["validation_noisy_loss"]) / 2})
try:
    bad = InferenceRunner(sets["clean"], [ScalarStats("no_such_tensor")], tower_func=ops_tower(model))
    bad.set_model(model); bad.before_train()
except ValueError as e:
    message = str(e)
else:
    raise AssertionError("no error")
assert "no_such_tensor" in message and "'logits'" in message and "'x'" in message, message
assert "ScalarStats" in message, message
# padded sequences: every batch has its own length, and reaches the tower exactly as made
lengths = [3, 7, 2, 9, 4, 4, 6, 1, 8, 5, 2]
seqs = [np.arange(1, n + 1, dtype="float32") * (i + 1) for i, n in enumerate(lengths)]
ds = tf.data.Dataset.from_generator(lambda: iter(seqs), output_signature=tf.TensorSpec([None], tf.float32)
                                    ).padded_batch(3)
seen = Batches("tokens")
seq = InferenceRunner(ds, [ScalarStats("total"), seen],
                      tower_func=lambda tokens: {"total": ops.sum(tokens, axis=-1)})
seq.set_model(model); seq.before_train()
for _ in range(2):
    got = seq.trigger()
    assert abs(got["validation_total"] - np.mean([a.sum() for a in seqs])) < 1e-4, got
    expected = [b for b in ds.as_numpy_iterator()]
    assert len(seen.seen) == len(expected) and all(np.array_equal(a, b) for a, b in zip(seen.seen, expected))
print("OK")
''', env=JAX, timeout=300))
    assert "OK" in out


def test_default_tower_matches_evaluate():
    out = _ok(run_python(PRELUDE + '''
x, y, w = data()
val = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
model = make_model()
r = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()])
model.fit(x, y, epochs=1, verbose=0, callbacks=[r])
loss, acc = model.evaluate(val, verbose=0)
close(r.last_results, {"validation_loss": loss, "validation_error": 1 - acc})
print("OK")
''', env=JAX, timeout=300))
    assert "OK" in out


def test_unsupported_backend_is_named(monkeypatch):
    from infer_callbacks.runner.engine.select import current_engine
    monkeypatch.setattr(keras.backend, "backend", lambda: "mlx")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND='mlx'.*jax"):
        current_engine()
