"""Validation across processes on the host (``engine/host_processes.py``),
with threads for processes over an in-memory store: each "process" runs its
share of the batches (batch k to process k mod P); built-ins end with the
merged state, a per-batch inferencer sees every batch in dataset order on
every process; sets of different sizes fail on every process. (Real
processes: tests/jax/test_jax_processes.py.)"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from infer_callbacks import ClassificationError, Inferencer, ScalarStats
from infer_callbacks.runner.engine.host_chunk import JaxChunk
from infer_callbacks.runner.engine.host_processes import ProcessPass, Share
from memory_store import MemoryStore

SIZES = [4, 4, 4, 4, 4, 4, 4, 3]  # 31 rows, 8 batches
rng = np.random.default_rng(0)
LOSS, WRONG = rng.uniform(0, 2, 31), (rng.uniform(size=31) < 0.4).astype(np.float32)
RANKS = {"loss": 1, "wrong-top1": 1}


class Order(Inferencer):
    """Per batch: a number that depends on the order of the batches."""

    def _get_fetches(self):
        return ["loss"]

    def _before_inference(self):
        self.k, self.value = 0, 0.0

    def _on_fetches(self, results):
        self.k += 1
        self.value += self.k * float(results[0].sum())

    def _after_inference(self):
        return {"order": self.value}


def _local(share: Share, sizes, per_call: int = 2):
    """What a binding yields over ``share`` of the batches: calls of up to
    ``per_call`` same-shaped batches (reading every batch of the set)."""
    starts = np.cumsum([0] + list(sizes))
    blocks = [((np.arange(starts[k], starts[k + 1])[None],), 1) for k in range(len(sizes))]
    rows = [leaves[0][0] for leaves, _ in share(iter(blocks))]
    while rows:
        call = [rows.pop(0)]
        while rows and len(call) < per_call and len(rows[0]) == len(call[0]):
            call.append(rows.pop(0))
        idx = np.stack(call)
        yield len(call), JaxChunk({"loss": LOSS[idx], "wrong-top1": WRONG[idx]},
                                  np.full(len(call), idx.shape[1]), RANKS)


def _process(index: int, count: int, store, infs, sizes, out: dict, name: str) -> None:
    share = Share(index, count)
    plan = [(inf, inf.get_fetches()) for inf in infs]
    process_pass = ProcessPass(_local(share, sizes), share, plan, RANKS, 10, client=store, name=name)
    try:
        for inf in infs:
            inf.before_inference()
        batches, samples = 0, 0
        for n, chunk in process_pass.blocks():
            batches += n
            for batch in ([] if chunk is None else chunk.batches()):
                samples += len(batch["loss"])
                for inf, names in plan:
                    inf.on_fetches([batch[k] for k in names], len(batch["loss"]))
        results = {}
        for inf in infs:
            results.update(inf.after_inference())
        out[index] = (*process_pass.agree(results, samples), batches)
    except Exception as e:  # noqa: BLE001 - reported to the test
        process_pass.fail(e)
        out[index] = e


def _run(count: int, make_infs, sizes=lambda i: SIZES, name="p"):
    store, out = MemoryStore(), {}
    threads = [threading.Thread(target=_process, args=(i, count, store, make_infs(), sizes(i), out, name))
               for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return [out[i] for i in range(count)], store


@pytest.mark.parametrize("count", [2, 3, 9])
def test_built_ins_merge_their_state_and_every_process_agrees(count):
    got, store = _run(count, lambda: [ScalarStats("loss"), ClassificationError()])
    reference = {"validation_loss": LOSS.mean(), "validation_error": WRONG.mean()}
    for results, samples, batches in got:
        assert results == got[0][0] and samples == 31 and batches == 8
        for k, v in reference.items():
            assert results[k] == pytest.approx(v, rel=1e-12)
    assert store.values == {}  # every message deleted by its last reader


@pytest.mark.parametrize("count", [2, 3])
def test_per_batch_inferencers_see_every_batch_in_dataset_order(count):
    got, _ = _run(count, lambda: [ScalarStats("loss"), Order()])
    order = sum((k + 1) * LOSS[sum(SIZES[:k]):sum(SIZES[:k + 1])].sum() for k in range(len(SIZES)))
    for results, samples, batches in got:
        assert results["order"] == pytest.approx(order, rel=1e-12) and samples == 31 and batches == 8


@pytest.mark.parametrize("make", [lambda: [ScalarStats("loss")], lambda: [Order()]], ids=["state", "batches"])
def test_sets_of_different_sizes_fail_on_every_process(make):
    got, _ = _run(2, make, sizes=lambda i: SIZES if i == 0 else SIZES + [4])
    for error in got:
        assert isinstance(error, Exception) and "same whole validation set" in str(error), error


def test_processes_running_different_inferencers_fail_with_the_reason():
    """A chief_only inferencer runs on process 0 only: its results cannot be combined."""
    made = iter([[ScalarStats("loss"), ClassificationError()], [ScalarStats("loss")],
                 [ScalarStats("loss"), Order()], [ScalarStats("loss")]])
    for _ in range(2):
        got, _ = _run(2, lambda: next(made), name=f"plan{_}")
        assert all(isinstance(e, ValueError) and "run different inferencers" in str(e) for e in got), got
