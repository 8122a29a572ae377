"""One comparison helper and the shared cases of the suite."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

import nnbin

from . import reference as ref
from .tolerances import relative_error, rtol

NAMES = ("W1", "b1", "W2", "b2")


def configure_for_conformance(be: nnbin.Backend) -> None:
    """Full-precision float32 matmuls (no TF32) and float64 available: the backend's
    ``full_precision()`` hook (it does something on jax, torch and cupy)."""
    be.tools.full_precision()


def forbid_host_sync(be: nnbin.Backend, x: Any) -> Any:
    """The backend's ``forbid_host_sync(x)`` hook: a context manager in which a host
    synchronisation on ``x``'s device raises, where the library can detect one (cupy;
    torch on CUDA); None where it cannot."""
    return be.tools.forbid_host_sync(x)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and back to float64: what the reference computes on."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def assert_close(
    be: nnbin.Backend, actual: Any, expected: np.ndarray, *, dtype: str, what: str, label: str
) -> None:
    """``actual`` is an array of ``be``'s library, of ``dtype`` and the expected shape, and
    within the ``what`` tolerance of ``expected`` (norm-wise relative error)."""
    assert be.owns(actual), f"{label}: got {type(actual)}, not a {be.name} array"
    assert str(actual.dtype).endswith(dtype), f"{label}: dtype {actual.dtype}, expected {dtype}"
    host = be.to_host(actual)
    assert host.shape == expected.shape, f"{label}: shape {host.shape}, expected {expected.shape}"
    err = relative_error(host, expected)
    tol = rtol(dtype, what)
    assert err <= tol, f"{label}: relative error {err:.3g} > {tol:.3g} ({dtype}, {what})"


class Case:
    """Data and initial weights on the host (float64, rounded to dtype) and on the backend."""

    def __init__(
        self, be: nnbin.Backend, dtype: str, X: np.ndarray, y: np.ndarray, w: dict[str, np.ndarray]
    ) -> None:
        self.be, self.dtype = be, dtype
        self.X, self.y = rounded(X, dtype), y.astype(np.float64)
        self.w = {k: rounded(v, dtype) for k, v in w.items()}
        self.Xd = be.asarray(self.X, dtype)
        self.yd = be.asarray(self.y, dtype)
        self.params = nnbin.Params(
            *(be.asarray(self.w[k], dtype) for k in NAMES), activation="sigmoid"
        )


def seed_case(be: nnbin.Backend, dtype: str) -> Case:
    X, y = seed_data()
    return Case(be, dtype, X, y, ref.initial_weights(1, 32, seed=0))


@functools.cache
def seed_data() -> tuple[np.ndarray, np.ndarray]:
    return ref.two_gaussians(10_000, seed=0)


def random_case(be: nnbin.Backend, dtype: str, n: int, d: int, h: int, seed: int) -> Case:
    """Random data and weights with non-zero biases, so every term of the gradient matters."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 2.0, (n, d))
    y = (rng.random((n, 1)) < 0.5).astype(np.float64)
    w = {
        "W1": rng.normal(0, 1, (d, h)),
        "b1": rng.normal(0, 1, (h,)),
        "W2": rng.normal(0, 1, (h, 1)),
        "b2": rng.normal(0, 1, (1,)),
    }
    return Case(be, dtype, X, y, w)


GradFn = Callable[..., tuple[Any, nnbin.Params]]


def check_gradients(case: Case, loss_and_grads: GradFn, **kwargs: Any) -> None:
    """The loss and all four gradients of ``loss_and_grads`` against the reference."""
    loss, grads = loss_and_grads(case.params, case.Xd, case.yd, **kwargs)
    expected = ref.gradients(case.w, case.X, case.y)
    assert_close(
        case.be,
        loss,
        np.asarray(ref.loss(case.w, case.X, case.y)),
        dtype=case.dtype,
        what="op",
        label="loss",
    )
    for name, g in zip(NAMES, grads):
        assert_close(case.be, g, expected[name], dtype=case.dtype, what="op", label=f"d{name}")


#: where reference runs are kept between sessions (conftest.py sets it: $NNBIN_REFERENCE_CACHE,
#: else pytest's cache folder; None: computed in each process)
CACHE_DIR: str | None = None
#: the lengths of seed run the suite compares (test_backend's SEED_RUN_STEPS and
#: TRAIN_STEPS): the reference computes them in one run, to the longest
SEED_STOPS = (100, 300, 1000)


@functools.cache
def reference_seed_run(dtype: str, steps: int, log_every: int) -> ref.Run:
    """The reference's seed run (about 15 s for 1,000 steps on one core), kept on disk
    under a key of the reference's own source, NumPy's version and the arguments, so that
    the processes of one test run (each xdist worker, the kit's subprocesses) compute it
    once. A length of :data:`SEED_STOPS` computes all of them, in one run."""
    import os

    path = _cached_path(dtype, steps, log_every)
    if path is not None and os.path.exists(path):
        try:
            with np.load(path) as f:
                losses = [(int(s), float(v)) for s, v in f["losses"]]
                final = {k: f[k] for k in NAMES}
                return ref.Run(losses, final, float(f["final_loss"]))
        except (OSError, KeyError, ValueError):
            pass  # unreadable: computed again below
    stops = sorted({steps, *SEED_STOPS}) if steps in SEED_STOPS else [steps]
    X, y = seed_data()
    w = {k: rounded(v, dtype) for k, v in ref.initial_weights(1, 32, seed=0).items()}
    runs = ref.train_to(w, rounded(X, dtype), y, lr=1.0, stops=stops, log_every=log_every)
    for stop, run in zip(stops, runs):
        where = _cached_path(dtype, stop, log_every)
        if where is not None:
            tmp = f"{where}.{os.getpid()}.tmp.npz"
            np.savez(tmp, losses=np.array(run.losses), final_loss=run.final_loss, **run.final)
            os.replace(tmp, where)  # atomic: another process reads the whole file or none
    return runs[stops.index(steps)]


def _cached_path(dtype: str, steps: int, log_every: int) -> str | None:
    import hashlib
    import inspect
    import os

    if CACHE_DIR is None:
        return None
    key = hashlib.sha256(
        f"{inspect.getsource(ref)}|{np.__version__}|{dtype}|{steps}|{log_every}".encode()
    ).hexdigest()[:24]
    return os.path.join(CACHE_DIR, f"seed-run-{key}.npz")
