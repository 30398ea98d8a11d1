"""``TF_CONFIG``: the one place that reads it. TensorFlow's cluster
description (``{"cluster": {job: ["host:port", ...]}, "task": {"type": ...,
"index": ...}}``), read leniently for the chief/worker facts and checked
strictly for a trainer that builds a multi-worker strategy from it.

Example:

>>> import json, os
>>> os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
...                                       "task": {"type": "worker", "index": 1}})
>>> tf_config_task()
('worker', 1, {'worker': ['a:1', 'b:2']})
>>> cluster_from_tf_config()
({'worker': ['a:1', 'b:2']}, 'worker', 1)
>>> del os.environ["TF_CONFIG"]
"""

from __future__ import annotations

import json
import os

__all__ = ["has_tf_config", "tf_config_task", "cluster_from_tf_config", "chief_task"]


def has_tf_config() -> bool:
    """Whether ``TF_CONFIG`` is set and not empty."""
    return bool(os.environ.get("TF_CONFIG"))


def tf_config_task() -> tuple[str | None, int, dict]:
    """``(task_type, task_index, cluster)`` from ``TF_CONFIG``, read leniently:
    ``(None, 0, {})`` when it is unset, empty or not JSON (the chief/worker
    facts then describe a single process)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except ValueError:
        return None, 0, {}
    if not isinstance(config, dict):
        return None, 0, {}
    task = config.get("task") or {}
    cluster = config.get("cluster") or {}
    return task.get("type"), int(task.get("index", 0) or 0), cluster


def chief_task(task_type: str | None, task_index: int, cluster: dict) -> bool:
    """Whether a task is the chief: the ``chief`` job's, or worker 0 in a
    cluster without one; a process without a task is its own chief."""
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and int(task_index or 0) == 0 and "chief" not in cluster


def cluster_from_tf_config() -> tuple[dict, str, int]:
    """Parse and check ``TF_CONFIG``; ``(cluster, task_type, task_index)``.

    Raises:
        ValueError: naming the bad part and showing a valid ``TF_CONFIG``,
            when it is unset, not JSON, or not a cluster with a task in it.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "DistributedTrainer found no cluster: pass a strategy "
            "(DistributedTrainer(strategy)), train a Keras model built under one, or set "
            "TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={raw!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError("TF_CONFIG must have a non-empty 'cluster' dict, e.g. {\"worker\": "
                         f"[\"host1:12345\", \"host2:12345\"]}}. Received: TF_CONFIG={raw!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError("TF_CONFIG must have a 'task' dict with 'type' and 'index', e.g. "
                         f"{{\"type\": \"worker\", \"index\": 0}}. Received: TF_CONFIG={raw!r}")
    task_type, index = task["type"], task["index"]
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f"TF_CONFIG cluster job {job!r} must be a list of 'host:port' strings. "
                             f"Received: {addresses!r}")
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
                         f"{sorted(cluster)}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index {index!r} is out of range for job {task_type!r} with "
                         f"{len(cluster[task_type])} tasks.")
    return cluster, task_type, index
