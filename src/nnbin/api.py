"""The public functions on parameters and data, each checking its arguments first.

``nnbin.loss``, ``loss_and_grads``, ``step``, ``forward``, ``predict_proba`` and
``accuracy`` validate what a user hands them — the parameters' shapes, X 2-D with the
parameters' number of features, y of shape (N, 1) or (N,) (taken as (N, 1)) with one label
per row, one library, no masked arrays, a finite step size — and then call the math
(:mod:`nnbin.model`, :mod:`nnbin.loss`, :mod:`nnbin.backprop`), which checks nothing and is
what the training loops call. No check reads the data's values, so none synchronises a GPU.
A wrong shape is one :class:`~nnbin.InvalidInputError`, never a broadcast: y of shape (N,)
against logits of shape (N, 1) would otherwise become an (N, N) array and a wrong number.
"""

from __future__ import annotations

from typing import Any

from . import backprop
from . import loss as _loss
from . import model as _model
from .backend import backend_of, get_backend
from .errors import InvalidInputError
from .model import Array, Params, quiet_overflow
from .validate import model_inputs, step_size


def init_params(
    n_features: int = 1,
    hidden: int = 32,
    seed: int = 0,
    *,
    dtype: str | None = None,
    backend: str | None = None,
    device: Any = None,
) -> Params:
    """Initial parameters: W ~ N(0, 1), b = 0.

    The weights are drawn on the host from ``numpy.random.default_rng(seed)`` in float64
    (W1 first, then W2), cast to ``dtype`` and only then moved to the backend's device,
    so one seed gives the same starting point on every backend.
    ``backend`` defaults to ``NNBIN_BACKEND`` (else numpy); ``dtype`` to the backend's default.
    """
    return get_backend(backend).init_params(n_features, hidden, seed, dtype=dtype, device=device)


@quiet_overflow
def forward(params: Params, X: Array) -> Array:
    """Output logits z = sigmoid(X W1 + b1) W2 + b2, shape (N, 1)."""
    params, X, _ = model_inputs(params, X)
    return _model.forward(params, X)


@quiet_overflow
def predict_proba(params: Params, X: Array) -> Array:
    """P(y = 1 | x) = sigmoid(z), shape (N, 1)."""
    params, X, _ = model_inputs(params, X)
    return _model.predict_proba(params, X)


@quiet_overflow
def loss(params: Params, X: Array, y: Array) -> Array:
    """Mean binary cross-entropy of the network on (X, y), a 0-d array."""
    params, X, y = model_inputs(params, X, y)
    return _loss.loss(params, X, y)


@quiet_overflow
def loss_and_grads(
    params: Params, X: Array, y: Array, *, block_rows: int | None = None
) -> tuple[Array, Params]:
    """Mean binary cross-entropy (a 0-d array) and its gradient w.r.t. each parameter, a
    :class:`~nnbin.model.Params` with the parameters' shapes."""
    params, X, y = model_inputs(params, X, y, block_rows=block_rows)
    return backprop.loss_and_grads(params, X, y, block_rows=block_rows)


@quiet_overflow
def step(
    params: Params, X: Array, y: Array, lr: Any = 1.0, *, block_rows: int | None = None
) -> Params:
    """One full-batch gradient-descent step; returns new parameters."""
    rate = step_size(lr, traced=True)
    params, X, y = model_inputs(params, X, y, block_rows=block_rows)
    return backprop.step(params, X, y, rate, block_rows=block_rows)


@quiet_overflow
def accuracy(params: Params, X: Array, y: Array) -> float:
    """Fraction of samples whose predicted class (probability >= 0.5) equals the label.

    Worked out in the blocks of samples training uses on the backend (never a whole (N, H)
    array on an eager CPU library), with one read of the result."""
    params, X, y = model_inputs(params, X, y)
    xp = _model.namespace(X, y, *params)
    n, h = int(X.shape[0]), int(params.W1.shape[1])
    if n == 0:
        raise InvalidInputError("accuracy needs at least one sample; X has no rows")
    rows = backend_of(X).block_rows(n, h) or n
    correct: Any = None
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        z = _model.forward(params, X[start:stop, ...])
        hits = xp.sum(xp.astype((z >= 0.0) == (y[start:stop, ...] == 1.0), y.dtype))
        correct = hits if correct is None else correct + hits
    return float(correct) / n
