"""Host dispatch: one validation pass's batches to the inferencers, in
dataset order, and their results at the end.

The runner decides when a pass happens and where results go; the
inferencers compute every number; this module only moves numpy values
between them and names the batch and inferencer in any error.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import numpy as np

from infer_callbacks.towers.spec import NUM_SAMPLES_KEY

__all__ = ["call_hook", "run_pass", "collect", "PassStats"]


def call_hook(inf: Any, name: str, *args):
    """``inf.<name>(*args)`` (if it has it), with a note naming the
    inferencer and hook on any error."""
    method = getattr(inf, name, None)
    if method is None:
        return None
    try:
        return method(*args)
    except Exception as e:
        e.add_note(f"(raised by inferencer {inf!r} in {name})")
        raise


@dataclasses.dataclass
class PassStats:
    batches: int = 0
    samples: int = 0


def _located(blocks, source, done: Callable[[], int], per_call: int):
    """``blocks``, with a note on an input or device error saying which
    batch of which input it was."""
    while True:
        try:
            item = next(blocks)
        except StopIteration:
            return
        except Exception as e:  # an input or device error, on any engine
            where = source.failed_batch
            where = (f"batch {where}" if where is not None else
                     f"one of batches {done() + 1}-{done() + per_call}")
            e.add_note(f"(raised while running validation {where} of {source.description})")
            raise
        yield item


def run_pass(binding, plan, ctx, source, *, hooks: Callable, progress, background,
             steps_per_execution: int) -> PassStats:
    """Feed every batch of one pass to the inferencers of ``plan``.

    Built-ins that only sum (``accepts_blocks()``) get each step call's
    batches at once, concatenated; every other inferencer gets one batch at
    a time, in dataset order."""
    for inf, _ in plan:
        call_hook(inf, "set_run_context", ctx)
        call_hook(inf, "before_inference")
    blockwise = [(inf, names) for inf, names in plan if inf.accepts_blocks() and binding.can_block(names)]
    batchwise = [(inf, names) for inf, names in plan if (inf, names) not in blockwise]
    stats = PassStats()
    blocks = binding.pass_blocks(source, plan)
    try:
        for count, chunk in _located(blocks, source, lambda: stats.batches, steps_per_execution):
            if background is not None and background.should_stop:
                raise RuntimeError("The background validation was cancelled.")
            if chunk is None:  # batches another process accounts for (engine/host_processes.py)
                stats.batches += count
                progress.update(count)
                continue
            hooks("on_test_batch_begin", stats.batches)
            first = stats.batches + 1
            if blockwise:
                block = {}
                ns = chunk.num_samples()
                for inf, names in blockwise:
                    _feed(inf, binding.fetch_table(block, names, chunk.block), ns,
                          f"validation batches {first}-{first + count - 1}", source)
            samples = 0
            for units, batch in enumerate(chunk.batches() if batchwise else (), 1):
                ns = int(batch[NUM_SAMPLES_KEY])
                samples += max(ns, 0)
                for inf, names in batchwise:
                    _feed(inf, binding.fetch_table(batch, names), ns if ns >= 0 else None,
                          f"validation batch {stats.batches + min(units, count)}", source)
            stats.samples += chunk.num_samples() if not batchwise else samples
            stats.batches += count
            hooks("on_test_batch_end", stats.batches - 1, {})
            progress.update(count)
    finally:
        blocks.close()  # stops the step thread, also on KeyboardInterrupt
    if stats.batches == 0:
        raise ValueError(f"The validation input ({source.description}) yielded no batch in "
                         "this run. Pass a non-empty, re-iterable validation set.")
    if source.size is not None and stats.batches != source.size:
        warnings.warn(
            f"The validation input ({source.description}) reports {source.size} batches "
            f"(len) but yielded {stats.batches}; the results use the {stats.batches} it yielded. "
            "Fix its __len__.", RuntimeWarning, stacklevel=4)
    return stats


def _feed(inf, fetched, num_samples, where: str, source) -> None:
    results, exact, weight = fetched
    try:
        inf.on_fetches(results, num_samples, exact=exact, sample_weight=weight)
    except Exception as e:
        e.add_note(f"(raised by inferencer {inf!r} on {where} of {source.description})")
        raise


def collect(plan, ctx, on_nonfinite: str) -> tuple[dict, dict, dict]:
    """``(results, monitor-only results, images)`` of a finished pass."""
    results: dict[str, float] = {}
    monitor_only: dict[str, float] = {}
    images: dict[str, np.ndarray] = {}
    for inf, _ in plan:
        images.update(call_hook(inf, "after_inference_images") or {})
        out = call_hook(inf, "after_inference") or {}
        monitor_only.update(call_hook(inf, "monitor_only_results") or {})
        for key, value in out.items():
            if key in results:
                raise ValueError(f"Two inferencers report the same key {key!r} (the second is "
                                 f"{inf!r}). Give one of them another prefix or summary name.")
            results[key] = value
    put_scalars, put_images = ctx.trainer.monitors.drain()
    results.update({k: v for k, v in put_scalars.items() if k not in results})
    images.update(put_images)
    if on_nonfinite == "raise":
        bad = {k: v for k, v in results.items() if not np.isfinite(v)}
        if bad:
            raise FloatingPointError(
                f"Validation produced non-finite results {bad} (on_nonfinite='raise'). Check the "
                "tensors these inferencers fetch, or pass on_nonfinite='warn' to report them and go on.")
    return results, monitor_only, images
