"""RunContext, TrainerHandle and the monitors handle inferencers write to."""

from __future__ import annotations

import numpy as np
import pytest

from infer_callbacks import InferenceRunner, Inferencer, ScalarStats
from infer_callbacks.inferencers.context import MonitorsHandle, RunContext, TrainerHandle


def test_run_context_builds_a_trainer_handle():
    ctx = RunContext(model="m", epoch_num=3, global_step=30, is_chief=False)
    t = ctx.trainer
    assert (t.model, t.epoch_num, t.global_step, t.is_chief) == ("m", 3, 30, False)
    with pytest.raises(ValueError, match="epoch_num=-1"):
        RunContext(epoch_num=-1)
    shared = TrainerHandle(model="m", epoch_num=5)
    assert RunContext(epoch_num=4, trainer=shared).trainer is shared


def test_put_drain_and_history_like_tensorpack_monitors():
    handle = TrainerHandle(global_step=10)
    m = handle.monitors
    m.put_scalar("val_x", np.float32(0.5))
    handle.global_step = 20  # the runner advances the step; history records it
    m.put_scalar("val_x", 2)
    m.record({"validation_error": 0.25})
    assert m.get_latest("val_x") == 2.0 and m.get_latest("validation_error") == 0.25
    assert m.get_history("val_x") == [(10, 0.5), (20, 2.0)]
    assert m.get_history("never") == []
    assert m.drain() == ({"val_x": 2.0}, {})
    assert m.drain() == ({}, {})
    with pytest.raises(KeyError, match="'missing'.*val_x"):
        m.get_latest("missing")
    with pytest.raises(ValueError, match=r"'v'.*shape \(2,\)"):
        m.put_scalar("v", np.ones(2))


def test_put_image_forms():
    m = MonitorsHandle()
    m.put_image("gray", np.full((4, 5), 300.0))
    m.put_image("rgb", np.zeros((4, 5, 3), np.uint8))
    m.put_image("one", np.zeros((1, 4, 5, 3)))
    m.put_image("batch", np.zeros((2, 4, 5, 1)))
    _, images = m.drain()
    assert sorted(images) == ["batch/0", "batch/1", "gray", "one", "rgb"]
    assert images["gray"].shape == (4, 5, 1) and images["gray"].dtype == np.uint8
    assert images["gray"].max() == 255 and images["one"].shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"'bad'.*shape \(4, 4, 2\)"):
        m.put_image("bad", np.zeros((4, 4, 2)))


class _PutsScalar(Inferencer):
    """Puts one scalar per run, as tensorpack inferencers do."""

    def _get_fetches(self):
        return ["loss"]

    def _before_inference(self):
        self.total = 0.0

    def _on_fetches(self, results):
        self.total += float(np.sum(results[0]))

    def _after_inference(self):
        self.trainer.monitors.put_scalar("val_loss_sum", self.total)


def test_put_scalar_is_one_history_entry_per_run_through_a_runner():
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)).astype("float32"), rng.normal(size=(12, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    inf = _PutsScalar()
    runner = InferenceRunner((x, y), [inf, ScalarStats("loss")], verbose=False)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[runner])
    monitors = inf.trainer.monitors
    steps = [3, 6, 9]
    assert [s for s, _ in monitors.get_history("val_loss_sum")] == steps
    assert [s for s, _ in monitors.get_history("validation_loss")] == steps
    assert [v for _, v in monitors.get_history("val_loss_sum")] == history.history["val_loss_sum"]
