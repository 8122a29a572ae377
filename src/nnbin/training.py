"""Training on any backend: the seed job's full-batch gradient descent by default; deeper
networks, other activations and optimizers, mini-batches, an L2 penalty and early stopping
on request."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import options as options_table
from . import validate
from .backend import backend_and_dtype, init_params, place
from .data import hold_out_rows
from .loop import diverged
from .loop import run as run_loop
from .model import Params, block_width, device_of, max_width, on_host
from .optim import Optimizer
from .options import Config


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
    ``hidden`` gives; a :class:`~nnbin.Params` trains with its own activation, which an
    ``activation`` given too must equal; a bare tuple of arrays needs ``activation``) start
    the run instead of drawn weights, and ``optimizer_state`` (a
    result's ``optimizer_state``) continues the optimizer's momentum or moments; a
    continued run may see samples of one class only (a batch of a stream).

    ``sample_weight``: one finite weight per sample, summing to > 0 (negative ones allowed,
    as scikit-learn's; with early stopping each part's sum > 0): each batch's loss and
    gradient are their weighted mean (the penalty scaled by the weights' sum), the recorded
    loss and the stopping rule read that, and early stopping scores the weighted held-out
    accuracy. Integer weights equal repeated rows in a full-batch run.
    """
    said = options.get("activation")  # continued parameters say theirs; one said must agree
    if isinstance(params, Params) and said is None:
        options = {**options, "activation": params.activation}
    values = options_table.resolve(options)
    config = Config.of(values)
    hidden, lr, steps, log_every, seed, data_parallel = (
        values[k] for k in ("hidden", "lr", "steps", "log_every", "seed", "data_parallel")
    )
    # a run that continues from given parameters may see one class (a stream's batch)
    X, y = validate.training_data(X, y, both_classes=params is None)
    weights = validate.sample_weights(sample_weight, X)
    be, dtype = backend_and_dtype(X, values["backend"], values["dtype"])
    if on_host(X) and not be.about.out_of_core:  # Dask works chunk by chunk
        # host memory: checked before anything large is allocated (GPU libraries report
        # their own out-of-memory errors)
        n, d = (int(v) for v in X.shape)
        size = 4 if dtype == "float32" else 8
        width = block_width(hidden if isinstance(hidden, int) else max(hidden, default=1), X)
        validate.memory_fits(n, d, hidden, size, be.about.memory_nh, be.block_rows(n, width))
    X, y, weights = place(be, X, y, weights, dtype)
    validation = validation_weights = None
    if config.early_stopping:  # drawn on the host, the same split on every backend
        rows = hold_out_rows(be.to_host(y), config.validation_fraction, seed)
        (X, y, weights), (Xv, yv, validation_weights) = (
            tuple(None if a is None else be.take_rows(a, r) for a in (X, y, weights)) for r in rows
        )
        validate.weight_sum(weights, "sample_weight of the samples trained on")
        validate.weight_sum(validation_weights, "sample_weight of the held-out samples")
        validation = (Xv, yv)
    if params is None:
        params = init_params(
            be,
            X.shape[1],
            hidden,
            seed,
            dtype=dtype,
            device=device_of(X),
            activation=values["activation"],
            init=values["init"],
        )
    else:
        params = validate.starting_params(params, X, hidden, dtype, said)
    if optimizer_state is not None:
        optimizer_state = Optimizer.of(config, lr).check_state(params, optimizer_state)
    if data_parallel:
        n_dev = None if data_parallel is True else int(data_parallel)
        params, X, y = be.runners.distribute(params, X, y, n_dev)
    t0 = time.perf_counter()
    initial = params
    # a loss that stops being finite is checked and reported once (TrainingDivergedError):
    # NumPy's overflow and invalid-value warnings on the way say nothing more
    with np.errstate(over="ignore", invalid="ignore"):
        # the loop (nnbin.loop.run) records the losses, calls on_log and raises on divergence
        run = run_loop(
            be,
            params,
            X,
            y,
            lr=lr,
            steps=steps,
            log_every=log_every,
            on_log=on_log,
            fused=values["fused"],
            config=config,
            validation=validation,
            state=optimizer_state,
            steps_per_call=values["steps_per_call"],
            weights=weights,
            validation_weights=validation_weights,
        )
        blocks = be.block_rows(X.shape[0], block_width(max_width(run.params), X))
        final_loss = be.runners.loss(run.params, X, y, config.alpha, weights, blocks)
        final = float(final_loss)  # also waits for the device: the run time below is honest
    elapsed = time.perf_counter() - t0 - run.compile_seconds
    if not math.isfinite(final):  # the loss after the last step, which no run records
        raise diverged(steps, lr, run.last_finite, initial, config.optimizer == "lbfgs")
    stop = run.stop
    recorded = [v for _, v in run.history]
    return TrainResult(
        params=Params(*run.params, activation=params.activation),  # a path may hand back a tuple
        history=run.history,
        final_loss=final,
        backend=be.name,
        dtype=dtype,
        loop=run.loop or be.about.loop,
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
        activation=params.activation,
        optimizer_state=run.optimizer_state,
        message=run.message,
    )


train.__signature__ = options_table.signature(  # type: ignore[attr-defined]
    train,
    ("X", "y"),
    {"on_log": None, "params": None, "optimizer_state": None, "sample_weight": None},
)
train.__doc__ = (train.__doc__ or "").replace("{options}", options_table.docs().strip())
