"""TrainConfig (what, on what, how long) refuses bad values when it is made,
naming them (TF_CONFIG's checks: tests/distribute/test_cluster.py)."""

from __future__ import annotations

import keras
import pytest

from helpers.trainer import Linear, train_ds
from infer_callbacks import TrainConfig

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")


def test_train_config_keeps_its_arguments_and_names_bad_ones():
    data, stop = train_ds(), keras.callbacks.TerminateOnNaN()
    config = TrainConfig(model=Linear, dataflow=data, callbacks=(stop,), max_epoch=4, steps_per_epoch=5,
                         starting_epoch=2, session_init="ckpt", verbose=0)
    assert (config.model, config.data, config.callbacks, config.max_epoch, config.steps_per_epoch,
            config.starting_epoch, config.session_init, config.verbose) == (
        Linear, data, [stop], 4, 5, 2, "ckpt", 0)
    assert TrainConfig(model=Linear(), data=data).callbacks == []
    for kwargs, error, match in [
        ({"data": data}, ValueError, "needs `model`"),
        ({"model": 3, "data": data}, TypeError, "Received: 3"),
        ({"model": Linear()}, ValueError, "needs the training batches"),
        ({"model": Linear(), "data": data, "dataflow": data}, ValueError, "not both"),
        ({"model": Linear(), "data": data, "max_epoch": 0}, ValueError, "max_epoch=0"),
        ({"model": Linear(), "data": data, "steps_per_epoch": 2.5}, ValueError, "steps_per_epoch=2.5"),
        ({"model": Linear(), "data": data, "starting_epoch": True}, ValueError, "starting_epoch=True"),
        ({"model": Linear(), "data": data, "max_epoch": 2, "starting_epoch": 3}, ValueError,
         r"\(3\) is after `max_epoch` \(2\)"),
        ({"model": Linear(), "data": data, "callbacks": ["stdout"]}, TypeError, "Received: 'stdout'"),
    ]:
        with pytest.raises(error, match=match):
            TrainConfig(**kwargs)
