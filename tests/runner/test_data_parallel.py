"""Data-parallel validation: whole batches per device (batch k*N+i on device
i, as in tensorpack), every sample exactly once, the same numbers for any
device count, per-batch custom inferencers included; and a model built under
a MirroredStrategy validated the Keras way (a global batch split across
replicas).

The multi-device cases run in one fresh subprocess whose CPU is split into 3
logical devices (``run_python(..., devices=3)``); it prints its results as
JSON and the tests compare them with numpy and scikit-learn references
computed here from the model's weights. Argument errors are checked in this
process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from conftest import run_python
from infer_callbacks import ClassificationError, DataParallelInferenceRunner, ScalarStats

pytestmark = pytest.mark.tensorflow_only("TensorFlow's logical devices (JAX: tests/jax/test_jax_data_parallel.py)")

N = 97  # prime: no batch size > 1 and no device count divides it
NUM_CLASSES = 5
# 10: 10 batches, the last round of 3 devices has one batch; 32: 4 batches
# (the last of 1 sample); 7: a tensorpack-style DataFlow of 14 batches.
BATCH_SIZES = (10, 32, 7)
RUNNERS = ("plain", "dp1", "dp2", "dp3")  # InferenceRunner; DataParallel on 1, 2, 3 devices

SCENARIO = r'''
import json
import numpy as np
import keras
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from infer_callbacks import (ClassificationError, DataParallelInferenceRunner, Inferencer, InferenceRunner,
                             ScalarStats)

data = np.load(DATA_PATH)
x, y = data["x"], data["y"]


def build(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(NUM_CLASSES)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class PerBatch(Inferencer):
    """Client code of the kind that needs whole batches: a per-batch mean
    and a per-batch AUC, averaged; plus what it was given, in order."""

    def _before_inference(self):
        self.sizes, self.labels, self.means, self.aucs, self.replicas = [], [], [], [], []

    def _get_fetches(self):
        return ["output", "label"] + (["replica"] if self.with_replica else [])

    def __init__(self, with_replica=False):
        self.with_replica = with_replica

    def _on_fetches(self, results):
        logits, label = results[:2]
        self.sizes.append(len(label))
        self.labels.extend(int(v) for v in label)
        self.means.append(float(np.mean(logits, dtype=np.float64)))
        positive = label == 0
        self.aucs.append(float(roc_auc_score(positive, logits[:, 0])) if 0 < positive.sum() < len(label)
                         else None)
        if self.with_replica:
            self.replicas.append(sorted(set(int(v) for v in results[2])))

    def _after_inference(self):
        aucs = [a for a in self.aucs if a is not None]
        return {"validation_batch_mean": float(np.mean(self.means)), "validation_batch_auc": float(np.mean(aucs))}

    def record(self):
        return {"sizes": self.sizes, "labels": self.labels, "means": self.means, "aucs": self.aucs,
                "replicas": self.replicas}


class DataFlow:
    """tensorpack-style: __iter__, __len__, reset_state()."""

    def __init__(self, batch_size):
        self.batch_size = batch_size

    def reset_state(self):
        pass

    def __len__(self):
        return -(-len(y) // self.batch_size)

    def __iter__(self):
        for i in range(0, len(y), self.batch_size):
            yield x[i:i + self.batch_size], y[i:i + self.batch_size]


def val_input(batch_size):
    if batch_size == 7:
        return DataFlow(7)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


DEVICES = {"dp1": ["/cpu:0"], "dp2": ["/cpu:0", "/cpu:1"], "dp3": ["/cpu:0", "CPU:1", "/device:CPU:2"]}


def make(kind, inp, infs, **kwargs):
    if kind == "plain":
        return InferenceRunner(inp, infs, verbose=False, steps_per_execution=3, **kwargs)
    return DataParallelInferenceRunner(inp, infs, DEVICES[kind], verbose=False, steps_per_execution=3, **kwargs)


out = {"runs": {}}

# 1. A model built outside any strategy, validated standalone by every runner.
model = build(0.0)
for batch_size in BATCH_SIZES:
    for kind in ("plain", "dp1", "dp2", "dp3"):
        per_batch = PerBatch()
        runner = make(kind, val_input(batch_size), [ScalarStats("loss"), ClassificationError(), per_batch])
        runner.set_model(model)
        results = runner.trigger()
        out["runs"][f"{batch_size}/{kind}"] = {"results": results, "samples": runner.num_samples_last_run,
                                               **per_batch.record()}
        if batch_size == 10 and kind == "dp3":
            out["rerun"] = {"same": runner.trigger() == results, "tracing_count": runner.tracing_count}
out["weights"] = [w.tolist() for w in model.get_weights()]

# Inside fit (learning rate 0: the weights stay), 3 devices, and a custom
# tower that says which replica ran each batch.
def tower(x, label):
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return {"output": model(x, training=False), "label": label, "replica": tf.fill(tf.shape(label), replica)}

placed = PerBatch(with_replica=True)
in_fit = make("dp3", val_input(10), [ScalarStats("loss"), ClassificationError()])
custom = make("dp3", val_input(10), [placed], tower_func=tower)
train = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(16)
history = model.fit(train, epochs=1, verbose=0, callbacks=[in_fit, custom])
out["fit"] = {"logs": {k: v[0] for k, v in history.history.items()}, **placed.record()}

# Without the background thread: the same numbers.
serial = make("dp3", val_input(10), [ScalarStats("loss"), ClassificationError()], pipeline=False)
serial.set_model(model)
out["serial"] = serial.trigger()

# Variables on a device no replica runs on: read from where they live.
with tf.distribute.OneDeviceStrategy("/cpu:2").scope():
    elsewhere = build(0.0)
far = make("dp2", val_input(32), [ScalarStats("loss"), ClassificationError()])
far.set_model(elsewhere)
out["elsewhere"] = {"results": far.trigger(), "weights": [w.tolist() for w in elsewhere.get_weights()],
                    "variable_devices": sorted({v.value.device for v in elsewhere.weights})}

# 2. A model built under a MirroredStrategy, trained one epoch with a plain
#    InferenceRunner: Keras's convention, each global batch split in two.
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = build(0.05)
per_batch = PerBatch()
implicit = InferenceRunner(val_input(32), [ScalarStats("loss"), ClassificationError(), per_batch], verbose=False)
history = mirrored.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(20), epochs=1, verbose=0,
                       callbacks=[implicit])
out["mirrored"] = {"logs": {k: v[0] for k, v in history.history.items()}, **per_batch.record(),
                   "weights": [w.tolist() for w in mirrored.get_weights()]}

# The same devices listed for DataParallelInferenceRunner (in another order) work.
same = DataParallelInferenceRunner(val_input(7), [ScalarStats("loss")], ["/cpu:1", "/cpu:0"], verbose=False)
same.set_model(mirrored)
out["mirrored"]["same_devices"] = same.trigger()

# Other devices than the model's: refused in on_train_begin, before any training step.
steps_before = int(mirrored.optimizer.iterations.numpy())
try:
    mirrored.fit(train, epochs=1, verbose=0, callbacks=[
        DataParallelInferenceRunner(val_input(10), [ScalarStats("loss")], ["/cpu:0", "/cpu:1", "/cpu:2"])])
    out["mismatch_error"] = None
except ValueError as e:
    out["mismatch_error"] = str(e)
out["mismatch_trained_steps"] = int(mirrored.optimizer.iterations.numpy()) - steps_before

print("RESULT " + json.dumps(out))
'''


def _logits(weights, x):
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    return np.maximum(x.astype(np.float64) @ w1 + b1, 0.0) @ w2 + b2


def numpy_reference(weights, x, y) -> dict[str, float]:
    """The epoch numbers over the whole set at once, in float64, from the weights."""
    logits = _logits(weights, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {"validation_loss": float(np.mean(-log_prob[np.arange(len(y)), y])),
            "validation_error": float(np.mean(np.argmax(logits, axis=1) != y))}


def per_batch_reference(weights, x, y, batch_size):
    """What a per-batch inferencer must see: the dataset's own batches."""
    logits = _logits(weights, x)
    sizes, means, aucs = [], [], []
    for i in range(0, len(y), batch_size):
        lg, lab = logits[i:i + batch_size], y[i:i + batch_size] == 0
        sizes.append(len(lab))
        means.append(float(lg.mean()))
        aucs.append(float(roc_auc_score(lab, lg[:, 0])) if 0 < lab.sum() < len(lab) else None)
    return sizes, means, aucs


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 6)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=N).astype("int64")
    return x, y


