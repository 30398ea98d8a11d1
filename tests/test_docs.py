"""The docs cannot go stale: every ```python block of README.md and docs/*.md
runs, the site builds warning-free, and the package builds as a wheel.

A page's blocks run in order in one namespace and a working directory of
its own; all pages run in one fresh process (one TensorFlow start) under a
hard timeout. A block is skipped only with
a marker comment that says why, on a line of its own:

    # docs-test: skip (needs two machines)

A page whose text holds ``<!-- docs-test: KERAS_BACKEND=jax -->`` runs in a
second process on Keras's JAX backend.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.tensorflow_only("runs each page under the backend it names")

PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
SKIP = re.compile(r"^\s*# docs-test: skip \((?P<reason>[^)]*\S[^)]*)\)\s*$", re.M)
BACKEND = re.compile(r"<!-- docs-test: KERAS_BACKEND=(?P<backend>\w+) -->")
FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)


def page_backend(page: str) -> str:
    """The Keras backend a page's blocks run on (``tensorflow`` unless marked)."""
    with open(os.path.join(REPO, page)) as f:
        found = BACKEND.search(f.read())
    return found.group("backend") if found else "tensorflow"


def python_blocks(page: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip_reason)`` of each ```python block of ``page``."""
    with open(os.path.join(REPO, page)) as f:
        text = f.read()
    blocks = []
    for m in FENCE.finditer(text):
        code = m.group("code")
        line = text.count("\n", 0, m.start()) + 2
        skip = SKIP.search(code)
        blocks.append((line, code, skip.group("reason") if skip else None))
    return blocks


def test_skip_markers_state_a_reason():
    for page in PAGES:
        with open(os.path.join(REPO, page)) as f:
            text = f.read()
        for line in text.splitlines():
            if "docs-test:" in line and line.strip().startswith("#"):
                assert SKIP.match(line), f"{page}: a skip marker must say why: {line!r}"


def test_every_page_is_in_the_site_navigation():
    with open(os.path.join(REPO, "mkdocs.yml")) as f:
        nav = f.read()
    for page in PAGES:
        if page.startswith("docs"):
            assert os.path.basename(page) in nav, f"{page} is not in mkdocs.yml's nav"


def test_ci_runs_the_readmes_two_commands():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    # The main job on data that needs no download (tests/test_demo.py runs it),
    # then the tests, as CI runs them.
    assert commands == ["pip install -e . && python -m infer_callbacks.demo",
                        "pip install -e '.[test]' && pytest -q && KERAS_BACKEND=jax pytest -q "
                        "&& KERAS_BACKEND=torch pytest -q"], commands
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == commands[1], ci


_RUNNER = """
import linecache, os, sys, traceback
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
pages = {pages!r}
root = os.getcwd()
for page, blocks in pages:
    os.makedirs(os.path.join(root, page.replace("/", "_")))
    os.chdir(os.path.join(root, page.replace("/", "_")))   # each page its own working directory
    namespace = {{"__name__": "__main__"}}                  # and its own namespace
    try:
        for line, code in blocks:
            filename = f"{{page}}:{{line}}"
            # Registered, so that inspect (and tf.function's autograph) can read the source.
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            exec(compile(code, filename, "exec"), namespace)
        print(f"PAGE-OK {{page}}", flush=True)
    except BaseException:
        print(f"PAGE-FAILED {{page}} block at line {{line}}:", flush=True)
        traceback.print_exc(file=sys.stdout)
        print(f"PAGE-END {{page}}", flush=True)
"""


@pytest.fixture(scope="module")
def page_outcomes(tmp_path_factory):
    """Every page's blocks, run in one fresh process (one TensorFlow start
    for all pages): ``{page: None if it passed, else the failure's text}``."""
    pages = [(page, [(line, code) for line, code, skip in python_blocks(page) if skip is None])
             for page in PAGES]
    pages = [(page, blocks) for page, blocks in pages if blocks]
    # A page that sets up logical devices must run before TensorFlow starts.
    pages.sort(key=lambda item: "set_logical_device_configuration" not in "".join(c for _, c in item[1]))
    outcomes = {}
    for backend in sorted({page_backend(page) for page, _ in pages}):  # one process per backend
        group = [(page, blocks) for page, blocks in pages if page_backend(page) == backend]
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["NO_MKDOCS_2_WARNING"] = "1"
        env["KERAS_BACKEND"] = backend
        proc = subprocess.run([sys.executable, "-c", _RUNNER.format(pages=group)],
                              cwd=str(tmp_path_factory.mktemp("docs")), env=env,
                              capture_output=True, text=True, timeout=1500)
        for page, _ in group:
            if f"PAGE-OK {page}\n" in proc.stdout:
                outcomes[page] = None
            else:
                start = proc.stdout.find(f"PAGE-FAILED {page} ")
                end = proc.stdout.find(f"PAGE-END {page}")
                outcomes[page] = (proc.stdout[start:end] if start >= 0 else
                                  f"did not run (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return outcomes


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page, page_outcomes):
    if page not in page_outcomes:
        pytest.skip(f"{page} has no runnable python block")
    assert page_outcomes[page] is None, f"a code block of {page} failed:\n{page_outcomes[page][-6000:]}"


def test_mkdocs_builds_strict(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[test]' installs it)")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": REPO, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_wheel_builds_and_installs_without_editable(tmp_path):
    # Build from a copy, so the shared working tree gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        with open(os.path.join(REPO, name)) as f, open(src / name, "w") as g:
            g.write(f.read())
    subprocess.run(["cp", "-r", os.path.join(REPO, "infer_callbacks"), str(src)], check=True)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", *isolation,
                           "-w", str(tmp_path / "dist"), "-q"], cwd=src, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "infer_callbacks-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "infer_callbacks/__init__.py" in names and "infer_callbacks/monitors/callback.py" in names
    assert re.search(r"^Version: \d+\.\d+", metadata, re.M), metadata[:500]
    assert "Requires-Dist: tensorflow" in metadata
    target = tmp_path / "site-packages"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                           str(target), wheel], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = textwrap.dedent("""
        import importlib.metadata, os, infer_callbacks
        assert infer_callbacks.__file__.startswith(os.environ["TARGET"]), infer_callbacks.__file__
        assert importlib.metadata.version("infer_callbacks") == infer_callbacks.__version__
        print(infer_callbacks.__version__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), TARGET=str(target), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", check], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
