"""Backend registry: selection, errors, lazy imports, entry points."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import nnbin
import nnbin.backend as backend_mod

ROOT = Path(__file__).resolve().parents[1]


def test_entry_points_match_the_source_tree_table():
    """pyproject's entry points and the table used when running from source agree."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]["nnbin.backends"]
    assert declared == backend_mod._BUILTIN


def test_default_is_numpy_and_env_is_read_per_call(monkeypatch):
    monkeypatch.delenv("NNBIN_BACKEND", raising=False)
    assert nnbin.get_backend().name == "numpy"
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("NNBIN_BACKEND", "strict")
    assert nnbin.get_backend().name == "strict"


def test_unknown_backend_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv("NNBIN_BACKEND", "nope")
    with pytest.raises(nnbin.UnknownBackendError) as info:
        nnbin.get_backend()
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "'nope'" in msg and "numpy" in msg and "strict" in msg and "\n" not in msg


class _Missing(nnbin.Backend):
    name = "missing"
    package = "surely_not_an_installed_package_nnbin"
    extra = "missing-extra"


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(backend_mod, "backend_class",
                        lambda name: _Missing if name == "missing" else None)
    with pytest.raises(nnbin.BackendUnavailableError,
                       match=r"pip install 'nnbin\[missing-extra\]'"):
        nnbin.get_backend("missing")


def test_third_party_backend_registers_through_entry_points(monkeypatch):
    """A backend from another package is found through the same entry-point group."""
    from importlib.metadata import EntryPoint

    fake = EntryPoint("fake", "nnbin_backends.numpy:NumpyBackend", "nnbin.backends")
    real = backend_mod.entry_points

    def eps(group):
        return [*real(group=group), fake] if group == "nnbin.backends" else real(group=group)

    backend_mod._registered.cache_clear()
    monkeypatch.setattr(backend_mod, "entry_points", eps)
    try:
        assert "fake" in nnbin.available_names()
        assert backend_mod.backend_class("fake").__name__ == "NumpyBackend"
    finally:
        monkeypatch.undo()
        backend_mod._registered.cache_clear()


def test_numpy_training_imports_no_other_array_library():
    code = (
        "import sys, nnbin\n"
        "X, y = nnbin.two_gaussians(n_per_class=100)\n"
        "nnbin.train(X, y, steps=5)\n"
        "libs = ('cupy', 'jax', 'torch', 'dask', 'array_api_strict')\n"
        "bad = [m for m in libs if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "NNBIN_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_backend_of_recognises_arrays():
    import numpy as np

    assert nnbin.backend_of(np.zeros(2)).name == "numpy"
    with pytest.raises(TypeError, match="does not know arrays"):
        nnbin.backend_of([1.0, 2.0])
