"""Parameters and the forward pass.

The network, for X of shape (N, D)::

    a1 = X W1 + b1        (N, H)   hidden pre-activations
    h  = sigmoid(a1)      (N, H)   hidden units
    z  = h W2 + b2        (N, 1)   output logits
    p  = sigmoid(z)       (N, 1)   P(y = 1 | x)

Every function takes the array namespace from its inputs
(``array_api_compat.array_namespace``), so NumPy arrays give NumPy arrays, JAX arrays
give JAX arrays, CuPy arrays stay on their GPU. Nothing is updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, cast

import array_api_compat
import numpy as np

from .errors import MixedArraysError

F = TypeVar("F", bound=Callable[..., Any])

Array = Any  # an array of any array-API library


class Params(NamedTuple):
    """The network's parameters. A NamedTuple, so JAX treats it as a pytree."""

    W1: Array  #: (D, H) input -> hidden weights
    b1: Array  #: (H,)   hidden biases
    W2: Array  #: (H, 1) hidden -> output weights
    b2: Array  #: (1,)   output bias


def namespace(*arrays: Array) -> Any:
    """The array-API namespace shared by ``arrays``; one clear error if they mix libraries."""
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError:
        kinds = sorted({f"{type(a).__module__}.{type(a).__qualname__}" for a in arrays})
        raise MixedArraysError(
            f"arrays from different libraries were passed together ({', '.join(kinds)}); "
            "nnbin never copies between libraries: convert them to one library first"
        ) from None


def initial_weights(n_features: int = 1, hidden: int = 32, seed: int = 0) -> Params:
    """The initial parameters on the host, float64 NumPy arrays: W ~ N(0, 1), b = 0.

    Drawn from ``numpy.random.default_rng(seed)`` (W1 first, then W2), so one seed gives the
    same starting point on every backend: :meth:`nnbin.Backend.init_params` casts them to
    the working dtype and only then moves them to the device.
    """
    if n_features < 1 or hidden < 1:
        raise ValueError(f"n_features and hidden must be >= 1, got {n_features} and {hidden}")
    rng = np.random.default_rng(seed)
    return Params(
        rng.standard_normal((n_features, hidden)),
        np.zeros((hidden,)),
        rng.standard_normal((hidden, 1)),
        np.zeros((1,)),
    )


def quiet_overflow(fn: F) -> F:
    """Run ``fn`` with NumPy's overflow warning off. ``sigmoid`` computes exp(-a), which
    overflows to inf for a < -709 (float64) and gives 1 / (1 + inf) = 0, the exact limit:
    not a problem worth a RuntimeWarning on a successful run. Used at the entry points
    (train, the public functions, the estimator, the figure), never inside a step."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(over="ignore"):
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def sigmoid(xp: Any, a: Array) -> Array:
    """1 / (1 + exp(-a)), one transcendental per element; ``xp`` is the namespace of ``a``.

    Accurate in both tails: for a >> 0, exp(-a) is tiny and the result rounds to 1; for
    a << 0 the quotient keeps full relative accuracy. Below about -88 (float32) or -709
    (float64) exp(-a) overflows to inf and the result is exactly 0, the correctly rounded
    value; NumPy reports that overflow as a RuntimeWarning, which nnbin's loops silence.
    """
    return 1.0 / (1.0 + xp.exp(-a))


def hidden_layer(xp: Any, params: Params, X: Array) -> Array:
    """h = sigmoid(X W1 + b1), shape (N, H)."""
    # tensordot, not @: NumPy's matmul has no fast path for the (N, 1) @ (1, H) outer
    # product of the seed network (measured 3-4x slower); tensordot is a matmul elsewhere.
    return sigmoid(xp, xp.tensordot(X, params.W1, axes=1) + params.b1)


def forward(params: Params, X: Array) -> Array:
    """Output logits z = sigmoid(X W1 + b1) W2 + b2, shape (N, 1)."""
    xp = namespace(X, *params)
    return hidden_layer(xp, params, X) @ params.W2 + params.b2


def predict_proba(params: Params, X: Array) -> Array:
    """P(y = 1 | x) = sigmoid(z), shape (N, 1)."""
    xp = namespace(X, *params)
    return sigmoid(xp, hidden_layer(xp, params, X) @ params.W2 + params.b2)
