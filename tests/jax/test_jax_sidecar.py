"""SidecarEvaluator under JAX on the files keras.callbacks.ModelCheckpoint
writes: each file once, in order, a restart evaluates nothing twice, every
number equal to evaluate on the weights recorded at that epoch's end (with
BatchNorm's moving statistics, restored from the file). ModelSaver's
TensorFlow checkpoints stay refused, naming checkpoint_format='keras'."""

from __future__ import annotations

from conftest import run_python
from jax_prelude import PRELUDE
import pytest

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")


def test_sidecar_on_model_checkpoint_files_equals_evaluate():
    out = run_python(PRELUDE + '''
import tempfile
from infer_callbacks import SidecarEvaluator

x, y, w = data(240)
val = tf.data.Dataset.from_tensor_slices((x[:90], y[:90])).batch(32)   # 32, 32, 26
root = tempfile.mkdtemp()
ckdir, logdir = os.path.join(root, "ckpt"), os.path.join(root, "sidecar")

class Weights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.at = {}
    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = [np.array(v) for v in self.model.get_weights()]

weights = Weights()
make_model().fit(x, y, batch_size=30, epochs=3, verbose=0, callbacks=[
    keras.callbacks.ModelCheckpoint(os.path.join(ckdir, "epoch{epoch:03d}.weights.h5"), save_weights_only=True),
    weights])

try:
    SidecarEvaluator(make_model(), val, ScalarStats("loss"), ckdir, checkpoint_format="tensorflow")
except RuntimeError as e:
    assert "KERAS_BACKEND='jax'" in str(e) and "checkpoint_format='keras'" in str(e), str(e)
else:
    raise AssertionError("TensorFlow checkpoints accepted on JAX")

def sidecar(**kwargs):
    return SidecarEvaluator(make_model(), val, [ScalarStats("loss"), ClassificationError()], ckdir,
                            logdir=logdir, poll_seconds=0.02, **kwargs)

ev = sidecar(max_evaluations=2)
assert ev.checkpoint_format == "keras"
rows = ev.run()
assert [r["checkpoint"] for r in rows] == ["epoch001.weights.h5", "epoch002.weights.h5"], rows
open(os.path.join(ckdir, "training_finished"), "w").close()
ev = sidecar()   # a restart
rows += ev.run()
assert ev.stop_reason == "finished" and [r["epoch_num"] for r in rows] == [1, 2, 3], rows
assert sidecar().run() == []
stats = json.load(open(os.path.join(logdir, "stats.json")))
assert [(s["epoch_num"], s["global_step"]) for s in stats] == [(1, 8), (2, 16), (3, 24)], stats

model = make_model()
for r in rows:
    assert r["global_step"] == 8 * r["epoch_num"], r
    model.set_weights(weights.at[r["epoch_num"]])
    loss, acc = model.evaluate(val, verbose=0)
    np.testing.assert_allclose(r["validation_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(r["validation_error"], 1 - acc, atol=1e-6)
print("OK", [(r["epoch_num"], r["validation_loss"]) for r in rows])
''', env={"KERAS_BACKEND": "jax"}, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout
