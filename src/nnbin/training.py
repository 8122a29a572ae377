"""Training on any backend: the seed job's full-batch gradient descent by default; deeper
networks, other activations and optimizers, mini-batches, an L2 penalty and early stopping
on request."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from . import options as options_table
from . import validate
from .backend import Backend, backend_of, block_width, get_backend, max_width
from .config import Config
from .errors import InvalidInputError, MixedArraysError, NnbinError
from .loop import diverged
from .model import Array, Params, dense, is_sparse, namespace, quiet_overflow, widths
from .optim import Optimizer


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
    #: steps (epochs, with mini-batches) run: fewer than ``steps`` when a stopping rule ended it
    n_iter: int = 0
    #: the lowest recorded training loss (scikit-learn's ``best_loss_``)
    best_loss: float | None = None
    #: with early stopping: the held-out accuracy after each epoch, and the best of them
    validation_scores: list[float] = field(default_factory=list)
    best_validation_score: float | None = None
    #: epochs in a row, at the end, that did not improve by ``tol`` (scikit-learn's
    #: ``_no_improvement_count``; 0 without a stopping rule)
    no_improvement_count: int = 0
    #: the step size the schedule ended at (``lr`` when constant): where a continued run of
    #: the adaptive schedule starts (scikit-learn's ``_optimizer.learning_rate``)
    lr_final: float | None = None
    #: the hidden-layer activation the parameters go with
    activation: str = "sigmoid"
    #: the optimizer's final state (``train(..., optimizer_state=)`` continues from it)
    optimizer_state: Any = ()
    #: how the optimizer ended the run where it has its own rule (L-BFGS: scipy's words,
    #: "CONVERGENCE: ..." when it converged; "" when it ran every step)
    message: str = ""


def backend_and_dtype(X: Any, backend: str | None, dtype: str | None) -> tuple[Backend, str]:
    """The backend that trains on X (checked by validate.training_data: one library, one
    device) and the working dtype. Host (NumPy) data go to ``backend``; other arrays stay
    with their library, and naming another backend for them is an error. SciPy sparse X
    are host data for a backend that keeps them sparse (``takes_sparse``: numpy)."""
    if isinstance(X, np.ndarray) or is_sparse(X):
        be = get_backend(backend)
        if is_sparse(X) and not be.takes_sparse:
            raise InvalidInputError(
                f"X is a SciPy sparse matrix, which the numpy backend trains on (kept sparse, "
                f"densified a block of rows at a time); for the {be.name} backend pass dense "
                "data: X.toarray()"
            )
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
        own = not isinstance(X, np.ndarray) or be.owns(X)  # sparse X: the numpy backend's
        dtype = kind.rpartition(".")[2] if own and "float" in kind else be.default_dtype
        if kind == "float64" and dtype == "float32":
            _say_narrowed(be)
    if dtype not in be.dtypes:
        raise ValueError(f"the {be.name} backend supports {', '.join(be.dtypes)}, not {dtype!r}")
    return be, dtype


#: the backends whose float64-to-float32 fallback was said in this process
_NARROWED: set[str] = set()


def _say_narrowed(be: Backend) -> None:
    """Once a process and backend: float64 host data are about to train in float32 because
    the backend cannot hold float64 now (JAX with its 64-bit mode off) — never silently."""
    if be.name in _NARROWED:
        return
    try:
        be.asarray(np.zeros(1), "float64")
    except NnbinError as e:
        _NARROWED.add(be.name)
        warnings.warn(
            f"float64 data train in float32 on the {be.name} backend (said once): {e}; or "
            "pass dtype='float32' to choose it",
            UserWarning,
            stacklevel=4,
        )


def _place(be: Backend, X: Any, y: Any, w: Any, dtype: str) -> tuple[Array, Array, Array | None]:
    """X, y and the sample weights ``w`` (None: none) on ``be`` in ``dtype``, copying only
    host (NumPy) data."""
    narrowed = dtype == "float32" and "float64" in str(getattr(X, "dtype", ""))
    if isinstance(X, np.ndarray) or is_sparse(X):
        values = X.data if is_sparse(X) else X  # a sparse matrix's stored values
        if narrowed and np.max(np.abs(values), initial=0.0) > np.finfo(np.float32).max:
            raise _too_big_for_float32()
        put = be.asarray
        Xb = X.astype(dtype, copy=False) if is_sparse(X) else put(X, dtype)  # sparse stays so
        return Xb, put(y, dtype), None if w is None else put(w, dtype)
    xp = namespace(X, y)

    def cast(a: Any) -> Any:
        return xp.astype(a, getattr(xp, dtype), copy=False)  # no copy when already right

    X, y = cast(X), cast(y)
    if narrowed and not bool(xp.all(xp.isfinite(X))):  # one check, only when narrowing
        raise _too_big_for_float32()
    return X, y, None if w is None else cast(w)


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
    on_log: Callable[[int, float], None] | None = None,
    params: Any = None,
    optimizer_state: Any = None,
    sample_weight: Any = None,
    **options: Any,
) -> TrainResult:
    """Train the network on (X, y) on mean BCE; by default the seed job: one layer of 32
    sigmoid units, full-batch gradient descent at step size 1 for 1,000 steps.

    X is (N, D) and y is (N, 1) with labels 0 and 1 (X may be a SciPy sparse matrix, with
    NumPy labels, on the numpy backend: kept sparse as CSR, each block of rows densified as
    the core uses it, :func:`nnbin.model.dense`). NumPy inputs run on ``backend``
    (default: ``NNBIN_BACKEND``, else numpy) and are moved there once; arrays of another
    library run on that library's backend, on their device, and the parameters come back
    as arrays of that library. ``dtype`` defaults to the data's floating dtype, else the
    backend's default. The loss is recorded every ``log_every`` steps (0: never), before
    that step's update; ``on_log(step, loss)`` is called for each record.

    The options (each declared once, with its constraint and default, in
    :data:`nnbin.options.OPTIONS`; a bad value is one :class:`~nnbin.InvalidInputError`):

    {options}

    ``data_parallel=True`` (all devices) or ``=k`` (the first k) splits the samples across
    devices with the parameters replicated, where the backend supports it (jax: a ``Mesh``
    over the devices; XLA inserts the cross-device sums of the gradients). ``fused``: on
    backends with a fused step (cupy; torch and jax arrays on a CUDA GPU with cupy
    installed, through DLPack) it covers one sigmoid hidden layer trained by full-batch
    gradient descent with no penalty. ``init`` draws from ``numpy.random.default_rng(seed)``.
    With ``batch_size`` each of the ``steps`` is an **epoch** of mini-batches from a shuffle
    seeded by ``seed`` (the same batches on every backend). Stopping, as scikit-learn
    defines it: ``n_iter_no_change`` epochs in a row whose training loss does not improve by
    ``tol`` end the run; with ``early_stopping`` a seeded ``validation_fraction`` is held
    out, the rule reads its accuracy instead (``n_iter_no_change`` default 10) and the
    best-scoring parameters are returned. With a stopping rule the loss is recorded every
    epoch.

    Continuing a run: ``params`` (arrays of the data's library and dtype, the shapes
    ``hidden`` gives) start the run instead of drawn weights, and ``optimizer_state`` (a
    result's ``optimizer_state``) continues the optimizer's momentum or moments; a
    continued run may see samples of one class only (a batch of a stream).

    ``sample_weight``: one finite weight per sample, summing to > 0 (negative ones allowed,
    as scikit-learn's; with early stopping each part's sum > 0): each batch's loss and
    gradient are their weighted mean (the penalty scaled by the weights' sum), the recorded
    loss and the stopping rule read that, and early stopping scores the weighted held-out
    accuracy. Integer weights equal repeated rows in a full-batch run.
    """
    values = options_table.resolve(options)
    config = Config.of(values)
    hidden, lr, steps, log_every, seed = (
        values[k] for k in ("hidden", "lr", "steps", "log_every", "seed")
    )
    backend, dtype, init = values["backend"], values["dtype"], values["init"]
    data_parallel, fused = values["data_parallel"], values["fused"]
    # a run that continues from given parameters may see one class (a stream's batch)
    X, y = validate.training_data(X, y, both_classes=params is None)
    weights = validate.sample_weights(sample_weight, X)
    be, dtype = backend_and_dtype(X, backend, dtype)
    on_host = isinstance(X, np.ndarray) or is_sparse(X) or "cpu" in str(_device(X)).lower()
    if on_host and not be.out_of_core:  # Dask works chunk by chunk
        # host memory: checked before anything large is allocated (GPU libraries report
        # their own out-of-memory errors)
        n, d = (int(v) for v in X.shape)
        size = 4 if dtype == "float32" else 8
        width = block_width(hidden if isinstance(hidden, int) else max(hidden, default=1), X)
        validate.memory_fits(n, d, hidden, size, be.memory_nh, be.block_rows(n, width))
    X, y, weights = _place(be, X, y, weights, dtype)
    validation = validation_weights = None
    if config.early_stopping:
        (X, y, weights), (Xv, yv, validation_weights) = _hold_out(
            be, X, y, weights, config.validation_fraction, seed
        )
        validate.weight_sum(weights, "sample_weight of the samples trained on")
        validate.weight_sum(validation_weights, "sample_weight of the held-out samples")
        validation = (Xv, yv)
    if params is None:
        params = be.init_params(
            X.shape[1],
            hidden,
            seed,
            dtype=dtype,
            device=_device(X),
            activation=config.activation,
            init=init,
        )
    else:
        params = _starting_params(params, X, hidden, dtype)
    if optimizer_state is not None:
        optimizer_state = Optimizer.of(config, lr).check_state(params, optimizer_state)
    if data_parallel:
        n_dev = None if data_parallel is True else int(data_parallel)
        params, X, y = be.distribute(params, X, y, n_dev)
    t0 = time.perf_counter()
    initial = params
    # a loss that stops being finite is checked and reported once (TrainingDivergedError):
    # NumPy's overflow and invalid-value warnings on the way say nothing more
    with np.errstate(over="ignore", invalid="ignore"):
        # the backend's run records the losses, calls on_log and raises on divergence
        run = be.run(
            params,
            X,
            y,
            lr=lr,
            steps=steps,
            log_every=log_every,
            on_log=on_log,
            fused=fused,
            config=config,
            validation=validation,
            state=optimizer_state,
            steps_per_call=values["steps_per_call"],
            weights=weights,
            validation_weights=validation_weights,
        )
        blocks = be.block_rows(X.shape[0], block_width(max_width(run.params), X))
        final_loss = be.loss(run.params, X, y, config, weights, blocks)
        final = float(final_loss)  # also waits for the device: the run time below is honest
    elapsed = time.perf_counter() - t0 - run.compile_seconds
    if not math.isfinite(final):  # the loss after the last step, which no run records
        raise diverged(steps, lr, run.last_finite, initial)
    stop = run.stop
    recorded = [v for _, v in run.history]
    return TrainResult(
        params=run.params,
        history=run.history,
        final_loss=final,
        backend=be.name,
        dtype=dtype,
        loop=run.loop or be.loop,
        compile_seconds=run.compile_seconds,
        run_seconds=elapsed,
        settings=options_table.saved(values),
        n_iter=run.steps_run if stop is not None or run.message else steps,
        best_loss=min(recorded) if recorded else None,
        validation_scores=list(stop.scores) if stop is not None else [],
        best_validation_score=(  # None until an epoch was scored (steps=0)
            stop.best_score if stop is not None and stop.scores else None
        ),
        no_improvement_count=stop.count if stop is not None else 0,
        lr_final=run.lr_final if run.lr_final is not None else lr,
        activation=config.activation,
        optimizer_state=run.optimizer_state,
        message=run.message,
    )


def _starting_params(params: Any, X: Array, hidden: int | tuple[int, ...], dtype: str) -> Any:
    """The caller's starting parameters, checked against the data and ``hidden``."""
    X = dense(X[:1, ...])  # one row: what the checks below need of the data
    params, _, _ = validate.model_inputs(params, X)
    sizes = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if widths(params) != sizes:
        raise InvalidInputError(
            f"params have hidden widths {widths(params)} but hidden={hidden}: pass the "
            "widths the parameters have"
        )
    if any(not str(p.dtype).endswith(dtype) for p in params):
        raise InvalidInputError(f"params must be {dtype}, as the data; got {params[0].dtype}")
    xp = namespace(X, *params)  # one library: MixedArraysError otherwise
    finite = xp.stack([xp.all(xp.isfinite(p)) for p in params])
    if not bool(xp.all(finite)):  # one read, before the run
        raise InvalidInputError(
            "params hold NaN or infinite values: training starts from finite parameters (a "
            "TrainingDivergedError's .params are the last finite ones of a run)"
        )
    return params


def _device(X: Any) -> Any:
    """X's device (a SciPy sparse X: the host's, None)."""
    return None if is_sparse(X) else array_api_compat.device(X)


def _hold_out(
    be: Backend, X: Array, y: Array, w: Array | None, fraction: float, seed: int
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(X, y, w) split into the samples trained on and the held-out (Xv, yv, wv), by
    :func:`_hold_out_rows` (w None: both sides' weights None)."""
    keep, out = _hold_out_rows(be, y, fraction, seed)

    def take(rows: Any) -> tuple[Any, ...]:
        return tuple(None if a is None else be.take_rows(a, rows) for a in (X, y, w))

    return take(keep), take(out)


def _hold_out_rows(be: Backend, y: Array, fraction: float, seed: int) -> tuple[Any, Any]:
    """The rows trained on and the rows held out (host row numbers, each in the data's
    order): the held-out ``fraction``, stratified
    as scikit-learn's classifiers split: ``held`` = ceil(fraction N) samples (at least one
    each side) of which round(held N1 / N) positives (at least one each side), taken
    first-come in the permutation ``numpy.random.default_rng([seed, 2]).permutation(N)``,
    both sides kept in the data's order: the same split on every backend. A class with a
    single sample, or a hold-out too small to hold both classes, is one InvalidInputError
    (scikit-learn's ValueError). Data of one class (a continued run) split unstratified.
    The labels are read to the host once (the split is drawn there)."""
    n = int(y.shape[0])
    if n < 2:
        raise InvalidInputError("early stopping needs at least 2 samples (one held out)")
    held = min(max(1, math.ceil(fraction * n)), n - 1)
    order = np.random.default_rng([seed, 2]).permutation(n)
    positive = np.asarray(be.to_host(y)).reshape(-1)[order] == 1.0
    ones = int(np.count_nonzero(positive))
    counts = {"False": n - ones, "True": ones}
    few = [name for name, c in counts.items() if c == 1]
    if few:
        raise InvalidInputError(
            "The least populated classes in y have only 1 member, too few for early "
            "stopping's stratified hold-out (2 of each class, one each side). Classes with "
            f"too few members are: {few} (True: label 1, the positive class): add samples "
            "of it, or set early_stopping=False"
        )
    if 0 < ones < n:
        if held < 2 or n - held < 2:
            raise InvalidInputError(
                f"validation_fraction={fraction:g} holds out {held} of {n} samples, but a "
                "stratified hold-out needs at least 2 on each side (one of each class): "
                "change validation_fraction or add samples"
            )
        held_pos = min(max(1, math.floor(held * ones / n + 0.5)), ones - 1)
        held_pos = max(held_pos, held - (n - ones - 1))  # at least one negative trained on
        held_pos = min(held_pos, held - 1)  # and one held out
        rank = np.empty(n, dtype=np.int64)  # each sample's place among its class's
        rank[positive] = np.arange(ones)
        rank[~positive] = np.arange(n - ones)
        out_mask = np.where(positive, rank < held_pos, rank < held - held_pos)
    else:
        out_mask = np.arange(n) < held
    return np.sort(order[~out_mask]), np.sort(order[out_mask])


train.__signature__ = options_table.signature(  # type: ignore[attr-defined]
    train,
    ("X", "y"),
    {"on_log": None, "params": None, "optimizer_state": None, "sample_weight": None},
)
train.__doc__ = (train.__doc__ or "").replace("{options}", options_table.docs().strip())
