"""The public functions on parameters and data, each checking its arguments first.

``nnbin.loss``, ``loss_and_grads``, ``step``, ``forward``, ``predict_proba`` and
``accuracy`` validate what a user hands them — the parameters' shapes, X 2-D with the
parameters' number of features, y of shape (N, 1) or (N,) (taken as (N, 1)) with one label
per row, one library, no masked arrays, a finite step size — and then call the math
(:mod:`nnbin.model`), which checks nothing and is
what the training loops call. No check reads the data's values, so none synchronises a GPU.
A wrong shape is one :class:`~nnbin.InvalidInputError`, never a broadcast: y of shape (N,)
against logits of shape (N, 1) would otherwise become an (N, N) array and a wrong number.
"""

from __future__ import annotations

from typing import Any

from . import model as _model
from . import options
from .backend import backend_of, get_backend
from .backend import init_params as _init_params
from .errors import InvalidInputError
from .model import Array, max_width, quiet_overflow
from .validate import (
    activation_name,
    hidden_sizes,
    model_inputs,
    penalty,
    step_size,
    whole_number,
)


def init_params(
    n_features: int = 1,
    hidden: int | tuple[int, ...] = 32,
    seed: int = 0,
    *,
    dtype: str | None = None,
    backend: str | None = None,
    device: Any = None,
    activation: str = "sigmoid",
    init: str | None = None,
) -> Any:
    """Initial parameters, a :class:`~nnbin.Params` of hidden ``activation``: weights drawn
    as ``init`` says, biases 0. One hidden layer gives (W1, b1, W2, b2); ``hidden=(64, 32)``
    (W1, b1, W2, b2, W3, b3).

    ``init``: "normal" W ~ N(0, 1) (the seed network's), "glorot", "he"; default: the one
    suited to ``activation`` (sigmoid: normal, tanh: Glorot, ReLU: He). The weights are drawn
    on the host from ``numpy.random.default_rng(seed)`` in float64, layer by layer from the
    input, cast to ``dtype`` and only then moved to the backend's device, so one seed gives
    the same starting point on every backend. ``backend`` defaults to ``NNBIN_BACKEND``
    (else numpy); ``dtype`` to the backend's default.
    """
    n_features = whole_number("n_features", n_features, 1)
    hidden = hidden_sizes(hidden)
    activation = activation_name(activation)
    init, seed = options.check("init", init), options.check("seed", seed)
    return _init_params(
        get_backend(backend),
        n_features,
        hidden,
        seed,
        dtype=dtype,
        device=device,
        activation=activation,
        init=init,
    )


@quiet_overflow
def forward(params: Any, X: Array, *, activation: str | None = None) -> Array:
    """Output logits z, shape (N, 1), of the network ``params`` (its own hidden activation;
    ``activation`` only for a bare tuple of arrays)."""
    params, X, _ = model_inputs(params, X, activation=activation)
    return _model.forward(params, X, params.activation)


@quiet_overflow
def predict_proba(params: Any, X: Array, *, activation: str | None = None) -> Array:
    """P(y = 1 | x) = sigmoid(z), shape (N, 1), of the network ``params`` (its own hidden
    activation; ``activation`` only for a bare tuple of arrays)."""
    params, X, _ = model_inputs(params, X, activation=activation)
    return _model.predict_proba(params, X, params.activation)


@quiet_overflow
def loss(
    params: Any, X: Array, y: Array, *, activation: str | None = None, alpha: float = 0.0
) -> Array:
    """Mean binary cross-entropy of the network on (X, y), plus the L2 penalty
    (alpha / 2N) sum ||W||^2 when ``alpha`` > 0, a 0-d array. ``activation``: only for a
    bare tuple of arrays (a :class:`~nnbin.Params` says its own)."""
    params, X, y = model_inputs(params, X, y, activation=activation)
    act, a = params.activation, penalty(alpha)
    xp = _model.namespace(X, y, *params)
    value = _model.bce_with_logits_sum(xp, _model.forward(params, X, act), y) / X.shape[0]
    if a:
        value = value + _model.l2_penalty(xp, params, a, X.shape[0])
    return value


@quiet_overflow
def loss_and_grads(
    params: Any,
    X: Array,
    y: Array,
    *,
    block_rows: int | None = None,
    activation: str | None = None,
    alpha: float = 0.0,
) -> tuple[Array, Any]:
    """Mean binary cross-entropy (a 0-d array; plus the L2 penalty ``alpha``) and its
    gradient w.r.t. each parameter, in the parameters' container and shapes.
    ``activation``: only for a bare tuple of arrays (a :class:`~nnbin.Params` says its own)."""
    params, X, y = model_inputs(params, X, y, activation=activation, block_rows=block_rows)
    act, a = params.activation, penalty(alpha)
    return _model.value_and_grads(params, X, y, block_rows=block_rows, activation=act, alpha=a)


@quiet_overflow
def step(
    params: Any,
    X: Array,
    y: Array,
    lr: Any = 1.0,
    *,
    block_rows: int | None = None,
    activation: str | None = None,
    alpha: float = 0.0,
) -> Any:
    """One full-batch gradient-descent step; returns new parameters. (Other optimizers:
    :class:`nnbin.Optimizer`'s ``init`` and ``update`` on :func:`loss_and_grads`' gradients.)
    ``activation``: only for a bare tuple of arrays (a :class:`~nnbin.Params` says its own)."""
    rate = step_size(lr, traced=True)
    params, X, y = model_inputs(params, X, y, activation=activation, block_rows=block_rows)
    act, a = params.activation, penalty(alpha)
    _, grads = _model.value_and_grads(
        params, X, y, with_loss=False, block_rows=block_rows, activation=act, alpha=a
    )
    return _model.like(params, (p - rate * g for p, g in zip(params, grads)))


@quiet_overflow
def accuracy(params: Any, X: Array, y: Array, *, activation: str | None = None) -> float:
    """Fraction of samples whose predicted class (probability >= 0.5) equals the label.
    ``activation``: only for a bare tuple of arrays (a :class:`~nnbin.Params` says its own).

    Worked out in the blocks of samples training uses on the backend (never a whole (N, H)
    array on an eager CPU library), with one read of the result."""
    params, X, y = model_inputs(params, X, y, activation=activation)
    _model.namespace(X, y, *params)  # one library: MixedArraysError otherwise
    n, h = int(X.shape[0]), max_width(params)
    if n == 0:
        raise InvalidInputError("accuracy needs at least one sample; X has no rows")
    rows = backend_of(X).block_rows(n, h)
    return float(_model.accuracy(params, X, y, params.activation, rows=rows))
