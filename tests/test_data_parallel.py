"""Data-parallel validation: one replica per device, every sample exactly once,
the same numbers as one device and as numpy.

The multi-device cases run in one fresh subprocess whose CPU is split into 3
logical devices (``run_python(..., devices=3)``); it prints its results as
JSON and the tests here compare them with a numpy reference computed from the
model's weights. Argument errors are checked in this process (one CPU, no GPU).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_python
from infer_callbacks import ClassificationError, DataParallelInferenceRunner, ScalarStats

N = 97  # prime: no batch size > 1 and no device count divides it
NUM_CLASSES = 5
BATCH_SIZES = (10, 32, 7)  # 32: the last batch has 1 sample, so 1 or 2 replicas get none
DEVICE_COUNTS = ("1", "2", "3")

SCENARIO = r'''
import json
import numpy as np
import keras
import tensorflow as tf
from infer_callbacks import (BinaryClassificationStats, ClassificationError, DataParallelInferenceRunner,
                             Inferencer, InferenceRunner, ScalarStats)

data = np.load(DATA_PATH)
x, y = data["x"], data["y"]


def build(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(NUM_CLASSES)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class TrueClassLogit(Inferencer):
    """A tensorpack-style custom inferencer (underscore hooks only) that also
    records what it was given: slice sizes and labels, in delivery order."""

    def _before_inference(self):
        self.total, self.count, self.sizes, self.labels = 0.0, 0, [], []

    def _get_fetches(self):
        return ["output", "label"]

    def _on_fetches(self, results):
        logits, label = results
        self.total += float(np.sum(logits[np.arange(len(label)), label], dtype=np.float64))
        self.count += len(label)
        self.sizes.append(len(label))
        self.labels.extend(int(v) for v in label)

    def _after_inference(self):
        return {"validation_true_logit": self.total / self.count}


class ReplicaIds(Inferencer):
    def _before_inference(self):
        self.ids = []

    def _get_fetches(self):
        return ["replica"]

    def _on_fetches(self, results):
        self.ids.append(sorted(set(int(v) for v in results[0])))


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


placed = []


def tower_of(model):
    def tower(x, label):
        logits = model(x, training=False)
        placed.append(logits.device)  # where each replica's ops go, at trace time
        prob = tf.nn.softmax(logits)
        tf.identity(tf.reduce_mean(tf.reduce_max(prob, axis=1)), name="mean_confidence")  # one per slice
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return {"pred": tf.cast(tf.argmax(logits, axis=1) == 0, tf.int32),
                "positive": tf.cast(label == 0, tf.int32),
                "replica": tf.fill(tf.shape(label), replica)}
    return tower


def runners(make, model, batch_size):
    """Two runners: the model's default Keras tower, and a custom tower."""
    recorder, replicas = TrueClassLogit(), ReplicaIds()
    keras_tower = make(val_input(batch_size), [ScalarStats("loss"), ClassificationError(), recorder])
    custom_tower = make(val_input(batch_size),
                        [ScalarStats("mean_confidence"), BinaryClassificationStats("pred", "positive"), replicas],
                        tower_func=tower_of(model))
    return keras_tower, custom_tower, recorder, replicas


out = {"explicit": {}}

# 1. A model built outside any strategy (learning rate 0: fit keeps its weights),
#    validated in fit() on 1 device (plain InferenceRunner) and on 2 and 3 devices.
model = build(0.0)
train = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(16)
devices = {"1": None, "2": ["/cpu:0", "/cpu:1"], "3": ["/cpu:0", "CPU:1", "/device:CPU:2"]}
for batch_size in BATCH_SIZES:
    for count, devs in devices.items():
        def make(inp, infs, tower_func=None, devs=devs):
            if devs is None:
                return InferenceRunner(inp, infs, tower_func, verbose=False, steps_per_execution=4)
            return DataParallelInferenceRunner(inp, infs, devs, tower_func, verbose=False, steps_per_execution=4)
        a, b, recorder, replicas = runners(make, model, batch_size)
        placed.clear()
        history = model.fit(train, epochs=1, verbose=0, callbacks=[a, b])
        out["explicit"][f"{batch_size}/{count}"] = {
            "results": {**a.last_results, **b.last_results},
            "logs": {k: v[0] for k, v in history.history.items()},
            "sizes": recorder.sizes, "labels": recorder.labels, "replica_ids": replicas.ids,
            "placed": sorted(set(p for p in placed if p)),
            "samples": a.num_samples_last_run,
        }
        if batch_size == 10 and count == "3":
            before = dict(b.last_results)
            again = b.trigger()
            out["rerun"] = {"same": again == before, "tracing_count": b.tracing_count}
