"""InferenceRunner on a model under ``keras.distribution.DataParallel`` (a
fresh JAX process with three forced host devices): Keras's convention, each
batch split across the mesh (padded when 3 does not divide it, the padding
masked out of every result), equal to Keras's ``evaluate`` under the same
distribution and to the same runner on one device without it; per-batch
inferencers see whole batches. An asynchronous run's snapshot is laid out as
Keras lays out the weights (one copy per device) and each of its results
equals ``evaluate`` on the weights of the epoch it names.
``DataParallelInferenceRunner`` under the distribution keeps whole batches
per device, identical to one device without it. Another distribution is
refused at setup."""

from __future__ import annotations

from conftest import run_python
from jax_prelude import PRELUDE
import pytest

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

ENV = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}


def test_data_parallel_model_splits_each_batch_like_evaluate():
    out = run_python(PRELUDE + '''
import jax
from infer_callbacks.runner.engine.jax.split_step import JaxSplitStep
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


WEIGHTS_BY_EPOCH = '''
class Weights(keras.callbacks.Callback):
    """The model's weights at each epoch's end (what a run of that epoch must measure)."""
    def __init__(self):
        super().__init__(); self.at = {}
    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = [np.array(v) for v in self.model.get_weights()]
'''


def test_async_snapshot_under_data_parallel_measures_each_epochs_weights():
    out = run_python(PRELUDE + WEIGHTS_BY_EPOCH + '''
import jax
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
x, y, w = data(600)
model = make_model()
val = tf.data.Dataset.from_tensor_slices((x[:201], y[:201])).batch(18)   # evaluate needs 3 | batch
weights = Weights()
r = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], asynchronous=True, verbose=False)
model.fit(x[:594], y[:594], batch_size=18, epochs=4, verbose=0, callbacks=[weights, r])
reports = r.pop_reports()               # every run: epochs 1-3 in the background, 4 in the foreground
assert sorted(rep.epoch_num for rep in reports) == [1, 2, 3, 4], [rep.epoch_num for rep in reports]
# the snapshot is laid out as Keras lays out the weights, replicated: one copy on each of the 3 devices
# (snapshot_nbytes counts every device's copy)
assert r.snapshot_nbytes == 3 * sum(v.nbytes for v in weights.at[4]), r.snapshot_nbytes
for rep in reports:                     # each equals evaluate under the distribution on its epoch's weights
    model.set_weights(weights.at[rep.epoch_num])
    loss, acc = model.evaluate(val, verbose=0)
    close(rep.scalars, {"validation_loss": loss, "validation_error": 1 - acc})
print("OK", [(rep.epoch_num, rep.scalars["validation_loss"]) for rep in reports], r.snapshot_nbytes)
''', env=ENV, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout


def test_data_parallel_runner_gives_whole_batches_under_data_parallel():
    out = run_python(PRELUDE + WEIGHTS_BY_EPOCH + '''
import jax
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
x, y, w = data(600)
model = make_model()
val18 = tf.data.Dataset.from_tensor_slices((x[:201], y[:201])).batch(18)   # evaluate needs 3 | batch
val16 = tf.data.Dataset.from_tensor_slices((x[:203], y[:203], w[:203])).batch(16)  # 16, 11: 3 divides neither
# in fit, asynchronous: each epoch's weights, whole batches per device, equal to evaluate under the distribution
weights = Weights()
r = DataParallelInferenceRunner(val18, [ScalarStats("loss"), ClassificationError()],
                                gpus=["/cpu:0", "/cpu:1", "/cpu:2"], asynchronous=True, verbose=False)
model.fit(x[:594], y[:594], batch_size=18, epochs=3, verbose=0, callbacks=[weights, r])
reports = r.pop_reports()
assert sorted(rep.epoch_num for rep in reports) == [1, 2, 3], [rep.epoch_num for rep in reports]
assert r.snapshot_nbytes == 3 * sum(v.nbytes for v in weights.at[3]), r.snapshot_nbytes  # a copy per device
for rep in reports:
    model.set_weights(weights.at[rep.epoch_num])
    loss, acc = model.evaluate(val18, verbose=0)
    close(rep.scalars, {"validation_loss": loss, "validation_error": 1 - acc})

def run(runner):
    runner.set_model(model); runner.before_train()
    return runner.trigger()

def whole(gpus):
    seen = {n: Batches(n) for n in ("logits", "batch_mean")}
    runner = DataParallelInferenceRunner(val16, [ScalarStats("loss"), ClassificationError(), *seen.values()],
                                         gpus=gpus, tower_func=ops_tower(model), verbose=False)
    got = run(runner)
    # its own devices, one whole batch each (not the distribution's batch split)
    assert runner.strategy_for(model) == [jax.devices()[int(g[-1])] for g in gpus], runner.strategy_for(model)
    return got, {n: b.seen for n, b in seen.items()}

under = {tuple(g): whole(g) for g in (["/cpu:0", "/cpu:1", "/cpu:2"], ["/cpu:2", "/cpu:0"], ["/cpu:1"])}
default = run(DataParallelInferenceRunner(val16, [ScalarStats("loss"), ClassificationError()],
                                          gpus=["/cpu:0", "/cpu:1", "/cpu:2"], verbose=False))
keras.distribution.set_distribution(None)         # the reference: one device, no distribution
one, ref = whole(["/cpu:0"])
loss, acc = model.evaluate(val16, verbose=0)
close(one, {"validation_loss": loss, "validation_error": 1 - acc})
close(one, numpy_reference(model, x[:203], y[:203], w[:203]))
close(default, one, rtol=1e-6)
for gpus, (got, seen) in under.items():
    assert got == one, (gpus, got, one)            # the same per-batch program on each device
    assert [len(b) for b in seen["logits"]] == [16] * 12 + [11], gpus   # as the input made them
    for n in seen:
        np.testing.assert_array_equal(np.concatenate([np.ravel(a) for a in seen[n]]),
                                      np.concatenate([np.ravel(a) for a in ref[n]]), err_msg=f"{gpus} {n}")
print("OK", one)
''', env=ENV, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout
