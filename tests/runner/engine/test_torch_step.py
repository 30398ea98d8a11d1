"""The PyTorch engine's step, tower and devices (``engine/torch/``): every
batch of a call computed alone, equal to numpy per batch and to the batch run
by itself, whatever the call's size; fetch names checked by one small trace;
device strings and GPU ids mapped to torch devices with the other engines'
errors and soft placement."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.not_on_backend("tensorflow", "jax", reason="the PyTorch engine needs KERAS_BACKEND=torch")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from infer_callbacks import InferenceRunner, ScalarStats  # noqa: E402


def _torch():
    import torch
    return torch


class _Tower:
    """A tower of plain torch ops: a value per row and one per batch (the
    weights given to ``scope``, else fixed ones)."""

    values = None

    @contextlib.contextmanager
    def scope(self, values, device=None):
        self.values = values
        yield

    def run(self, batch):
        x, y = batch
        w = self.values[0] if self.values is not None else _torch().tensor([1.0, -2.0, 0.5])
        return {"score": (x * w).sum(-1) + y, "batch_max": x.max()}

    def __call__(self, values, batch, device=None):
        with self.scope(values, device):
            return self.run(batch)


@pytest.mark.parametrize("rows,count", [(4, 16), (4, 11), (4, 1), (300, 5)])
def test_each_batch_of_a_call_equals_numpy_and_itself_alone(rows, count):
    from infer_callbacks.runner.engine.torch.step import TorchStep

    torch = _torch()
    rng = np.random.default_rng(rows + count)
    x = rng.normal(size=(count, rows, 3)).astype("float32")
    y = rng.normal(size=(count, rows)).astype("float32")
    w = np.array([3.0, -1.0, 0.25], "float32")
    step = TorchStep(_Tower(), [None], {"score": 1, "batch_max": 0})
    chunk, nbytes = step.run([[torch.from_numpy(w)]], (x, y), count, tuple)
    assert len(chunk) == count and nbytes >= x.nbytes + y.nbytes
    assert chunk.num_samples() == rows * count
    for j, out in enumerate(chunk.batches()):
        np.testing.assert_allclose(out["score"], (x[j] * w).sum(-1) + y[j], rtol=1e-6)
        assert out["batch_max"] == x[j].max()
        alone, _ = step.run([[torch.from_numpy(w)]], (x[j:j + 1], y[j:j + 1]), 1, tuple)
        np.testing.assert_array_equal(next(alone.batches())["score"], out["score"])  # bitwise
    assert chunk.block("batch_max") is None and chunk.block("score").shape == (count * rows,)
    assert step.signatures == {(((rows, 3), "<f4"), ((rows,), "<f4"))}


def test_read_only_blocks_are_not_handed_to_torch_as_they_are():
    """tf.data's numpy blocks are read-only; torch tensors are writable, so
    the step copies such a block once (no warning, same numbers)."""
    from infer_callbacks.runner.engine.torch.step import TorchStep

    x = np.arange(12, dtype="float32").reshape(2, 2, 3)
    y = np.ones((2, 2), "float32")
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chunk, _ = TorchStep(_Tower(), [None], {"score": 1, "batch_max": 0}).run([None], (x, y), 2, tuple)
    np.testing.assert_allclose(chunk.values["score"], (x * [1.0, -2.0, 0.5]).sum(-1) + 1)


def test_unknown_fetch_is_refused_by_the_first_trace_listing_the_valid_names():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((8, 3), "float32"), np.zeros(8, "int32")
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), ScalarStats("logits"))
    runner.set_model(model)
    with pytest.raises(ValueError, match=r"'logits'.*Available names: \['input', 'label', 'loss', 'output', "
                                         r"'wrong-top1'\].*ScalarStats\('logits'\)"):
        runner.trigger()


def test_string_inputs_are_refused_naming_the_backend():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.array(["a"] * 4))).batch(2)
    runner = InferenceRunner(ds, ScalarStats("output"), tower_func=lambda x, s: {"output": model(x)})
    runner.set_model(model)
    with pytest.raises(ValueError, match="string element.*PyTorch"):
        runner.trigger()


def test_devices_map_to_torch_devices_with_the_other_engines_errors():
    from infer_callbacks.runner.engine.torch import TorchEngine
    from infer_callbacks.runner.engine.torch.devices import torch_devices

    torch = _torch()
    engine = TorchEngine()
    assert engine.device("/cpu:0") == engine.device("CPU:0") == engine.device("/device:CPU:0") == "/cpu:0"
    assert torch_devices(["/cpu:0"]) == [torch.device("cpu")]
    assert engine.devices("/cpu:0") == ["/cpu:0"]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.warns(RuntimeWarning, match=f"device={gpus} asks for GPU '/gpu:{gpus}'"):
        assert engine.device(gpus) is None  # a GPU id this machine lacks: the model's own device
    with pytest.raises(ValueError, match=r"'/cpu:1' does not exist.*'/device:CPU:0'.*one CPU device"):
        engine.device("/cpu:1")
    with pytest.raises(ValueError, match=rf"'/gpu:{gpus}' does not exist"):
        engine.devices([f"/gpu:{gpus}"])
    with pytest.raises(ValueError, match=rf"`gpus={gpus + 1}` asks for the first {gpus + 1} GPUs"):
        engine.devices(gpus + 1)
    with pytest.raises(ValueError, match="lists a device twice"):
        engine.devices(["/cpu:0", "cpu:0"])
    with pytest.raises(TypeError, match="Received: 'tpu0'"):
        engine.device("tpu0")
    with pytest.raises(ValueError, match="must be >= 0"):
        engine.device(-1)