out["explicit_weights"] = [w.tolist() for w in model.get_weights()]

# Without the background thread: the same numbers.
serial = DataParallelInferenceRunner(val_input(10), [ScalarStats("loss"), ClassificationError()],
                                     ["/cpu:0", "/cpu:1", "/cpu:2"], pipeline=False, verbose=False)
serial.set_model(model)
out["serial"] = serial.trigger()

# Variables on a device no replica runs on: read from where they live.
with tf.distribute.OneDeviceStrategy("/cpu:2").scope():
    elsewhere = build(0.0)
far = DataParallelInferenceRunner(val_input(32), [ScalarStats("loss"), ClassificationError()],
                                  ["/cpu:0", "/cpu:1"], verbose=False)
far.set_model(elsewhere)
out["elsewhere"] = {"results": far.trigger(), "weights": [w.tolist() for w in elsewhere.get_weights()],
                    "variable_devices": sorted({v.value.device for v in elsewhere.weights})}

# 2. A model built under a MirroredStrategy, trained for one epoch with a
#    plain InferenceRunner: validation runs on the model's two replicas.
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = build(0.05)
recorder, replicas = TrueClassLogit(), ReplicaIds()
implicit = InferenceRunner(val_input(32), [ScalarStats("loss"), ClassificationError(), recorder], verbose=False)
implicit_custom = InferenceRunner(val_input(10), [ScalarStats("mean_confidence"), replicas],
                                  tower_func=tower_of(mirrored), verbose=False)
placed.clear()
train_all = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
history = mirrored.fit(train_all, epochs=1, verbose=0, callbacks=[implicit, implicit_custom])
out["implicit"] = {
    "logs": {k: v[0] for k, v in history.history.items()},
    "sizes": recorder.sizes, "labels": recorder.labels, "replica_ids": replicas.ids,
    "placed": sorted(set(p for p in placed if p)),
}
out["implicit_weights"] = [w.tolist() for w in mirrored.get_weights()]

# The same devices listed explicitly (in another order): the model's strategy is reused.
same = DataParallelInferenceRunner(val_input(7), [ScalarStats("loss")], ["/cpu:1", "/cpu:0"], verbose=False)
same.set_model(mirrored)
out["implicit"]["same_devices"] = same.trigger()
out["implicit"]["same_devices_reuse_strategy"] = same._strategy is strategy

# Other devices than the model's: refused in on_train_begin, before any training step.
steps_before = int(mirrored.optimizer.iterations.numpy())
try:
    mirrored.fit(train_all, epochs=1, verbose=0, callbacks=[
        DataParallelInferenceRunner(val_input(10), [ScalarStats("loss")], ["/cpu:0", "/cpu:1", "/cpu:2"])])
    out["mismatch_error"] = None
except ValueError as e:
    out["mismatch_error"] = str(e)
out["mismatch_trained_steps"] = int(mirrored.optimizer.iterations.numpy()) - steps_before

