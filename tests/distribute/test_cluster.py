"""TF_CONFIG, read once (distribute/cluster.py): strictly for a trainer that
builds a multi-worker strategy from it (as TensorFlow's own
``TFConfigClusterResolver`` reads it), leniently for the chief/worker facts."""

from __future__ import annotations

import doctest
import json

import pytest
import tensorflow as tf

import infer_callbacks.distribute.cluster as cluster_module
from infer_callbacks.distribute.cluster import chief_task, cluster_from_tf_config, has_tf_config, tf_config_task
from infer_callbacks.distribute.devices import is_chief
from infer_callbacks.trainer.config import cluster_from_tf_config as from_its_old_home

pytestmark = pytest.mark.tensorflow_only("TF_CONFIG describes a tf.distribute cluster")


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
    assert from_its_old_home is cluster_from_tf_config


@pytest.mark.parametrize("tf_config, task, chief", [
    (None, (None, 0, {}), True),
    ("{not json", (None, 0, {}), True),
    (json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}),
     ("worker", 0, {"worker": ["a:1", "b:1"]}), True),
    (json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}),
     ("worker", 1, {"worker": ["a:1", "b:1"]}), False),
    (json.dumps({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}),
     ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}), False),
    (json.dumps({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}),
     ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}), True),
])
def test_the_lenient_reading_gives_the_chief(monkeypatch, tf_config, task, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert has_tf_config() is (tf_config is not None)
    assert tf_config_task() == task
    assert chief_task(*task) is chief
    assert is_chief() is chief


def test_docstring_examples_run(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert doctest.testmod(cluster_module).failed == 0
