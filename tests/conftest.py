"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()

# -- the three backends ------------------------------------------------------
# ``pytest`` runs the suite under the backend ``KERAS_BACKEND`` names (Keras's
# own switch; TensorFlow by default). Under JAX and PyTorch a test runs unless
# it is marked ``tensorflow_only(reason)``: a feature that stays
# TensorFlow-only (the trainer host, export, TF checkpoints, ``tf.distribute``),
# a test of the TensorFlow engine's internals, or a test that starts its own
# processes on every backend (tests/jax, the docs, the same-numbers test).
# ``not_on_backend(name, ..., reason=...)`` deselects a shared test under the
# backends it names (used sparingly, each with its reason). Such tests are
# deselected, not skipped.


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tensorflow_only(reason): runs only under KERAS_BACKEND=tensorflow "
                   "(deselected under every other backend)")
    config.addinivalue_line(
        "markers", "not_on_backend(*backends, reason): deselected under the Keras backends named")


def pytest_report_header(config):
    return f"Keras backend: {BACKEND} (KERAS_BACKEND)"


def _deselected(item) -> bool:
    if BACKEND != "tensorflow" and item.get_closest_marker("tensorflow_only") is not None:
        return True
    return any(BACKEND in mark.args for mark in item.iter_markers("not_on_backend"))


def pytest_collection_modifyitems(config, items):
    dropped = [item for item in items if _deselected(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _deselected(item)]


def run_python(code: str, *, timeout: float = 240, env: dict | None = None,
               devices: int | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process (with a hard timeout).

    With ``devices=N`` the process's CPU is split into N logical devices
    before TensorFlow starts (``/cpu:0`` ... ``/cpu:N-1``).
    """
    prelude = "import os\nos.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n"
    if devices:
        prelude += textwrap.dedent(f"""
            import tensorflow as tf
            _cpu = tf.config.list_physical_devices('CPU')[0]
            tf.config.set_logical_device_configuration(
                _cpu, [tf.config.LogicalDeviceConfiguration() for _ in range({devices})])
        """)
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    if devices and BACKEND == "jax":  # JAX's CPU devices are set before JAX starts
        full_env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)


def check_inferencer(make_inferencer, arrays: dict, reference: dict, batch_sizes, *, rtol=1e-9):
    """Feed ``arrays`` (name -> per-example array) to a fresh inferencer in
    batches of the given sizes and compare its results with ``reference``
    (computed by numpy over the whole set at once). The MetricTester idea:
    whatever the split, the same numbers."""
    inf = make_inferencer()
    names = inf.get_fetches()
    n = len(next(iter(arrays.values())))
    inf.before_inference()
    start = 0
    for size in batch_sizes:
        stop = min(start + size, n)
        inf.on_fetches([arrays[k][start:stop] for k in names], stop - start)
        start = stop
    assert start == n, "batch sizes must cover the set"
    results = inf.after_inference()
    assert set(results) == set(reference)
    for key, expected in reference.items():
        np.testing.assert_allclose(results[key], expected, rtol=rtol, err_msg=key)
    return results


def random_splits(rng: np.random.Generator, n: int, max_batch: int) -> list[int]:
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(0, max_batch + 1)))  # 0: an empty replica slice
    sizes[-1] -= sum(sizes) - n
    return sizes


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def assert_step_threads_end(bound: float = 60.0) -> None:
    """Every validation step thread of this process ends (joined with a
    generous bound for a loaded machine; a bound, not a timing assertion)."""
    import threading

    for t in threading.enumerate():
        if t.name == "infer_callbacks-step" or t.name.startswith("infer_callbacks-feed"):
            t.join(timeout=bound)
            assert not t.is_alive(), f"validation step thread {t!r} still running after {bound} s"


# -- small Keras classifiers shared by the predict and checkpoints tests --

def make_keras(hidden=6, classes=3, extra_layer=False):
    layers = [keras.Input((4,)), keras.layers.Dense(hidden, activation="relu")]
    if extra_layer:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    layers += [keras.layers.Dropout(0.5), keras.layers.Dense(classes)]
    return keras.Sequential(layers)


def trained_keras(rng, **kwargs):
    model = make_keras(**kwargs)
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, size=64).astype("int32")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    return model



@pytest.fixture
def keras_ckpt(rng, tmp_path):
    """A trained Keras model and its ModelSaver directory (model, optimizer,
    epoch and step; the latest checkpoint differs from the first)."""
    model = trained_keras(rng)
    from infer_callbacks import ModelSaver

    saver = ModelSaver(tmp_path / "checkpoints", max_to_keep=2)
    saver.set_model(model)
    saver.on_train_begin()
    saver.on_epoch_end(0)
    model.layers[-1].bias.assign(model.layers[-1].bias + 1.0)
    model.optimizer.iterations.assign_add(1)
    saver.on_epoch_end(1)
    saver.on_train_end()
    return model, str(tmp_path / "checkpoints"), saver.saved[-1]


