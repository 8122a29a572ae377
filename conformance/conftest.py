"""The backend fixture: NNBIN_BACKEND's backend (an error if it cannot run), or else every
registered backend, the ones that cannot run here skipped with the reason."""

from __future__ import annotations

import os

import pytest

import nnbin
from nnbin.backend import ENV_VAR

from .helpers import configure_for_conformance


def _names() -> tuple[list[str], bool]:
    named = os.environ.get(ENV_VAR, "").strip()
    if named:
        return [named.lower()], True
    return nnbin.available_names(), False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names, _ = _names()
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> nnbin.Backend:
    name = request.param
    _, explicit = _names()
    try:
        be = nnbin.get_backend(name)
    except nnbin.NnbinError as exc:
        if explicit:
            pytest.fail(f"{ENV_VAR}={name} cannot run: {exc}", pytrace=False)
        pytest.skip(f"backend {name!r} not runnable here: {exc}")
    configure_for_conformance(be)
    return be


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest, backend: nnbin.Backend) -> str:
    if request.param not in backend.dtypes:
        pytest.skip(f"backend {backend.name!r} has no {request.param}")
    return str(request.param)
