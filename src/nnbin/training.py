"""Full-batch gradient-descent training on any backend."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import validate
from .backend import Backend, backend_of, get_backend
from .backprop import loss_and_grads
from .errors import InvalidInputError, MixedArraysError
from .loop import diverged
from .model import Array, Params, namespace, quiet_overflow


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    params: Params
    #: (step, loss) for every ``log_every``-th step: the mean BCE *before* that step's update
    history: list[tuple[int, float]]
    #: mean BCE of the final parameters (after the last step)
    final_loss: float
    backend: str
    dtype: str
    #: how the steps were run (for example "python loop", "fused CUDA step ...")
    loop: str
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def _backend_and_dtype(X: Any, backend: str | None, dtype: str | None) -> tuple[Backend, str]:
    """The backend that trains on X (checked by validate.training_data: one library, one
    device) and the working dtype. Host (NumPy) data go to ``backend``; other arrays stay
    with their library, and naming another backend for them is an error."""
    if isinstance(X, np.ndarray):
        be = get_backend(backend)
    else:
        be = backend_of(X)
        if backend is not None and get_backend(backend) is not be:
            raise MixedArraysError(
                f"X is a {be.name} array but backend={backend!r} was asked for; nnbin never "
                f"copies between libraries: convert the data first, or drop backend="
            )
    if dtype is None:
        # The data's own floating dtype, unless they are host data bound for another backend.
        kind = str(getattr(X, "dtype", ""))
        own = not isinstance(X, np.ndarray) or be.owns(X)
        dtype = kind.rpartition(".")[2] if own and "float" in kind else be.default_dtype
    if dtype not in be.dtypes:
        raise ValueError(f"the {be.name} backend supports {', '.join(be.dtypes)}, not {dtype!r}")
    return be, dtype


def _place(be: Backend, X: Any, y: Any, dtype: str) -> tuple[Array, Array]:
    """X and y on ``be`` in ``dtype``, copying only host (NumPy) data."""
    narrowed = dtype == "float32" and "float64" in str(getattr(X, "dtype", ""))
    if isinstance(X, np.ndarray):
        if narrowed and np.max(np.abs(X), initial=0.0) > np.finfo(np.float32).max:
            raise _too_big_for_float32()
        return be.asarray(X, dtype), be.asarray(y, dtype)
    xp = namespace(X, y)
    X = xp.astype(X, getattr(xp, dtype), copy=False)  # no copy when already right
    y = xp.astype(y, getattr(xp, dtype), copy=False)
    if narrowed and not bool(xp.all(xp.isfinite(X))):  # one check, only when narrowing
        raise _too_big_for_float32()
    return X, y


def _too_big_for_float32() -> Exception:
    return InvalidInputError(
        "X holds values beyond float32's range (about ±3.4e38): they would become infinite "
        "in float32; train in float64 (dtype='float64') or rescale the features"
    )


@quiet_overflow
def train(
    X: Any,
    y: Any,
    *,
    hidden: int = 32,
    lr: float = 1.0,
    steps: int = 1000,
    log_every: int = 100,
    seed: int = 0,
    dtype: str | None = None,
    backend: str | None = None,
    data_parallel: bool | int = False,
    fused: bool | None = None,
    on_log: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the network on (X, y) by full-batch gradient descent on mean BCE.

    X is (N, D) and y is (N, 1) with labels 0 and 1. NumPy inputs run on ``backend``
    (default: ``NNBIN_BACKEND``, else numpy) and are moved there once; arrays of another
    library run on that library's backend, on their device, and the parameters come back
    as arrays of that library. ``dtype`` defaults to the data's floating dtype, else the
    backend's default. The loss is recorded every ``log_every`` steps (0: never), before
    that step's update; ``on_log(step, loss)`` is called for each record.

    ``data_parallel=True`` (all devices) or ``=k`` (the first k) splits the samples across
    devices with the parameters replicated, where the backend supports it (jax: a ``Mesh``
    over the devices; XLA inserts the cross-device sums of the gradients).

    ``fused``: on backends with a fused step (cupy; torch and jax arrays on a CUDA GPU with
    cupy installed, which reach cupy's kernels through DLPack), None uses it where it
    applies, False always runs the array-API core, True requires the fused step.
    """
    hidden, lr, steps, log_every, seed = validate.hyperparameters(
        hidden=hidden, lr=lr, steps=steps, log_every=log_every, seed=seed
    )
    X, y = validate.training_data(X, y)
    be, dtype = _backend_and_dtype(X, backend, dtype)
    on_host = isinstance(X, np.ndarray) or "cpu" in str(_device(X)).lower()
    if on_host and not be.out_of_core:  # Dask works chunk by chunk
        # host memory: checked before anything large is allocated (GPU libraries report
        # their own out-of-memory errors)
        n, d = (int(v) for v in X.shape)
        size = 4 if dtype == "float32" else 8
        validate.memory_fits(n, d, hidden, size, be.memory_nh, be.block_rows(n, hidden))
    X, y = _place(be, X, y, dtype)
    params = be.init_params(X.shape[1], hidden, seed, dtype=dtype, device=_device(X))
    if data_parallel:
        n_dev = None if data_parallel is True else int(data_parallel)
        params, X, y = be.distribute(params, X, y, n_dev)
    t0 = time.perf_counter()
    initial = params
    # the backend's run records the losses, calls on_log and raises on divergence
    run = be.run(params, X, y, lr=lr, steps=steps, log_every=log_every, on_log=on_log, fused=fused)
    final_loss, _ = loss_and_grads(run.params, X, y, block_rows=be.block_rows(X.shape[0], hidden))
    final = float(final_loss)  # also waits for the device: the run time below is honest
    elapsed = time.perf_counter() - t0 - run.compile_seconds
    if not math.isfinite(final):  # the loss after the last step, which no run records
        raise diverged(steps, lr, run.last_finite, initial)
    return TrainResult(
        params=run.params,
        history=run.history,
        final_loss=final,
        backend=be.name,
        dtype=dtype,
        loop=run.loop or be.loop,
        compile_seconds=run.compile_seconds,
        run_seconds=elapsed,
        settings={
            "hidden": hidden,
            "lr": lr,
            "steps": steps,
            "log_every": log_every,
            "seed": seed,
            "data_parallel": data_parallel,
            "fused": fused,
        },
    )


def _device(x: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(x)