@pytest.fixture(scope="module")
def scenario(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("data_parallel") / "data.npz"
    np.savez(path, x=data[0], y=data[1])
    code = (f"DATA_PATH = {str(path)!r}\nNUM_CLASSES = {NUM_CLASSES}\nBATCH_SIZES = {BATCH_SIZES!r}\n"
            + SCENARIO)
    proc = run_python(code, devices=3, timeout=400)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def _assert_close(actual: dict, expected: dict, what: str, rtol: float = 1e-5):
    for key, value in expected.items():
        assert key in actual, f"{what}: {key} missing from {sorted(actual)}"
        np.testing.assert_allclose(actual[key], value, rtol=rtol, err_msg=f"{what}: {key}")


def _assert_same_list(actual, expected, what, rtol=1e-5):
    assert len(actual) == len(expected), what
    for a, e in zip(actual, expected):
        if e is None:
            assert a is None, what
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, err_msg=what)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_every_device_count_equals_numpy_and_one_device(scenario, data, batch_size):
    reference = numpy_reference(scenario["weights"], *data)
    plain = scenario["runs"][f"{batch_size}/plain"]["results"]
    for kind in RUNNERS:
        run = scenario["runs"][f"{batch_size}/{kind}"]
        _assert_close(run["results"], reference, f"batch {batch_size}, {kind} vs numpy")
        _assert_close(run["results"], plain, f"batch {batch_size}, {kind} vs InferenceRunner")
        assert run["samples"] == N


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_per_batch_inferencers_see_the_same_whole_batches_in_order(scenario, data, batch_size):
    x, y = data
    sizes, means, aucs = per_batch_reference(scenario["weights"], x, y, batch_size)
    for kind in RUNNERS:
        run = scenario["runs"][f"{batch_size}/{kind}"]
        what = f"batch {batch_size}, {kind}"
        assert run["sizes"] == sizes, what  # whole batches, a partial last round included
        assert run["labels"] == y.tolist(), what  # each sample once, in dataset order
        _assert_same_list(run["means"], means, what + ": per-batch mean")
        _assert_same_list(run["aucs"], aucs, what + ": per-batch AUC (sklearn)")


