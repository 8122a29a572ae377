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
from nnbin.backend import About


class WrappedBackend(nnbin.Backend):
    name = "wrapped"
    about = About(package="numpy", extra="wrapped")
    default_dtype = "float64"

    def __init__(self):
        self.xp = array_api_compat.array_namespace(np.empty(0))

    @staticmethod
    def owns(x):
        return isinstance(x, (np.ndarray, np.generic))  # NumPy reductions give scalars

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


#: the part of the suite the kit's tests run: the 2nd of 16 shards, every 16th check from
#: every file (about 20 of every kind but the 1,000-step seed run, which the shard misses).
#: The whole suite runs on every built-in backend in the same test run already; here it is
#: the path that is tested: the entry point, the backend's name, the report, the exit status
PART = "2/16"


def _conformance(
    root: Path, *args: str, part: str | None = PART
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("NNBIN_BACKEND", None)
    env.pop("NNBIN_CONFORMANCE_SHARD", None)
    if part is not None:
        env["NNBIN_CONFORMANCE_SHARD"] = part
    return subprocess.run(
        [sys.executable, "-m", "nnbin", "conformance", "--backend", "wrapped", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        # no wall-clock limit: a test must not fail because the machine is slow
        timeout=None,
    )


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
    out = _conformance(
        _package(tmp_path / "good"), "-q", "-k", "test_unmutated_copy_passes", part=None
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 passed" in out.stdout


def test_the_readme_names_the_one_command():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "nnbin conformance --backend" in readme


SUITE = ["conformance"]


def _collect(**env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``pytest --collect-only conformance`` on numpy, with ``env`` added: the run, and
    the test ids it collected."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", *SUITE],
        capture_output=True,
        text=True,
        env={**os.environ, "NNBIN_BACKEND": "numpy", **env},
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    return out, [line for line in out.stdout.splitlines() if "::" in line]


def test_shards_of_the_suite_are_disjoint_and_together_the_whole():
    """NNBIN_CONFORMANCE_SHARD=K/N (the GPU check runs a backend's suite as N processes at
    once): every test in exactly one shard, the shards within one test of the same size."""
    out, whole = _collect()
    assert out.returncode == 0 and len(whole) > 100
    shards = []
    for k in (1, 2, 3):
        out, ids = _collect(NNBIN_CONFORMANCE_SHARD=f"{k}/3")
        assert out.returncode == 0 and ids
        shards.append(ids)
    assert sorted(i for ids in shards for i in ids) == sorted(whole)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[1]).isdisjoint(shards[2])


@pytest.mark.parametrize("text", ["4/3", "0/2", "2", "a/b", "1/0"])
def test_a_malformed_shard_is_one_usage_error(text):
    out, ids = _collect(NNBIN_CONFORMANCE_SHARD=text)
    assert out.returncode == 4 and not ids, out.stdout + out.stderr  # pytest's usage error
    assert "write K/N with 1 <= K <= N" in out.stderr and "Traceback" not in out.stderr
