"""pipeline: the pace of step calls (a clock passed in, never slept) and the
background thread between the device and the inferencers."""

from __future__ import annotations

import threading

import pytest

from conftest import assert_step_threads_end
from infer_callbacks.runner.engine.pipeline import Pacer, pipelined


def _limits(pacer, seconds_per_round, calls):
    """The limits a pacer asks for when every round takes ``seconds_per_round``."""
    asked = []
    for _ in range(calls):
        limit = pacer.limit
        asked.append(limit)
        pacer.observe(limit, limit, limit * seconds_per_round)
    return asked


def test_fast_rounds_double_up_to_the_maximum():
    assert _limits(Pacer(64), 1e-4, 9) == [1, 2, 4, 8, 16, 32, 64, 64, 64]


def test_slow_rounds_get_short_calls_so_progress_moves():
    # 50 ms per round, a quarter of a second per call: never more than 5 rounds
    asked = _limits(Pacer(64), 0.05, 6)
    assert asked[0] == 1 and max(asked) == 5
    assert all(b <= 2 * a for a, b in zip(asked, asked[1:])), asked
    assert _limits(Pacer(64), 10.0, 3) == [1, 1, 1]  # a very slow model: one round per call


def test_target_seconds_and_fixed_pace():
    assert _limits(Pacer(100, target_seconds=1.0), 0.1, 5) == [1, 2, 4, 8, 10]
    assert _limits(Pacer(7, adaptive=False), 10.0, 3) == [7, 7, 7]  # several workers: the same calls


def test_large_outputs_keep_calls_under_the_byte_target():
    # 1 MiB fetched per round, 4 MiB a call at most, however fast the rounds
    pacer = Pacer(1024, target_bytes=4 << 20)
    for _ in range(6):
        limit = pacer.limit
        pacer.observe(limit, limit, limit * 1e-5, limit << 20)
        assert pacer.limit <= 4
    assert pacer.limit == 4


def test_a_pass_starts_at_the_learned_pace():
    assert _limits(Pacer(64, start=32), 1e-4, 3) == [32, 64, 64]
    assert Pacer(64, start=500).limit == 64  # never above the maximum
    assert Pacer(8, adaptive=False, start=2).limit == 8  # several workers: always the fixed size


def test_a_short_last_call_does_not_change_the_pace():
    pacer = Pacer(64)
    pacer.observe(1, 0, 0.0)  # nothing ran
    assert pacer.limit == 1


def _counter(n):
    state = {"i": 0}

    def call():
        state["i"] += 1
        i = state["i"]
        return (i if i <= n else None), i >= n + 1
    return call


@pytest.mark.parametrize("background", [True, False])
def test_every_item_in_order(background):
    assert list(pipelined(_counter(25), background=background)) == list(range(1, 26))


@pytest.mark.parametrize("background", [True, False])
def test_an_error_in_a_call_reaches_the_consumer(background):
    def call():
        raise OSError("device lost")

    with pytest.raises(OSError, match="device lost"):
        list(pipelined(call, background=background))
    assert_step_threads_end()


def test_closing_early_stops_the_thread():
    def endless():
        return 1, False

    items = pipelined(endless)
    assert [next(items) for _ in range(3)] == [1, 1, 1]
    items.close()
    assert_step_threads_end()


def test_an_error_in_the_consumer_stops_the_thread():
    with pytest.raises(KeyboardInterrupt):
        for _ in pipelined(lambda: (1, False)):
            raise KeyboardInterrupt
    assert_step_threads_end()


def test_a_call_that_never_returns_is_abandoned():
    # Stopping never waits for a step call that hangs: the thread is a
    # daemon, left behind after `shutdown_timeout`.
    release, entered = threading.Event(), threading.Event()
    first = {"done": False}

    def call():
        if first["done"]:
            entered.set()
            release.wait()
            return None, True
        first["done"] = True
        return "first", False

    items = pipelined(call, shutdown_timeout=0.01)
    assert next(items) == "first"
    assert entered.wait(timeout=60)  # the second call has started
    items.close()  # returns although the second call is still blocked
    stuck = [t for t in threading.enumerate() if t.name == "infer_callbacks-step" and t.is_alive()]
    assert stuck and all(t.daemon for t in stuck)
    release.set()
    assert_step_threads_end()


@pytest.mark.parametrize("background", [True, False])
def test_on_stop_runs_once_however_the_generator_ends(background):
    stops = []
    assert list(pipelined(_counter(3), background=background, on_stop=lambda: stops.append(1))) == [1, 2, 3]
    assert stops == [1]
    items = pipelined(_counter(100), background=background, on_stop=lambda: stops.append(2))
    assert next(items) == 1
    items.close()  # stopped early
    assert stops == [1, 2]
    assert_step_threads_end()


def test_a_run_left_running_is_stopped_before_the_interpreter_exits():
    """Ctrl-C can leave a run going (an asynchronous one, or one past its
    shutdown timeout); the exit hook stops its step thread before TensorFlow
    shuts down, instead of leaving it inside a call."""
    from conftest import run_python

    code = """
        import atexit, threading, time

        def report():  # registered first, so it runs after the library's exit hook
            alive = [t for t in threading.enumerate() if t.name == "infer_callbacks-step" and t.is_alive()]
            print("ALIVE AT EXIT", len(alive), flush=True)
        atexit.register(report)

        from infer_callbacks.runner.engine.pipeline import pipelined

        def call():
            time.sleep(0.05)
            return 1, False  # never exhausted

        items = pipelined(call)
        next(items)  # a run under way, never closed
        print("LEAVING", flush=True)
    """
    proc = run_python(code, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LEAVING" in proc.stdout and "ALIVE AT EXIT 0" in proc.stdout, proc.stdout
