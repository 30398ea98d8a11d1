"""InferenceRunner(asynchronous=True) under JAX: a device-side copy of each
epoch's weights is validated while training goes on (Keras's JAX trainer
donates its state to every train step, so holding the arrays alone would
not do); every published number equals evaluate on the weights of the epoch
it names."""

from __future__ import annotations

from conftest import run_python
from jax_prelude import PRELUDE
import pytest

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")


def test_async_results_equal_evaluate_on_each_epochs_weights():
    out = run_python(PRELUDE + '''
x, y, w = data(600)
model = make_model()
val = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)

class Weights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.at = {}
    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = [np.array(v) for v in self.model.get_weights()]

rows = []
class Rows(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        rows.append(dict(logs))

weights = Weights()
r = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], tower_func=ops_tower(model),
                    asynchronous=True)
model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[weights, r, Rows()])
expected_bytes = sum(v.nbytes for v in weights.at[1])
assert r.snapshot_nbytes == expected_bytes, (r.snapshot_nbytes, expected_bytes)
published = [row for row in rows if "validation_epoch" in row]
assert published and published[-1]["validation_epoch"] == 4, rows
assert len({row["validation_epoch"] for row in published}) == len(published)
for row in published:
    model.set_weights(weights.at[row["validation_epoch"]])
    loss, acc = model.evaluate(val, verbose=0)
    close({"validation_loss": row["validation_loss"], "validation_error": row["validation_error"]},
          {"validation_loss": loss, "validation_error": 1 - acc})
print("OK", [(row["validation_epoch"], row["validation_loss"]) for row in published], r.snapshot_nbytes)
''', env={"KERAS_BACKEND": "jax"}, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "OK" in out.stdout
    print(out.stdout)