def test_batch_k_times_n_plus_i_runs_on_replica_i(scenario, data):
    fit = scenario["fit"]
    assert fit["sizes"] == [10] * 9 + [7]
    assert fit["replicas"] == [[k % 3] for k in range(10)]  # 4 rounds, the last with one batch
    _assert_close(fit["logs"], numpy_reference(scenario["weights"], *data), "3 devices in fit's History")


def test_without_pipeline_thread_same_results(scenario, data):
    _assert_close(scenario["serial"], numpy_reference(scenario["weights"], *data), "pipeline=False, 3 devices")


def test_variables_on_another_device_are_read_where_they_live(scenario, data):
    elsewhere = scenario["elsewhere"]
    assert all(d.endswith("CPU:2") for d in elsewhere["variable_devices"]), elsewhere["variable_devices"]
    _assert_close(elsewhere["results"], numpy_reference(elsewhere["weights"], *data),
                  "model on /cpu:2, replicas on /cpu:0 and /cpu:1")


def test_rerun_gives_same_results_without_retracing(scenario):
    assert scenario["rerun"] == {"same": True, "tracing_count": 1}


def test_model_built_under_mirrored_strategy_splits_batches_like_keras(scenario, data):
    x, y = data
    mirrored = scenario["mirrored"]
    reference = numpy_reference(mirrored["weights"], x, y)
    _assert_close(mirrored["logs"], reference, "InferenceRunner, model under MirroredStrategy, vs numpy")
    sizes, means, aucs = per_batch_reference(mirrored["weights"], x, y, 32)
    assert mirrored["sizes"] == sizes == [32, 32, 32, 1]  # a replica's halves merged back into the batch
    assert mirrored["labels"] == y.tolist()
    _assert_same_list(mirrored["means"], means, "mirrored per-batch mean")
    _assert_close(mirrored["same_devices"], {"validation_loss": reference["validation_loss"]},
                  "DataParallelInferenceRunner on the model's devices")


def test_devices_other_than_the_models_strategy_fail_before_training(scenario):
    message = scenario["mismatch_error"]
    assert message is not None
    assert "MirroredStrategy over ['/device:CPU:0', '/device:CPU:1']" in message
    assert "InferenceRunner" in message and "CPU:2" in message
    assert scenario["mismatch_trained_steps"] == 0


# -- construction, in this process (one CPU device) ----------------------------
# (device-string parsing and its errors: test_devices.py)

def _val():
    x = np.zeros((4, 3), np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.zeros(4, np.int64))).batch(2)


def test_devices_are_checked_at_construction():
    with pytest.raises(ValueError, match=r"do not exist on this machine: \[0, 1\].*Available devices: \[.*CPU:0"):
        DataParallelInferenceRunner(_val(), [ScalarStats("loss")], [0, 1])
    with pytest.raises(TypeError, match="gpus"):
        DataParallelInferenceRunner(_val(), [ScalarStats("loss")], None)


def test_device_strings_and_a_single_string_are_accepted():
    assert DataParallelInferenceRunner(_val(), [ClassificationError()], "/cpu:0").devices == ["/device:CPU:0"]
    assert DataParallelInferenceRunner(_val(), ClassificationError(), gpus=["CPU:0"]).devices == ["/device:CPU:0"]


def test_device_argument_is_refused_with_a_pointer_to_gpus():
    with pytest.raises(TypeError, match="`gpus`"):
        DataParallelInferenceRunner(_val(), [ScalarStats("loss")], ["/cpu:0"], device="/cpu:0")
