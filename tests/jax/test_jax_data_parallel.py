"""DataParallelInferenceRunner on several JAX devices (a fresh process with
three forced host devices): whole batches per device, every result and every
per-batch value identical to one device, in dataset order."""

from __future__ import annotations

from conftest import run_python
from jax_prelude import PRELUDE
import pytest

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

ENV = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}


def test_one_to_three_devices_identical():
    out = run_python(PRELUDE + '''
import jax
assert len(jax.devices()) == 3, jax.devices()
x, y, w = data(203)
model = make_model()
model.fit(x, y, epochs=1, verbose=0)
val = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)   # 13 batches: the last round is short
loss, acc = model.evaluate(val, verbose=0)

def run(runner):
    runner.set_model(model); runner.before_train()
    return runner.trigger(), runner

seen = {}
base, _ = run(InferenceRunner(val, [ScalarStats("loss"), ClassificationError(), Batches()],
                              tower_func=ops_tower(model)))
close(base, {"validation_loss": loss, "validation_error": 1 - acc})
for gpus, spe in ((["/cpu:0"], None), (["/cpu:0", "/cpu:1"], 2), (["/cpu:2", "/cpu:0", "/cpu:1"], None),
                  (["/cpu:0", "/cpu:1", "/cpu:2"], 3)):
    if True:
        batches = Batches()
        got, r = run(DataParallelInferenceRunner(val, [ScalarStats("loss"), ClassificationError(), batches],
                                                 gpus=gpus, tower_func=ops_tower(model),
                                                 steps_per_execution=spe))
        assert got == base, (gpus, spe, got, base)
        assert [len(b) for b in batches.seen] == [16] * 12 + [11]
        seen[(len(gpus), spe)] = np.concatenate(batches.seen)
        assert r.num_samples_last_run == 203
ref = seen[(1, None)]
for k, v in seen.items():
    np.testing.assert_array_equal(v, ref, err_msg=str(k))
# a device this process does not have: named, with the ones it has
try:
    DataParallelInferenceRunner(val, [ScalarStats("loss")], gpus=["/cpu:0", "/cpu:7"])
except ValueError as e:
    assert "/cpu:7" in str(e) and "/device:CPU:2" in str(e), str(e)  # listed as TensorFlow lists them
else:
    raise AssertionError("no error")
# InferenceRunner(device=...) runs on that device
got, _ = run(InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], tower_func=ops_tower(model),
                             device="/cpu:2"))
assert got == base, (got, base)
print("OK", base)
''', env=ENV, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout
