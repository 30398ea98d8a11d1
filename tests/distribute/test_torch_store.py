"""The wire of validation across processes over ``torch.distributed``'s
``TCPStore`` (``distribute/torch_store.py``): the same messages, deletion by
the last reader, and a deadline naming the process that did not answer."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from infer_callbacks.distribute.jax_processes import Channel, Message, ProcessError

dist = pytest.importorskip("torch.distributed")
from infer_callbacks.distribute.torch_store import TorchStore  # noqa: E402


@pytest.fixture
def stores():
    server = dist.TCPStore("127.0.0.1", 0, 2, True, timeout=datetime.timedelta(seconds=10),
                           wait_for_workers=False)
    client = dist.TCPStore("127.0.0.1", server.port, 2, False, timeout=datetime.timedelta(seconds=10))
    return TorchStore(server), TorchStore(client), server


def test_messages_over_a_tcp_store(stores):
    rank0, rank1, server = stores
    sender, reader = Channel("t", 5, (0, 2), rank0), Channel("t", 5, (1, 2), rank1)
    big = np.arange(300_000, dtype=np.float64)  # 2.4 MB: three parts
    sender.send(Message("state", {"batches": 6}, {"v": big}))
    got = reader.receive(0, "its state")
    assert got.meta == {"batches": 6}
    np.testing.assert_array_equal(got.arrays["v"], big)
    assert server.num_keys() <= 1  # only what the store keeps for itself, if anything


def test_a_missing_answer_over_a_tcp_store_times_out(stores):
    _, rank1, _ = stores
    with pytest.raises(ProcessError, match="process 0 of 2 did not answer within 0.3 s"):
        Channel("u", 0.3, (1, 2), rank1).receive(0, "its state")
