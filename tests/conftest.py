from __future__ import annotations

import pytest

import nnbin.backend


@pytest.fixture
def clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NNBIN_BACKEND from the caller's environment leaks into a test."""
    monkeypatch.delenv(nnbin.backend.ENV_VAR, raising=False)
