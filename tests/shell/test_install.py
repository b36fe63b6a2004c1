"""``pip install .`` as a user gets it: the wheel and sdist, installed into a fresh venv.

The package is built (``python -m build --no-isolation``) from a copy of the checkout's
build inputs, so the checkout gains no ``build/`` or ``dist/``. The wheel goes into a new
venv with ``pip install --no-deps --no-index``; torch and the other dependencies are not
downloaded again but made visible afterwards through a ``.pth`` file naming this
interpreter's site-packages. Its own ``aewatch`` comes first on ``sys.path``, and the test
checks the commands run from it, not from the editable checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import aewatch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "README.md", "src")
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the build reads, without caches or the checkout's egg-info."""
    root = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, root / name)
    return root


@pytest.fixture(scope="module")
def dist(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the built sdist and wheel; the build must not warn of deprecations."""
    out = tmp_path_factory.mktemp("dist")
    built = _run(
        sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source), cwd=out
    )
    assert "deprecat" not in built.lower(), built
    return out


@pytest.fixture(scope="module")
def fresh(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel, with this venv's packages behind it; its bin/ folder."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(root)
    bin_dir = root / "bin"
    wheel = _one(dist, "*.whl")
    _run(
        sys.executable,
        *("-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet"),
        *("--no-deps", "--no-index", str(wheel)),
        cwd=root,
    )
    # Written after the install, so pip never sees the checkout's editable aewatch. Lines of
    # a .pth only extend sys.path: the .pth files in those folders (the editable finder
    # among them) are not run.
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    theirs = _run(str(bin_dir / "python"), "-c", where, cwd=root)
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(theirs.strip()) / "aewatch_test_deps.pth").write_text("\n".join(ours) + "\n")
    return bin_dir


def test_wheel_holds_every_file_of_the_package(dist: Path, source: Path) -> None:
    src = source / "src"
    files = {
        p.relative_to(src).as_posix()
        for p in (src / "aewatch").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        held = {name for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    # A data file the code reads (a template, JSON, YAML) needs a package-data declaration.
    assert files == held


def test_sdist_holds_the_sources(dist: Path, source: Path) -> None:
    with tarfile.open(_one(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    sources = {p.relative_to(source).as_posix() for p in (source / "src").rglob("*.py")}
    assert sources <= names
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names


def test_installed_aewatch_comes_from_the_fresh_venv(fresh: Path, tmp_path: Path) -> None:
    shown = _run(
        str(fresh / "python"),
        "-c",
        "import aewatch, importlib.metadata as m; "
        "print(aewatch.__file__); print(m.distribution('aewatch').locate_file(''))",
        cwd=tmp_path,
    )
    module, distribution = shown.split()
    venv_root = fresh.parent.resolve()
    assert Path(module).resolve().is_relative_to(venv_root), module
    assert Path(distribution).resolve().is_relative_to(venv_root), distribution
    assert not Path(module).resolve().is_relative_to(REPO), module


def test_version_is_the_wheels(fresh: Path, dist: Path, tmp_path: Path) -> None:
    wheel_version = _one(dist, "*.whl").name.split("-")[1]
    assert wheel_version == aewatch.__version__
    assert (
        _run(str(fresh / "aewatch"), "--version", cwd=tmp_path).strip()
        == f"aewatch {wheel_version}"
    )


def test_simulate_train_score_round_trip(fresh: Path, tmp_path: Path) -> None:
    command = str(fresh / "aewatch")
    history, model, scores = tmp_path / "h.csv", tmp_path / "m.aew", tmp_path / "scores.csv"
    simulate = ("simulate", "--scenario", "well", "--period", "10", "--hours", "12", "--seed", "1")
    _run(command, *simulate, "--out", str(history), cwd=tmp_path)
    train = ("train", "--data", str(history), "--arch", "pca", "--epochs", "1", "--quiet")
    _run(command, *train, "--out", str(model), cwd=tmp_path)
    score = ("score", "--model", str(model), "--data", str(history), "--out", str(scores))
    scored = _run(command, *score, cwd=tmp_path)
    assert "scored 4320 rows" in scored
    assert scores.read_text().startswith("timestamp,score,threshold,anomaly,")


def _one(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def _run(*argv: str, cwd: Path) -> str:
    """Run ``argv`` in ``cwd`` (outside the checkout), without PYTHONPATH; stdout and stderr."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env=env,
        cwd=cwd,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{output}"
    return output
