"""The wire between JAX processes (``distribute/jax_processes.py``) on an
in-memory key-value store with JAX's client's interface: messages in order,
large ones in parts, each deleted by its last reader, a deadline on every
wait, a failed process's error reaching the others. (The real store, with
two processes, is exercised by tests/jax/test_jax_processes.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from infer_callbacks.distribute.jax_processes import Channel, Message, ProcessError
from memory_store import MemoryStore


def test_messages_arrive_in_order_whole_and_are_deleted_by_the_last_reader():
    store = MemoryStore()
    sender, readers = (Channel("p", 5, (0, 3), store),
                       [Channel("p", 5, (i, 3), store) for i in (1, 2)])
    big = np.arange(600_000, dtype=np.float64).reshape(1000, 600)  # 4.8 MB: five parts
    sender.send(Message("chunk", {"n": 1}, {"v": big, "c": np.array([3], np.int64)}))
    sender.send(Message("end", {"batches": 7}))
    assert sender.bytes_sent > big.nbytes
    for reader in readers:
        first = reader.receive(0, "a chunk")
        assert first.kind == "chunk" and first.meta == {"n": 1}
        np.testing.assert_array_equal(first.arrays["v"], big)
        assert reader.receive(0, "the end").meta == {"batches": 7}
    assert store.values == {}  # read by both others: nothing left


def test_a_missing_answer_times_out_naming_the_process():
    reader = Channel("q", 0.2, (0, 2), MemoryStore())
    with pytest.raises(ProcessError, match=r"process 1 of 2 did not answer within 0.2 s \(process 0 was "
                                           r"waiting for validation batch 3\)"):
        reader.receive(1, "validation batch 3")


def test_a_failed_process_fails_its_readers_at_once():
    store = MemoryStore()
    failing, reader = Channel("r", 5, (1, 2), store), Channel("r", 5, (0, 2), store)
    failing.fail(ValueError("bad batch 2"))
    failing.fail(ValueError("a second error is not sent"))
    with pytest.raises(ProcessError, match=r"process 1 of 2 failed during validation \(its state\): "
                                           r"ValueError\(bad batch 2\)"):
        reader.receive(1, "its state")


def test_the_timeout_must_be_positive():
    with pytest.raises(ValueError, match="collective_timeout.*Received: 0"):
        Channel("s", 0, (0, 2), MemoryStore())
