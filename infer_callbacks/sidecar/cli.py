"""The command line of ``python -m infer_callbacks.sidecar``: a :class:`~infer_callbacks.sidecar.SidecarEvaluator`
from the command line, with the model, the validation input and (optionally)
the inferencers named by ``module:function``.

Example::

    python -m infer_callbacks.sidecar --model mypkg.nets:build_model \\
        --input mypkg.data:validation --checkpoint-dir train_log/ckpt \\
        --logdir train_log/sidecar --max-evaluations 10

``build_model()`` returns a built, compiled ``keras.Model``; ``validation()``
the validation input; ``--infs`` names a function returning the inferencers
(default: ``ScalarStats('loss')`` and ``ClassificationError()``).

Exit status: 0 when training finished, ``--max-evaluations`` was reached or
the process was asked to stop (SIGTERM, SIGINT); 3 on ``--timeout``; 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import Any, Callable, Sequence

__all__ = ["main", "load_function"]

EXIT_TIMEOUT = 3


def load_function(spec: str, option: str) -> Callable[..., Any]:
    """The function ``spec`` (``'package.module:function'``) names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{option} must name a function as 'package.module:function'. "
                         f"Received: {option} {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{option} {spec!r}: cannot import module {module_name!r} ({e}). Is its "
                         "directory on PYTHONPATH (or the current directory)?") from e
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n]))
            raise ValueError(f"{option} {spec!r}: module {module_name!r} has no {attr!r}. "
                             f"Its functions: {public}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{option} {spec!r} is not callable: {target!r}")
    return target


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m infer_callbacks.sidecar",
        description="Evaluate each checkpoint a ModelSaver writes, in order, exactly once.")
    p.add_argument("--model", required=True, metavar="MODULE:FN",
                   help="function returning a built, compiled keras.Model")
    p.add_argument("--input", required=True, metavar="MODULE:FN",
                   help="function returning the validation input (tf.data.Dataset, ...)")
    p.add_argument("--infs", metavar="MODULE:FN",
                   help="function returning the inferencers (default: ScalarStats('loss'), "
                        "ClassificationError())")
    p.add_argument("--checkpoint-dir", required=True,
                   help="the ModelSaver (or ModelCheckpoint) directory to watch")
    p.add_argument("--checkpoint-format", choices=["auto", "tensorflow", "keras"], default="auto",
                   help="ModelSaver's TensorFlow checkpoints, or keras.callbacks.ModelCheckpoint's "
                        "*.weights.h5 / *.keras files (default auto: what the directory holds)")
    p.add_argument("--settle-seconds", type=float, default=10.0,
                   help="Keras files: how long the newest file must stay unchanged before it is read")
    p.add_argument("--logdir", required=True, help="where stats.json, TensorBoard events and "
                   "sidecar_state.json go")
    p.add_argument("--max-evaluations", type=int, help="stop after this many evaluations")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look (default 1)")
    p.add_argument("--timeout", type=float,
                   help="stop (exit status 3) after this many seconds without a new checkpoint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sidecar; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if "" not in sys.path:  # `python -m` puts the working directory first; keep it so
        sys.path.insert(0, "")
    try:
        build_model = load_function(args.model, "--model")
        make_input = load_function(args.input, "--input")
        make_infs = load_function(args.infs, "--infs") if args.infs else None
    except ValueError as e:
        parser.error(str(e))

    from infer_callbacks.inferencers.scalar import ClassificationError, ScalarStats
    from infer_callbacks.sidecar.evaluator import SidecarEvaluator

    infs = make_infs() if make_infs is not None else [ScalarStats("loss"), ClassificationError()]
    try:
        evaluator = SidecarEvaluator(
            build_model, make_input(), infs, args.checkpoint_dir, logdir=args.logdir,
            max_evaluations=args.max_evaluations, poll_seconds=args.poll_seconds, timeout=args.timeout,
            checkpoint_format=args.checkpoint_format, settle_seconds=args.settle_seconds)
    except (TypeError, ValueError) as e:
        parser.error(str(e))

    rows = _run_interruptibly(evaluator)
    print(f"sidecar: {len(rows)} checkpoints evaluated; stopped: {evaluator.stop_reason}.",
          file=sys.stderr, flush=True)
    return EXIT_TIMEOUT if evaluator.stop_reason == "timeout" else 0


def _run_interruptibly(evaluator) -> list[dict]:
    """``evaluator.run()`` in a worker thread, so that SIGTERM / SIGINT
    handlers (which run in the main thread) can call ``evaluator.stop()``
    without ever waiting on a lock the interrupted code holds. The first
    signal lets the evaluation under way finish; a second one stops at once
    (progress and ``stats.json`` are written atomically: nothing is half
    written)."""
    outcome: dict[str, Any] = {}

    def work():
        try:
            outcome["rows"] = evaluator.run()
        except BaseException as e:  # re-raised in the main thread
            outcome["error"] = e

    def request_stop(signum, frame):
        if evaluator.stopping:
            raise KeyboardInterrupt
        print("sidecar: stopping after the evaluation under way (signal again to stop now).",
              file=sys.stderr, flush=True)
        evaluator.stop()

    worker = threading.Thread(target=work, name="sidecar", daemon=True)
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["rows"]
