from __future__ import annotations

import os

# scikit-learn's array-API estimator checks need SciPy's array-API mode, which must be on
# before scipy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# Compiled-run caches the command line keeps (JAX) go to a folder of the test run's own,
# not the user's ~/.cache.
if "NNBIN_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["NNBIN_CACHE_DIR"] = tempfile.mkdtemp(prefix="nnbin-test-cache-")

import hashlib

import numpy as np
import pytest

import nnbin
import nnbin.backend
from nnbin.cli import main


@pytest.fixture
def clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NNBIN_BACKEND from the caller's environment leaks into a test."""
    monkeypatch.delenv(nnbin.backend.ENV_VAR, raising=False)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with good data and a saved model; snapshot() proves nothing changed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NNBIN_BACKEND", raising=False)
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    np.savetxt("good.csv", np.column_stack([X, y]), delimiter=",", header="x,label", comments="")
    nnbin.save("keep.safetensors", nnbin.train(X, y, hidden=3, steps=5))

    def snapshot():
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir())
        }

    return tmp_path, snapshot


@pytest.fixture
def cli(capsys):
    """nnbin's command line run in this process: ``cli(argv)`` -> (exit status, stderr)."""

    def run(argv):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def bench_argv():
    """``bench_argv(sizes, steps, dtypes, baselines, *more)``: the arguments of an ``nnbin
    bench`` on numpy alone, small and quick (one repeat unless ``more`` says ``--repeats``)."""

    def argv(sizes="100", steps=1, dtypes="float64", baselines="none", *more):
        repeats = [] if "--repeats" in more else ["--repeats", "1"]
        return [
            "bench", "--backends", "numpy", "--sizes", sizes, "--steps", str(steps), *repeats,
            "--dtypes", dtypes, "--baselines", baselines, *more,
        ]  # fmt: skip

    return argv
