"""One validation run: every set's batches through its binding to its
inferencers, one set after another, and the run's results.

The runner decides when a run happens and where its results go
(``inference_runner.py``); the engine runs batches (``engine/``); dispatch
hands them to the inferencers (``dispatch.py``); this module strings the sets
of one run together and names their results (``sets.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from infer_callbacks.runner.dispatch import collect, run_pass
from infer_callbacks.runner.sets import Combination, ValidationSet

__all__ = ["RunResults", "run_sets", "progress_bars", "SAMPLES_COVERED_KEY"]

# The result key reported with ``limit_batches``: how many samples the numbers
# cover. (Not ``towers.spec.NUM_SAMPLES_KEY``, the tower's per-batch count.)
SAMPLES_COVERED_KEY = "validation_num_samples"


@dataclasses.dataclass
class RunResults:
    """What one run produced: ``results`` (into ``logs``), ``monitor_only``
    (monitors only), ``images`` and the samples seen, in all and per set."""

    results: dict
    monitor_only: dict
    images: dict
    samples: int
    samples_per_set: dict


def run_sets(sets: Sequence[ValidationSet], binding_of: Callable[[ValidationSet], Any], ctx, *,
             hooks: Callable, progress: Callable[[ValidationSet], Any], background,
             on_nonfinite: str, combination: Combination | None, who: Any,
             generation: Any = None) -> RunResults:
    """Run every set of ``sets`` in order and merge their results (each
    set's keys carry its name; a combination adds the unnamed keys). With
    ``generation`` (``generate=``), its inferencers get a host pass of
    their own (``generation.py``)."""
    per_set: dict = {}
    out = RunResults({}, {}, {}, 0, {})
    for s in sets:
        hosted = [] if generation is None else generation.host_infs(s)
        plan = [(inf, list(inf.get_fetches())) for inf in s.infs
                if (ctx.is_chief or not getattr(inf, "chief_only", False)) and not any(inf is h for h in hosted)]
        host_plan = [(inf, list(inf.get_fetches())) for inf in hosted
                     if ctx.is_chief or not getattr(inf, "chief_only", False)]
        done = None
        binding = binding_of(s) if plan or not host_plan else None
        try:
            if binding is not None:
                with progress(s) as bar:
                    done = run_pass(binding, plan, ctx, s.input, hooks=hooks, progress=bar,
                                    background=background, steps_per_execution=binding.max_rounds)
            if host_plan:
                with progress(s) as bar:
                    generated = generation.run_pass(s, host_plan, ctx, progress=bar, background=background,
                                                    hooks=hooks if done is None else (lambda *a: None))
                done = done or generated
            outcome = collect(plan + host_plan, ctx, on_nonfinite)
        except BaseException as e:
            if binding is not None:
                binding.pass_failed(e)  # across processes: the others stop too, naming this one
            raise
        if binding is not None:
            outcome, done.samples = binding.end_pass(outcome, done.samples)
        results, monitor_only, images = outcome
        if s.input.limit is not None:
            results.setdefault(SAMPLES_COVERED_KEY, float(done.samples))
        per_set[s.name] = results
        out.monitor_only.update(s.rename(monitor_only))
        out.images.update(s.rename(images))
        out.samples += done.samples
        out.samples_per_set[s.name] = done.samples
    for s in sets:
        _merge(out.results, s.rename(per_set[s.name]), who, f"the validation set {s.name!r}")
    if combination is not None:
        combined = combination({name: {k: v for k, v in r.items() if k != SAMPLES_COVERED_KEY}
                                for name, r in per_set.items()})
        _merge(out.results, combined, who, f"the combination {combination!r}")
    return out


def _merge(into: dict, new: dict, who: Any, what: str) -> None:
    taken = sorted(k for k in new if k in into)
    if taken:
        raise ValueError(f"{who!r}: {what} reports {taken}, already reported by another set of this "
                         "runner. Rename the sets or give the inferencers other prefixes.")
    into.update(new)


def progress_bars(tower_name: str, quiet: bool, *, force: bool = False) -> Callable[[ValidationSet], Any]:
    """A factory of one progress bar per set (``quiet``: bars that show
    nothing). Bars are drawn only when stderr is a terminal (a log file gets
    no ``\r`` fragments), unless ``force``."""
    def make(s: ValidationSet):
        if quiet:
            return contextlib.nullcontext(_NoBar())
        return tqdm(total=s.input.size, desc=tower_name + s.label, unit="batch", leave=False,
                    dynamic_ncols=True, disable=False if force else None)  # None: off when not a TTY
    return make


class _NoBar:
    def update(self, n: int) -> None:
        pass
