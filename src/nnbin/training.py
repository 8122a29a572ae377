"""Full-batch gradient-descent training on any backend."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import Backend, backend_of, get_backend
from .backprop import apply_update, loss_and_grads, value_and_grads
from .errors import BackendUnavailableError, MixedArraysError, TrainingDivergedError
from .model import Array, Params, init_params, namespace, quiet_overflow


@dataclass
class RunResult:
    """What a backend's run of many steps returns."""

    params: Params
    #: (step, loss) pairs, the loss (a Python float) evaluated before that step's update
    history: list[tuple[int, float]]
    #: seconds spent compiling (0 for eager backends)
    compile_seconds: float = 0.0
    #: the last parameters whose loss was recorded and finite, and the step of that record
    last_finite: tuple[int, Params] | None = None
    #: how the steps ran, when a backend has more than one way (else the backend's ``loop``)
    loop: str = ""


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


def diverged(step: int, lr: float, last_finite: tuple[int, Params] | None,
             initial: Params) -> TrainingDivergedError:
    """The error for a loss that stopped being finite at ``step``."""
    good_step, good = last_finite if last_finite is not None else (0, initial)
    return TrainingDivergedError(
        f"training diverged: the loss is not finite at step {step} with lr={lr:g}; try a "
        f"smaller learning rate (the last finite parameters, from step {good_step}, are on "
        "this exception's .params)",
        step=step, lr=lr, params=good, last_finite_step=good_step,
    )


def python_loop(
    params: Params,
    X: Array,
    y: Array,
    *,
    lr: float,
    steps: int,
    log_every: int,
    block_rows: int | None = None,
    on_log: Callable[[int, float], None] | None = None,
    persist: Callable[..., tuple[Any, ...]] | None = None,
) -> RunResult:
    """The default way to run many steps: one Python iteration per step.

    The loss is computed only on logging steps, and only then brought to the host (to
    check that it is finite and to report it): one synchronisation per ``log_every`` steps.
    ``persist`` (Dask) materialises the new parameters after every step, together with the
    loss on logging steps, so one evaluation of the graph gives both.
    """
    initial = params
    history: list[tuple[int, float]] = []
    last_finite: tuple[int, Params] | None = None
    for s in range(steps):
        logging = log_every > 0 and s % log_every == 0
        loss, grads = value_and_grads(params, X, y, with_loss=logging, block_rows=block_rows)
        new = apply_update(params, grads, lr)
        if persist is not None:
            *kept, loss = persist(*new, loss) if loss is not None else (*persist(*new), None)
            new = Params(*kept)
        if loss is not None:
            value = float(loss)
            if not math.isfinite(value):
                raise diverged(s, lr, last_finite, initial)
            last_finite = (s, params)
            history.append((s, value))
            if on_log is not None:
                on_log(s, value)
        params = new
    return RunResult(params, history, last_finite=last_finite)


def _prepare(
    X: Any, y: Any, backend: str | None, dtype: str | None
) -> tuple[Backend, Array, Array, str]:
    """Put X and y on one backend in one floating dtype, copying only host (NumPy) data."""
    if isinstance(X, np.ndarray) and isinstance(y, np.ndarray):
        be = get_backend(backend)
    else:
        namespace(X, y)  # one clear error if they come from two libraries
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
        raise ValueError(
            f"the {be.name} backend supports {', '.join(be.dtypes)}, not {dtype!r}"
        )
    narrowed = dtype == "float32" and "float64" in str(getattr(X, "dtype", ""))
    if isinstance(X, np.ndarray):
        if narrowed and np.max(np.abs(X), initial=0.0) > np.finfo(np.float32).max:
            raise _too_big_for_float32()
        X = be.asarray(X, dtype)
        y = be.asarray(y, dtype)
    else:
        xp = namespace(X, y)
        X = xp.astype(X, getattr(xp, dtype), copy=False)  # no copy when already right
        y = xp.astype(y, getattr(xp, dtype), copy=False)
        if narrowed and not bool(xp.all(xp.isfinite(X))):  # one check, only when narrowing
            raise _too_big_for_float32()
    return be, X, y, dtype


def _too_big_for_float32() -> Exception:
    from .errors import InvalidInputError

    return InvalidInputError(
        "X holds values beyond float32's range (about ±3.4e38): they would become infinite "
        "in float32; train in float64 (dtype='float64') or rescale the features")


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
    from . import validate

    hidden, lr, steps, log_every, seed = validate.hyperparameters(
        hidden=hidden, lr=lr, steps=steps, log_every=log_every, seed=seed)
    X, y = validate.training_data(X, y)
    if isinstance(X, np.ndarray) or "cpu" in str(_device(X)).lower():
        # host memory: checked before anything large is allocated (GPU libraries report
        # their own out-of-memory errors)
        probe = get_backend(backend) if isinstance(X, np.ndarray) else backend_of(X)
        if probe.name != "dask":  # Dask works chunk by chunk, out of core
            n, d = (int(v) for v in X.shape)
            size = 4 if (dtype or probe.default_dtype) == "float32" else 8
            validate.memory_fits(n, d, hidden, size, probe.memory_nh,
                                 probe.block_rows(n, hidden))
    be, X, y, dtype = _prepare(X, y, backend, dtype)
    params = init_params(X.shape[1], hidden, seed, dtype=dtype, backend=be.name,
                         device=_device(X))
    if data_parallel:
        n_dev = None if data_parallel is True else int(data_parallel)
        params, X, y = be.distribute(params, X, y, n_dev)
    t0 = time.perf_counter()
    initial = params
    extra: dict[str, Any] = {"fused": fused} if be.has_fused else {}
    if fused and not extra:
        raise BackendUnavailableError(f"the {be.name} backend has no fused step")
    run = be.run(params, X, y, lr=lr, steps=steps, log_every=log_every, on_log=on_log,
                 **extra)
    final_loss, _ = loss_and_grads(run.params, X, y,
                                   block_rows=be.block_rows(X.shape[0], hidden))
    final = float(final_loss)  # also waits for the device: the run time below is honest
    elapsed = time.perf_counter() - t0 - run.compile_seconds
    history = [(int(s), float(v)) for s, v in run.history]
    bad = next((s for s, v in history if not math.isfinite(v)), None)
    if bad is not None or not math.isfinite(final):
        raise diverged(steps if bad is None else bad, lr, run.last_finite, initial)
    return TrainResult(
        params=run.params, history=history, final_loss=final, backend=be.name, dtype=dtype,
        loop=run.loop or be.loop, compile_seconds=run.compile_seconds, run_seconds=elapsed,
        settings={"hidden": hidden, "lr": lr, "steps": steps, "log_every": log_every,
                  "seed": seed, "data_parallel": data_parallel, "fused": fused},
    )


def _device(x: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(x)
