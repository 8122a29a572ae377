"""The conformance suite as a kit: a backend written outside nnbin, registered through the
``nnbin.backends`` entry point by its own distribution, checks itself with one command —
and the same backend with a planted bug fails it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND = '''
"""An out-of-tree nnbin backend: NumPy arrays under another name."""

import array_api_compat
import numpy as np

import nnbin


class WrappedBackend(nnbin.Backend):
    name = "wrapped"
    package = "numpy"
    extra = "wrapped"
    default_dtype = "float64"

    def __init__(self):
        self.xp = array_api_compat.array_namespace(np.empty(0))

    @staticmethod
    def owns(x):
        return isinstance(x, (np.ndarray, np.generic))  # NumPy reductions give scalars

    def version(self):
        return "0.1"

    def asarray(self, a, dtype, device=None):
        return np.asarray(a, dtype=dtype){bug}
'''


def _package(root: Path, bug: str = "") -> Path:
    """The backend's distribution, as an install leaves it: the module and a dist-info
    folder whose entry_points.txt registers it."""
    root.mkdir()
    (root / "wrapped_backend.py").write_text(BACKEND.replace("{bug}", bug))
    info = root / "wrapped_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wrapped-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[nnbin.backends]\nwrapped = wrapped_backend:WrappedBackend\n"
    )
    return root


def _conformance(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("NNBIN_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "nnbin", "conformance", "--backend", "wrapped", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )


@pytest.mark.heavy
def test_an_out_of_tree_backend_passes_the_suite_under_its_own_name(tmp_path):
    out = _conformance(_package(tmp_path / "good"), "-q")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
    # the report says which checks were skipped, and why
    assert "SKIPPED" in out.stdout and "wrapped has no fused step" in out.stdout


def test_the_same_backend_with_a_planted_bug_fails_it(tmp_path):
    # a silent cast through float16 in asarray: every check that compares numbers fails
    bug = '.astype("float16").astype(dtype)'
    out = _conformance(_package(tmp_path / "bad", bug), "-q", "-x")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 failed" in out.stdout


def test_an_unknown_backend_is_one_line(tmp_path):
    out = _conformance(tmp_path)
    assert out.returncode == 2 and "unknown backend 'wrapped'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_pytest_arguments_pass_through(tmp_path):
    out = _conformance(_package(tmp_path / "good"), "-q", "-k", "test_unmutated_copy_passes")
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 passed" in out.stdout


def test_the_readme_names_the_one_command():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "nnbin conformance --backend" in readme
