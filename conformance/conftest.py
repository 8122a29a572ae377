"""The backend fixture: the backends NNBIN_CONFORMANCE_BACKENDS lists, else NNBIN_BACKEND's
backend (each an error if it cannot run), or else every registered backend, the ones that
cannot run here skipped with the reason. ``array-api:<module>`` names the binding any
array-API library gets with no backend of its own, that library's registration hidden."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

import nnbin
from nnbin import backend as backend_mod
from nnbin.backend import ENV_VAR, GENERIC_PREFIX

from .helpers import configure_for_conformance

#: a comma-separated list of backends to check in one run, each required to run (what
#: `nox` uses: one pytest run over every CPU backend); NNBIN_BACKEND names one
LIST_VAR = "NNBIN_CONFORMANCE_BACKENDS"
#: "K/N": run the K-th of N shards of the suite (every N-th test, from the K-th on, in
#: collection order), so that N processes run it together (the GPU check, which has no
#: pytest-xdist); the N shards of one collection are disjoint and together the whole
SHARD_VAR = "NNBIN_CONFORMANCE_SHARD"


def shard() -> tuple[int, int] | None:
    """NNBIN_CONFORMANCE_SHARD as (k, n), 1 <= k <= n; None when unset; a UsageError
    that says what to write when it is malformed."""
    text = os.environ.get(SHARD_VAR, "").strip()
    if not text:
        return None
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise pytest.UsageError(
            f"{SHARD_VAR}={text!r}: write K/N with 1 <= K <= N (for example 2/4: the "
            "second of four shards), or unset it to run the whole suite"
        )
    return k, n


def _names() -> tuple[list[str], bool]:
    listed = [n.strip().lower() for n in os.environ.get(LIST_VAR, "").split(",") if n.strip()]
    if listed:
        return listed, True
    named = os.environ.get(ENV_VAR, "").strip()
    if named:
        return [named.lower()], True
    return nnbin.available_names(), False


#: a folder for the reference's seed runs (15 s each on one core), shared by every process
#: of a test run: set here when unset (pytest's cache folder, else a temporary one), so that
#: xdist's workers and the conformance kit's subprocesses inherit it
REFERENCE_CACHE_VAR = "NNBIN_REFERENCE_CACHE"
_made: list[str] = []  # the temporary folder this process made, removed at the end


def pytest_configure(config: pytest.Config) -> None:
    shard()  # a malformed shard is an error before anything is collected
    from . import helpers

    folder = os.environ.get(REFERENCE_CACHE_VAR, "").strip()
    if not folder:
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        if cache is not None:
            folder = str(cache.mkdir("nnbin-reference"))
        else:
            folder = tempfile.mkdtemp(prefix="nnbin-reference-")
            _made.append(folder)
        os.environ[REFERENCE_CACHE_VAR] = folder
    os.makedirs(folder, exist_ok=True)
    helpers.CACHE_DIR = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    while _made:
        folder = _made.pop()
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get(REFERENCE_CACHE_VAR) == folder:
            del os.environ[REFERENCE_CACHE_VAR]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    which = shard()
    if which is None:
        return
    k, n = which
    kept = [item for i, item in enumerate(items) if i % n == k - 1]
    dropped = [item for i, item in enumerate(items) if i % n != k - 1]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def pytest_report_header(config: pytest.Config) -> str | None:
    which = shard()
    return None if which is None else f"nnbin conformance: shard {which[0]} of {which[1]}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names, _ = _names()
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Iterator[nnbin.Backend]:
    name = request.param
    _, explicit = _names()
    with pytest.MonkeyPatch.context() as mp:
        try:
            if name.startswith(GENERIC_PREFIX):
                _unregister(mp, name.removeprefix(GENERIC_PREFIX))
            be = nnbin.get_backend(name)
        except (nnbin.NnbinError, ImportError) as exc:
            if explicit:
                pytest.fail(f"backend {name} was asked for but cannot run: {exc}", pytrace=False)
            pytest.skip(f"backend {name!r} not runnable here: {exc}")
        configure_for_conformance(be)
        yield be


def _unregister(mp: pytest.MonkeyPatch, module: str) -> None:
    """For ``array-api:<module>`` (the binding any array-API library gets, with nothing
    registered for it: ``NNBIN_BACKEND=array-api:array_api_strict``): import the library
    (nnbin never does), and hide, for the session, the registered backends of it, so that
    its arrays reach the generic binding everywhere."""
    importlib.import_module(module)
    top = module.partition(".")[0]
    table = {
        n: v
        for n, v in backend_mod._registered().items()
        if backend_mod.backend_class(n).about.package != top
    }
    mp.setattr(backend_mod, "_registered", lambda: table)
    mp.setattr(backend_mod, "_cache", {})


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest, backend: nnbin.Backend) -> str:
    if request.param not in backend.dtypes:
        pytest.skip(f"backend {backend.name!r} has no {request.param}")
    return str(request.param)
