"""nox sessions: `nox` runs everything a CPU-only machine can run.

nox                              lint, then tests: mypy, the unit tests and the conformance
                                 suite on every CPU backend, in one environment
nox -s quick                     unit tests + numpy/strict conformance (the inner loop)
nox -s conformance               the conformance suite, one session (environment) per backend
nox -s "conformance(backend='jax')"
nox -s lint typecheck            (typecheck alone: the tests session runs it too)
"""

from __future__ import annotations

import nox

# One environment holds every CPU backend: the tests session runs mypy, the unit tests and
# the conformance suite on every backend in it (one install of each library, one pytest
# run, two workers). The per-backend sessions (conformance(backend=...)), each with only
# its backend's library installed, are there to run one backend alone.
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = False
# uv builds the environments where it is installed (several times faster than pip), else
# virtualenv and pip. uv reads its own index settings (UV_INDEX_URL, UV_FIND_LINKS), not
# pip's configuration: a machine whose wheels come from a local index through pip.conf (this
# project's CI machines have no uv) points uv at it with those variables.
nox.options.default_venv_backend = "uv|virtualenv"

# Backends the default run covers on a CPU-only machine, with the extra that installs each.
CPU_BACKENDS = {
    "numpy": "numpy",
    "strict": "strict",
    "jax": "jax",
    "torch": "torch",
    "dask": "dask",
}
# The conformance suite also runs on the generic binding of a library nnbin has no backend
# for (array-api-strict with its registration hidden): any array-API library trains.
GENERIC_BACKEND = "array-api:array_api_strict"
# Two pytest workers on two cores: each library's thread pool (OpenBLAS, MKL, PyTorch's
# OpenMP) at one thread, or two workers' pools of two threads spin against each other (the
# torch float64 seed run took 120 s that way in one CI run).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# glibc's malloc keeps freed memory instead of returning it at once: the backends that run
# the core unblocked (array-api-strict, torch and JAX on the CPU) allocate (N, H)
# temporaries of megabytes every step, each otherwise mapped and page-faulted in anew
# (300 seed steps on strict, torch and numpy: 11.1 s with 3.2 s of it in the kernel, 7-9 s
# and 0.2 s so). Other C libraries ignore these variables.
KEEP_HEAP = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(64 << 20),
}

# Installed before the extras: pip takes this machine's local CPU build of torch 2.13.0,
# where an unpinned torch could download a multi-GB CUDA build.
PINNED = ["torch==2.13.0"]


# pip compiles every module of every wheel it installs (torch, jax, scipy: tens of
# thousands of files): half of the tests session's install time. A session installs without
# it, and its runs may write the bytecode of what they import (these machines set
# PYTHONDONTWRITEBYTECODE, so nothing would be kept): each module is compiled once, on its
# first import, for every later process. uv does not compile unless asked.
def _pip(session: nox.Session, *args: str) -> None:
    session.install(*args, *(() if session.venv_backend == "uv" else ("--no-compile",)))
    session.env["PYTHONDONTWRITEBYTECODE"] = ""


def _install(session: nox.Session, extras: str) -> None:
    if "torch" in extras.split(","):
        _pip(session, *PINNED)
    _pip(session, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """mypy, then in one pytest run (two workers) the unit tests (CLI, files, errors, plots,
    estimator, JAX) and the conformance suite on every CPU backend, each required to run;
    then the suite on the generic binding (array-api-strict unregistered).

    SCIPY_ARRAY_API=1 lets scikit-learn's array-API estimator checks run."""
    _install(session, "test,strict,plot,jax,torch,dask,sklearn,onnx")
    _pip(session, "mypy>=1.10")
    session.run("mypy")  # the typecheck session's work, in this environment (one install)
    session.run(
        "pytest",
        "-n",
        "2",
        # a worker that runs out of tests takes some of the other's (the default hands them
        # out up front: the run ended on one busy worker's last minute)
        "--dist",
        "worksteal",
        "tests",
        "conformance",
        *session.posargs,
        env={
            "NNBIN_BACKEND": "",
            "NNBIN_CONFORMANCE_BACKENDS": ",".join(CPU_BACKENDS),
            "SCIPY_ARRAY_API": "1",
            **ONE_THREAD,
            **KEEP_HEAP,
        },
    )
    # The binding any array-API library gets with no backend of its own: the suite on
    # array-api-strict with its registration hidden, in a process of its own (the hiding
    # lasts the whole pytest session).
    session.run(
        "pytest",
        "-q",
        "-n",
        "2",
        "conformance",
        env={"NNBIN_BACKEND": GENERIC_BACKEND, **ONE_THREAD, **KEEP_HEAP},
    )


@nox.session
@nox.parametrize("backend", list(CPU_BACKENDS))
def conformance(session: nox.Session, backend: str) -> None:
    """Every check of conformance/ against the independent reference, on one backend.

    NNBIN_BACKEND is set, so a backend that cannot run is an error here, not a skip."""
    extra = CPU_BACKENDS[backend]
    # pytest and the backend's library only: the suite needs no plotting or scikit-learn
    _install(session, "conformance" if extra == "numpy" else f"conformance,{extra}")
    session.run("pytest", "conformance", *session.posargs, env={"NNBIN_BACKEND": backend})


@nox.session
def quick(session: nox.Session) -> None:
    """The inner loop: unit tests and the conformance suite with NumPy and array-api-strict
    only (no JAX, PyTorch or Dask installed, so their tests skip, with the reason)."""
    _install(session, "test,strict,plot")
    session.run(
        "pytest",
        "-q",
        "-n",
        "2",
        "-m",
        "not slow and not heavy",  # the checks of half a minute or more run in `nox`
        "tests",
        "conformance",
        *session.posargs,
        env={
            "NNBIN_BACKEND": "",
            "SCIPY_ARRAY_API": "1",
            **ONE_THREAD,
            **KEEP_HEAP,
        },
    )


@nox.session
def slow(session: nox.Session) -> None:
    """The long checks left out of the default run (today one: the 100,000-step seed job on
    numpy). A slow test that needs another library adds its extra here, so none is
    skipped for a missing package."""
    _install(session, "test")
    session.run("pytest", "-m", "slow", "tests", *session.posargs, env={"NNBIN_BACKEND": ""})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned: a new ruff release must not turn CI red
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")  # `ruff format` fixes what this reports


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy alone (not in the default run: the tests session runs it in its environment)."""
    _pip(session, "mypy>=1.10")
    _install(session, "strict,jax,plot,torch,sklearn,dask")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark with every CPU backend and baseline; arguments go to `nnbin bench`,
    for example `nox -s bench -- --sizes 20000 --steps 200 --json bench.json`."""
    _install(session, "strict,jax,torch,plot")
    session.run("nnbin", "bench", *session.posargs)


@nox.session
def quality(session: nox.Session) -> None:
    """Accuracy and fit time beside scikit-learn's MLPClassifier (BENCHMARKS.md); arguments
    go to `nnbin quality`, for example `nox -s quality -- --repeats 3`."""
    _install(session, "sklearn,jax")
    session.run("nnbin", "quality", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU check, with this interpreter and no installs (a GPU machine has no network):
    conformance on every GPU backend found, the seed job, the benchmark, within a time budget.
    `nox -s gpu -- OUT [--budget SECONDS] [--plan] [--only TEXT]`. Without a GPU it says so
    in one line and exits 3 (nothing checked), which this session does not count as failed."""
    args = session.posargs or ["gpu-report"]
    session.run(
        "python3",
        "-m",
        "conformance.gpucheck",
        *args,
        env={"PYTHONPATH": "src"},
        success_codes=[0, 3],
    )
