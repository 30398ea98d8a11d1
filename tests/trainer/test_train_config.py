"""TrainConfig (what, on what, how long) refuses bad values when it is made,
naming them; ``cluster_from_tf_config`` reads TF_CONFIG as TensorFlow's own
``TFConfigClusterResolver`` does, and refuses what it cannot use."""

from __future__ import annotations

import json

import keras
import pytest
import tensorflow as tf

from helpers.trainer import Linear, train_ds
from infer_callbacks import TrainConfig
from infer_callbacks.trainer.config import cluster_from_tf_config

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


def test_cluster_from_tf_config_agrees_with_tensorflow(monkeypatch):
    tf_config = {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
                 "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    cluster, task_type, index = cluster_from_tf_config()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert cluster == resolver.cluster_spec().as_dict()
    assert (task_type, index) == (resolver.task_type, resolver.task_id) == ("worker", 1)
    for bad, match in [({"cluster": {"worker": ["a:1"]}}, "'task' dict"),
                       ({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}},
                        "'ps' is not a job"),
                       ({"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}},
                        "list of 'host:port'")]:
        monkeypatch.setenv("TF_CONFIG", json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            cluster_from_tf_config()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="found no cluster"):
        cluster_from_tf_config()