print("RESULT " + json.dumps(out))
'''


def numpy_reference(weights, x, y) -> dict[str, float]:
    """Every metric over the whole set at once, in float64, from the weights."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    logits = np.maximum(x.astype(np.float64) @ w1 + b1, 0.0) @ w2 + b2
    rows = np.arange(len(y))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    pred, positive = np.argmax(logits, axis=1) == 0, y == 0
    true_positive = np.count_nonzero(pred & positive)
    return {
        "validation_loss": float(np.mean(-log_prob[rows, y])),
        "validation_error": float(np.mean(np.argmax(logits, axis=1) != y)),
        "validation_true_logit": float(np.mean(logits[rows, y])),
        "validation_mean_confidence": float(np.mean(np.exp(log_prob).max(axis=1))),
        "val_precision": true_positive / np.count_nonzero(pred),
        "val_recall": true_positive / np.count_nonzero(positive),
    }


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
    proc = run_python(code, devices=3, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def _assert_close(actual: dict, expected: dict, what: str, rtol: float = 1e-5):
    for key, value in expected.items():
        assert key in actual, f"{what}: {key} missing from {sorted(actual)}"
        np.testing.assert_allclose(actual[key], value, rtol=rtol, err_msg=f"{what}: {key}")


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_every_device_count_equals_numpy_and_single_device(scenario, data, batch_size):
    reference = numpy_reference(scenario["explicit_weights"], *data)
    single = scenario["explicit"][f"{batch_size}/1"]["results"]
    for count in DEVICE_COUNTS:
        run = scenario["explicit"][f"{batch_size}/{count}"]
        what = f"batch {batch_size}, {count} device(s)"
        _assert_close(run["results"], reference, what + " vs numpy")
        _assert_close(run["results"], single, what + " vs 1 device")
        _assert_close(run["logs"], reference, what + " in fit's History")


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_every_sample_once_in_order_in_per_device_slices(scenario, data, batch_size):
    y = data[1]
    for count in DEVICE_COUNTS:
        run = scenario["explicit"][f"{batch_size}/{count}"]
        what = f"batch {batch_size}, {count} device(s)"
        assert run["labels"] == y.tolist(), what  # each sample once, in dataset order
        assert run["samples"] == N, what
        assert min(run["sizes"]) >= 1, what + ": an empty replica slice reached an inferencer"
        # a full batch is split across all devices, one slice each
        assert max(run["sizes"]) == -(-batch_size // int(count)), (what, run["sizes"][:6])
        assert len(run["sizes"]) >= -(-N // batch_size), what
        if count != "1":
            assert len(run["placed"]) == int(count), (what, run["placed"])
            ids = run["replica_ids"]  # the replica ids found in each slice
            assert all(len(i) == 1 for i in ids), (what, ids)  # one replica per slice
            assert sorted({i[0] for i in ids}) == list(range(int(count))), what


def test_empty_replicas_on_a_one_sample_last_batch(scenario):
    # 97 = 3 * 32 + 1: with 3 devices the last batch is [1, 0, 0]; the two
    # empty slices are skipped, the one sample is counted once.
    sizes = scenario["explicit"]["32/3"]["sizes"]
    assert sizes == [11, 11, 10] * 3 + [1]
    assert scenario["explicit"]["32/2"]["sizes"] == [16, 16] * 3 + [1]


def test_without_pipeline_thread_same_results(scenario, data):
    reference = numpy_reference(scenario["explicit_weights"], *data)
    _assert_close(scenario["serial"], {k: reference[k] for k in ("validation_loss", "validation_error")},
                  "pipeline=False, 3 devices")


def test_variables_on_another_device_are_read_where_they_live(scenario, data):
    elsewhere = scenario["elsewhere"]
    assert all(d.endswith("CPU:2") for d in elsewhere["variable_devices"]), elsewhere["variable_devices"]
    reference = numpy_reference(elsewhere["weights"], *data)
    _assert_close(elsewhere["results"], {k: reference[k] for k in ("validation_loss", "validation_error")},
                  "model on /cpu:2, replicas on /cpu:0 and /cpu:1")


def test_rerun_gives_same_results_without_retracing(scenario):
    assert scenario["rerun"]["same"]
    assert scenario["rerun"]["tracing_count"] == 1


def test_model_built_under_mirrored_strategy_validates_on_all_replicas(scenario, data):
    implicit = scenario["implicit"]
    reference = numpy_reference(scenario["implicit_weights"], *data)
    _assert_close(implicit["logs"], {k: reference[k] for k in (
        "validation_loss", "validation_error", "validation_true_logit", "validation_mean_confidence")},
        "implicit MirroredStrategy vs numpy")
    assert implicit["labels"] == data[1].tolist()
    assert implicit["sizes"] == [16, 16] * 3 + [1]  # batches of 32 on 2 replicas
    assert len(implicit["placed"]) == 2 and all(p.endswith(("CPU:0", "CPU:1")) for p in implicit["placed"])
    assert sorted({i[0] for i in implicit["replica_ids"]}) == [0, 1]
    # the same devices listed explicitly reuse the model's strategy
    _assert_close(implicit["same_devices"], {"validation_loss": reference["validation_loss"]},
                  "DataParallelInferenceRunner on the model's devices")
    assert implicit["same_devices_reuse_strategy"]


def test_devices_other_than_the_models_strategy_fail_before_training(scenario):
    message = scenario["mismatch_error"]
    assert message is not None
    assert "MirroredStrategy over ['/device:CPU:0', '/device:CPU:1']" in message
    assert "InferenceRunner" in message and "CPU:2" in message
    assert scenario["mismatch_trained_steps"] == 0


# -- argument errors, in this process (one CPU device, no GPU) ------------------

def _val():
    x = np.zeros((4, 3), np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.zeros(4, np.int64))).batch(2)


@pytest.mark.parametrize("gpus, match", [
    ([0, 1], r"do not exist on this machine: \['/gpu:0', '/gpu:1'\].*Available devices: \[.*CPU:0"),
    (2, r"first 2 GPUs, but this machine has 0\. Available devices: \[.*CPU:0"),
    (0, r"at least 1\. Received: gpus=0.*Available devices: \[.*CPU:0"),
    ([], r"empty list.*Available devices: \[.*CPU:0"),
    (["/cpu:0", "/cpu:9"], r"do not exist on this machine: \['/cpu:9'\].*Available devices"),
    (["/xpu:0"], r"'/xpu:0'.*Available devices"),
    (["/cpu:0", "CPU:0"], r"lists a device twice"),
])
def test_bad_devices_raise_at_construction_naming_available_devices(gpus, match):
    with pytest.raises(ValueError, match=match):
        DataParallelInferenceRunner(_val(), [ScalarStats("loss")], gpus)


@pytest.mark.parametrize("gpus", [True, 1.5, [0.5], [-1], None])
def test_gpus_of_the_wrong_type_raise_type_error(gpus):
    with pytest.raises(TypeError, match="gpus"):
        DataParallelInferenceRunner(_val(), [ScalarStats("loss")], gpus)


def test_device_strings_and_a_single_string_are_accepted():
    runner = DataParallelInferenceRunner(_val(), [ClassificationError()], "/cpu:0")
    assert runner.devices == ["/device:CPU:0"]
    runner = DataParallelInferenceRunner(_val(), ClassificationError(), gpus=["CPU:0"])
    assert runner.devices == ["/device:CPU:0"]


def test_device_argument_is_refused_with_a_pointer_to_gpus():
    with pytest.raises(TypeError, match="`gpus`"):
        DataParallelInferenceRunner(_val(), [ScalarStats("loss")], ["/cpu:0"], device="/cpu:0")


def test_benchmark_prints_one_json_line_with_every_device_count():
    proc = run_python(
        "import runpy, sys\n"
        "sys.argv = ['bench_data_parallel.py', '--json', '--quick']\n"
        f"runpy.run_path({REPO + '/benchmarks/bench_data_parallel.py'!r}, run_name='__main__')\n",
        timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]
    rows = json.loads(lines[0])["rows"]
    assert [(r["runner"], r["devices"]) for r in rows] == [
        ("InferenceRunner", 1), ("DataParallelInferenceRunner", 1),
        ("DataParallelInferenceRunner", 2), ("DataParallelInferenceRunner", 3)]
    assert rows[0]["overhead"] == pytest.approx(1.0)
    assert all(r["seconds"] > 0 for r in rows)
    losses = [r["validation_loss"] for r in rows]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-5)
