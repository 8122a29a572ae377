"""The backend fixture: the backends NNBIN_CONFORMANCE_BACKENDS lists, else NNBIN_BACKEND's
backend (each an error if it cannot run), or else every registered backend, the ones that
cannot run here skipped with the reason."""

from __future__ import annotations

import os

import pytest

import nnbin
from nnbin.backend import ENV_VAR

from .helpers import configure_for_conformance

#: a comma-separated list of backends to check in one run, each required to run (what
#: `nox` uses: one pytest run over every CPU backend); NNBIN_BACKEND names one
LIST_VAR = "NNBIN_CONFORMANCE_BACKENDS"


def _names() -> tuple[list[str], bool]:
    listed = [n.strip().lower() for n in os.environ.get(LIST_VAR, "").split(",") if n.strip()]
    if listed:
        return listed, True
    named = os.environ.get(ENV_VAR, "").strip()
    if named:
        return [named.lower()], True
    return nnbin.available_names(), False


def pytest_configure(config: pytest.Config) -> None:
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if cache is not None:
        from . import helpers

        helpers.CACHE_DIR = str(cache.mkdir("nnbin-reference"))


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
            pytest.fail(f"backend {name} was asked for but cannot run: {exc}", pytrace=False)
        pytest.skip(f"backend {name!r} not runnable here: {exc}")
    configure_for_conformance(be)
    return be


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest, backend: nnbin.Backend) -> str:
    if request.param not in backend.dtypes:
        pytest.skip(f"backend {backend.name!r} has no {request.param}")
    return str(request.param)
