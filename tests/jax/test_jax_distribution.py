"""InferenceRunner on a model under ``keras.distribution.DataParallel`` (a
fresh JAX process with three forced host devices): Keras's convention, each
batch split across the mesh (padded when 3 does not divide it, the padding
masked out of every result), equal to Keras's ``evaluate`` under the same
distribution and to the same runner on one device without it; per-batch
inferencers see whole batches. Another distribution is refused at setup."""

from __future__ import annotations

from conftest import run_python
from jax_prelude import PRELUDE
import pytest

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

ENV = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}


def test_data_parallel_model_splits_each_batch_like_evaluate():
    out = run_python(PRELUDE + '''
import jax
from infer_callbacks.runner.engine.jax_split_step import JaxSplitStep
assert len(jax.devices()) == 3, jax.devices()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
x, y, w = data(203)
model = make_model()
# Keras's evaluate under DataParallel needs batches 3 divides: 11 x 18 and a partial 3
val18 = tf.data.Dataset.from_tensor_slices((x[:201], y[:201])).batch(18)
# 12 x 16 and a partial 11: no batch divisible by 3 (Keras's own evaluate cannot run it split)
val16 = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)
sizes = Batches("loss")
runner = InferenceRunner(val18, [ScalarStats("loss"), ClassificationError(), sizes], verbose=False)
hist = model.fit(x[:198], y[:198], batch_size=18, epochs=2, verbose=0, callbacks=[runner])
binding = next(iter(runner._validator.bindings.values()))
assert isinstance(binding.step, JaxSplitStep) and len(binding.step.devices) == 3, binding.step
assert [len(b) for b in sizes.seen] == [18] * 11 + [3], [len(b) for b in sizes.seen]
loss, acc = model.evaluate(val18, verbose=0)          # under the distribution
got = {k: hist.history[k][-1] for k in ("validation_loss", "validation_error")}
close(got, {"validation_loss": loss, "validation_error": 1 - acc})
close(got, numpy_reference(model, x[:201], y[:201]))

def run(runner):
    runner.set_model(model); runner.before_train()
    return runner.trigger()

def three(val):
    seen = {n: Batches(n) for n in ("loss", "logits", "batch_mean")}
    got = run(InferenceRunner(val, [ScalarStats("loss"), ClassificationError(), *seen.values()],
                              tower_func=ops_tower(model), verbose=False))
    return got, {n: b.seen for n, b in seen.items()}

split16, seen16 = three(val16)
split18, seen18 = three(val18)
default16 = run(InferenceRunner(val16, [ScalarStats("loss"), ClassificationError()], verbose=False))
assert [len(b) for b in seen16["logits"]] == [16] * 12 + [11]

keras.distribution.set_distribution(None)               # the same runners, one device
one16, ref16 = three(val16)
one18, ref18 = three(val18)
close(split16, one16, rtol=1e-6); close(split18, one18, rtol=1e-6)
close(default16, run(InferenceRunner(val16, [ScalarStats("loss"), ClassificationError()], verbose=False)),
      rtol=1e-6)
loss16, acc16 = model.evaluate(val16, verbose=0)
close(split16, {"validation_loss": loss16, "validation_error": 1 - acc16})
close(default16, {"validation_loss": loss16, "validation_error": 1 - acc16})
close(split16, numpy_reference(model, x, y, w))
for seen, ref in ((seen16, ref16), (seen18, ref18)):
    for n in seen:        # per batch, in order: per-example values and the batch's own mean
        assert [a.shape for a in seen[n]] == [a.shape for a in ref[n]], n
        np.testing.assert_allclose(np.concatenate([np.ravel(a) for a in seen[n]]),
                                   np.concatenate([np.ravel(a) for a in ref[n]]), rtol=1e-5, atol=1e-6,
                                   err_msg=n)
# the partial batch's mean is over its 11 rows, not the padded 12
np.testing.assert_allclose(seen16["batch_mean"][-1], seen16["loss"][-1].mean(), rtol=1e-5)
print("OK", split16, one16)
''', env=ENV, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout


def test_model_parallel_is_named_at_setup():
    out = run_python(PRELUDE + '''
import jax
x, y, w = data(60)
model = make_model()
val = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
base = InferenceRunner(val, [ScalarStats("loss")], verbose=False)
base.set_model(model); base.before_train(); expected = base.trigger()
mesh = keras.distribution.DeviceMesh((1, 3), ["batch", "model"], jax.devices())
keras.distribution.set_distribution(
    keras.distribution.ModelParallel(layout_map=keras.distribution.LayoutMap(mesh), batch_dim_name="batch"))
runner = InferenceRunner(val, [ScalarStats("loss")], verbose=False)
try:
    runner.set_model(model); runner.before_train()
except ValueError as e:
    msg = str(e)
    assert "ModelParallel" in msg and "DataParallel" in msg and "device=" in msg, msg
else:
    raise AssertionError("no error under ModelParallel")
# the fix the message names: one device
one = InferenceRunner(val, [ScalarStats("loss")], device="/cpu:0", verbose=False)
one.set_model(model); one.before_train()
close(one.trigger(), expected, rtol=1e-6)
print("OK")
''', env=ENV, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout
