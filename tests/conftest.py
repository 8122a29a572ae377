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

import pytest

import nnbin.backend


@pytest.fixture
def clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NNBIN_BACKEND from the caller's environment leaks into a test."""
    monkeypatch.delenv(nnbin.backend.ENV_VAR, raising=False)
