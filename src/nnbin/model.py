"""The network: its parameters, the forward pass, the loss and the backward pass written by
hand, each derivative beside what it differentiates. (The optimizers are :mod:`nnbin.optim`.)

Forward, for X of shape (N, D) and L hidden layers (the seed network: L = 1, 32 sigmoid
units; L = 0 is logistic regression, scikit-learn's ``hidden_layer_sizes=()``)::

    h0 = X                                       (N, D)
    hl = act(h(l-1) Wl + bl),   l = 1 .. L        (N, Hl)   hidden units
    z  = hL Wo + bo                              (N, 1)    output logits
    p  = sigmoid(z)                              (N, 1)    P(y = 1 | x)

The loss, mean binary cross-entropy from the logits (:func:`bce_with_logits_sum`), and
scikit-learn's L2 penalty::

    L = (1/N) sum(softplus(z) - y z)  [+ (alpha / 2N) sum of every ||W||^2]

With sample weights w (scikit-learn's ``sample_weight``) the sum weighs each term by w_n
and N is sum(w): the weighted mean, the penalty scaled by sum(w), and dL/dz weighted alike.

Backward (:func:`value_and_grads`), the chain rule layer by layer from the output::

    dL/dz  = w (sigmoid(z) - y) / N                     (B, 1)   (w = 1 unweighted)
    dL/dWo = hL^T dL/dz,  dL/dbo = sum_n dL/dz            (L = 0: hL = X, and done)
    dL/daL = (dL/dz Wo^T) * act'(aL)                    (B, HL)
    for l = L .. 1:
        dL/dWl = h(l-1)^T dL/dal,  dL/dbl = sum_n dL/dal
        dL/da(l-1) = (dL/dal Wl^T) * act'(a(l-1))       (B, H(l-1))   (l > 1)
    L2: dL/dW += (alpha / N) W for every weight matrix (not the biases), as scikit-learn

act' is written from the activation's output (sigmoid: h (1 - h); tanh: 1 - h^2; ReLU:
h > 0), beside each activation. dL/dz needs no division by p or 1 - p (the seed notebook
divided, which is inf/NaN once a sigmoid saturates): d/dz [softplus(z) - y z] =
sigmoid(z) - y exactly (:func:`bce_dz`, beside the loss). Gradients are sums over
samples, so the batch can be processed in blocks whose partial sums are added; the result
is the same full-batch gradient (the backend picks the block size; None: the whole batch).

The parameters are one flat tuple ``(W1, b1, ..., WL, bL, Wo, bo)`` that knows its
architecture, a :class:`Params`: the hidden activation and the output layer are static data
of its type, so the parameters are evaluated with the activation they were trained with,
and JAX jits, grads and vmaps over their arrays.

Every function takes the array namespace from its inputs
(``array_api_compat.array_namespace``), so NumPy arrays give NumPy arrays, JAX arrays
give JAX arrays, CuPy arrays stay on their GPU. Nothing is updated in place; nothing here
imports another module of nnbin but the errors.
"""

from __future__ import annotations

import copyreg
import functools
import itertools
import math
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import array_api_compat
import numpy as np

from .errors import InvalidInputError, MixedArraysError

F = TypeVar("F", bound=Callable[..., Any])

Array = Any  # an array of any array-API library

#: hidden-layer activations, by name; scikit-learn's "logistic" is an alias of "sigmoid"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
ALIASES = {"logistic": "sigmoid"}
#: output layers (each with its loss): sigmoid + binary cross-entropy
OUTPUTS = ("logistic",)


class _ParamsType(type):
    """The type of the parameters' types: they pickle by what they are (an architecture
    and a depth), as they are made on demand (:meth:`Params.of`)."""


class Params(tuple, metaclass=_ParamsType):
    """The parameters of a network, ``(W1, b1, ..., WL, bL, Wo, bo)``, that know its
    architecture: the hidden layers' ``activation`` and the ``output`` layer are static
    data of the parameters' type, not leaves.

    ``Params(W1, b1, W2, b2, activation="sigmoid")`` is the seed network; ``(Wo, bo)`` alone
    is logistic regression. ``params.activation`` is what every public function computes
    with, so a ReLU network's parameters can never be evaluated with sigmoid units by a
    forgotten keyword. Layers read by name too: ``params.W1``, ``params.b2``.

    A pytree without JAX being imported: a tuple with a named tuple's API (``_fields``,
    ``_make``, ...), which JAX (``jax.jit``, ``grad``, ``vmap``), PyTorch's pytrees and
    Dask flatten to the arrays and rebuild as ``type(params)(*arrays)``. Each architecture is
    a subclass (``Params.of("relu")``), and each depth of it a subclass of that (its
    ``_fields`` a tuple of the class, as a named tuple's), so rebuilt parameters keep their
    architecture and a jitted function retraces for another one.
    """

    __slots__ = ()
    #: the hidden layers' activation (:data:`ACTIVATIONS`); "" only on this base class
    activation: ClassVar[str] = ""
    #: the output layer and its loss: "logistic" (sigmoid + binary cross-entropy)
    output: ClassVar[str] = "logistic"
    #: the layers' names, input first (W1, b1, ..., the output layer's last): a depth's
    _fields: ClassVar[tuple[str, ...]] = ()
    _field_defaults: ClassVar[dict[str, Any]] = {}

    def __new__(cls, *arrays: Array, activation: str | None = None) -> Params:
        act = ALIASES.get(activation, activation) if activation is not None else cls.activation
        if not act:
            raise InvalidInputError(
                "nnbin.Params needs activation=, the hidden layers' activation (one of "
                f"{', '.join(ACTIVATIONS)}; 'sigmoid' for the seed network): nnbin never "
                "guesses it"
            )
        if cls.activation and act != cls.activation:
            raise InvalidInputError(
                f"these are the parameters of a {cls.activation} network "
                f"(params.activation) but activation={activation!r} was passed: drop "
                "activation=, the parameters say it"
            )
        return tuple.__new__(_depth(act, cls.output, len(arrays)), arrays)

    @staticmethod
    def of(activation: str, output: str = "logistic") -> type[Params]:
        """The parameters' type of networks with hidden ``activation`` and ``output`` (of
        any depth: ``isinstance(params, Params.of("relu"))``)."""
        return _kind(ALIASES.get(activation, activation), output)

    # the rest of a named tuple's API, which libraries look for to rebuild one (Dask)
    @classmethod
    def _make(cls, arrays: Any) -> Params:
        return cls(*arrays)

    def _asdict(self) -> dict[str, Array]:
        return dict(zip(self._fields, self))

    def _replace(self, **arrays: Array) -> Params:
        unknown = set(arrays) - set(self._fields)
        if unknown:
            raise ValueError(f"no such layer: {', '.join(sorted(unknown))}")
        return type(self)(*(arrays.get(k, v) for k, v in zip(self._fields, self)))

    def __getattr__(self, name: str) -> Array:
        fields = type(self)._fields
        if name in fields:
            return self[fields.index(name)]
        raise AttributeError(f"{type(self).__qualname__} has no attribute {name!r}")

    def __repr__(self) -> str:
        arrays = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self))
        return f"Params({arrays}, activation={self.activation!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy: the type is made on demand
        return (_params, (tuple(self), self.activation, self.output))


@functools.cache
def _kind(activation: str, output: str) -> type[Params]:
    """The one type of the parameters of networks with ``activation`` and ``output``."""
    if activation not in ACTIVATIONS:
        raise InvalidInputError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}"
        )
    if output not in OUTPUTS:
        raise InvalidInputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    kind = _ParamsType(
        "Params", (Params,), {"__slots__": (), "activation": activation, "output": output}
    )
    kind.__qualname__ = f"Params[{activation}]"
    return cast(type[Params], kind)


@functools.cache
def _depth(activation: str, output: str, n_arrays: int) -> type[Params]:
    """The type of the parameters of such networks with ``n_arrays`` arrays (its
    ``_fields`` their names, as a named tuple's)."""
    names = tuple(f"{'Wb'[i % 2]}{i // 2 + 1}" for i in range(n_arrays))
    body = {"__slots__": (), "_fields": names}
    kind = _ParamsType("Params", (_kind(activation, output),), body)
    kind.__qualname__ = f"Params[{activation}]"
    return cast(type[Params], kind)


def _params(arrays: tuple[Array, ...], activation: str, output: str) -> Params:
    return tuple.__new__(_depth(activation, output, len(arrays)), arrays)


def _params_type(activation: str, output: str, n_arrays: int | None) -> type[Params]:
    return _kind(activation, output) if n_arrays is None else _depth(activation, output, n_arrays)


def _reduce_params_type(kind: Any) -> Any:
    if not kind.activation:
        return kind.__name__  # Params itself: by its name
    depth = len(kind._fields) if "_fields" in kind.__dict__ else None
    return (_params_type, (kind.activation, kind.output, depth))


copyreg.pickle(_ParamsType, _reduce_params_type)


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


def device_of(x: Any) -> Any:
    """``x``'s device, array-api-compat's ``device`` (a SciPy sparse matrix: None, the host)."""
    return None if is_sparse(x) else array_api_compat.device(x)


def is_sparse(a: Any) -> bool:
    """Whether ``a`` is a SciPy sparse matrix or array (never imports SciPy: data cannot be
    SciPy's unless SciPy was imported)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(a))


def dense(a: Any) -> Any:
    """``a``, a SciPy sparse block of rows made a dense NumPy array: the one place sparse
    data become dense. The numpy backend keeps a sparse X sparse (CSR); the core densifies
    it one block of rows (a mini-batch, or a block of :func:`forward_blocks` and of the
    gradient pass) at a time."""
    return a.toarray() if is_sparse(a) else a


#: initialisations: N(0, 1) (the seed network's), Glorot (uniform), He (normal)
INITS = ("normal", "glorot", "he")


def layers(params: Any) -> list[tuple[Array, Array]]:
    """The (W, b) pairs of ``params``, input layer first, output layer last."""
    return list(zip(params[0::2], params[1::2]))


def like(params: Any, arrays: Any) -> Any:
    """``arrays`` in the container type of ``params``: its :class:`Params` type (the same
    architecture), or a tuple."""
    if isinstance(params, Params):  # the same type, arrays for arrays: no checks to redo
        return tuple.__new__(type(params), tuple(arrays))
    return tuple(arrays)


def widths(params: Any) -> tuple[int, ...]:
    """The hidden-layer widths of ``params`` (one entry per hidden layer; () for none)."""
    return tuple(int(W.shape[1]) for W, _ in layers(params)[:-1])


def take_rows(a: Array, rows: np.ndarray) -> Array:
    """The rows of ``a`` that the host row numbers ``rows`` name, on ``a``'s device (of a
    SciPy sparse X: a sparse matrix of those rows)."""
    if is_sparse(a):
        return a[rows]
    xp = namespace(a)
    return xp.take(a, xp.asarray(rows, device=array_api_compat.device(a)), axis=0)


def on_host(X: Any) -> bool:
    """Whether the data ``X`` are in host memory (NumPy, SciPy sparse, a CPU device's)."""
    return isinstance(X, np.ndarray) or is_sparse(X) or "cpu" in str(device_of(X)).lower()


def max_width(params: Any) -> int:
    """The widest hidden layer of ``params`` (what sizes a block of rows; 1 with none)."""
    return max(widths(params), default=1)


def block_width(width: int, X: Any) -> int:
    """The widest (rows, width) array a block of rows of X builds: ``width`` (the widest
    hidden layer), or a SciPy sparse X's densified block (its D features) where wider."""
    return max(width, int(X.shape[1])) if is_sparse(X) else width


def default_init(activation: str) -> str:
    """The initialisation suited to ``activation``: N(0, 1) for sigmoid (the seed network's,
    so its numbers never move), Glorot for tanh and identity, He for ReLU."""
    return {"sigmoid": "normal", "tanh": "glorot", "relu": "he", "identity": "glorot"}[activation]


def initial_weights(
    n_features: int = 1,
    hidden: int | tuple[int, ...] = 32,
    seed: int = 0,
    *,
    activation: str = "sigmoid",
    init: str | None = None,
) -> Any:
    """The initial parameters on the host, float64 NumPy arrays, biases 0.

    Weights drawn from ``numpy.random.default_rng(seed)``, layer by layer from the input
    (the seed network: W1 then W2), so one seed gives the same starting point on every
    backend: :func:`nnbin.backend.init_params` casts them to the working dtype and only
    then moves them to the device. ``init``: "normal" W ~ N(0, 1); "glorot" W ~ U(-r, r)
    with r = sqrt(f / (fan_in + fan_out)), f = 2 for sigmoid and 6 otherwise (scikit-learn's
    choice); "he" W ~ N(0, 2 / fan_in). Default: :func:`default_init` of ``activation``.
    """
    sizes = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if n_features < 1 or any(h < 1 for h in sizes):
        raise ValueError(
            f"n_features and every hidden width must be >= 1, got {n_features}, {hidden}"
        )
    init = default_init(activation) if init is None else init
    rng = np.random.default_rng(seed)
    dims = (n_features, *sizes, 1)
    out: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(dims):
        if init == "normal":
            W = rng.standard_normal((fan_in, fan_out))
        elif init == "glorot":
            r = math.sqrt((2.0 if activation == "sigmoid" else 6.0) / (fan_in + fan_out))
            W = rng.uniform(-r, r, (fan_in, fan_out))
        elif init == "he":
            W = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
        else:
            raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")
        out += [W, np.zeros((fan_out,))]
    return Params(*out, activation=activation)


def quiet_overflow(fn: F) -> F:
    """Run ``fn`` with NumPy's overflow warning off. ``sigmoid`` computes exp(-a), which
    overflows to inf for a < -709 (float64) and gives 1 / (1 + inf) = 0, the exact limit:
    not a problem worth a RuntimeWarning on a successful run. Used at the entry points
    (the public functions, the estimator, the figure; the training loop sets it itself), never
    inside a step."""
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


def sigmoid_grad(xp: Any, h: Array) -> Array:
    """sigmoid'(a) from h = sigmoid(a): h (1 - h)."""
    return h * (1.0 - h)


def tanh(xp: Any, a: Array) -> Array:
    """tanh(a)."""
    return xp.tanh(a)


def tanh_grad(xp: Any, h: Array) -> Array:
    """tanh'(a) from h = tanh(a): 1 - h^2."""
    return 1.0 - h * h


def relu(xp: Any, a: Array) -> Array:
    """max(a, 0)."""
    return xp.maximum(a, xp.zeros_like(a))


def relu_grad(xp: Any, h: Array) -> Array:
    """relu'(a) from h = relu(a): 1 where h > 0, else 0 (0 at a = 0, as scikit-learn)."""
    return xp.astype(h > 0.0, h.dtype)


def identity(xp: Any, a: Array) -> Array:
    """a itself (scikit-learn's "identity": a linear hidden layer)."""
    return a


def identity_grad(xp: Any, h: Array) -> Array:
    """identity'(a) = 1."""
    return xp.ones_like(h)


#: name -> (activation, its derivative from the activation's output)
ACTIVATION_FNS: dict[str, tuple[Callable[[Any, Array], Array], Callable[[Any, Array], Array]]] = {
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "relu": (relu, relu_grad),
    "identity": (identity, identity_grad),
}


# --- the loss, and its derivative beside it --------------------------------------------
#
# Mean binary cross-entropy, computed from the logits:
#
#     L = mean( softplus(z) - y z ),   softplus(z) = log(1 + e^z)
#
# This equals -mean(y log p + (1 - y) log(1 - p)) with p = sigmoid(z), but never forms
# log(p) or log(1 - p), which are -inf once p rounds to 0 or 1. (The seed notebook passed
# its arguments in the wrong order and printed a scaled L1 error instead of this.)
#
# Each term is evaluated as ``max(z, 0) - y z + log1p(exp(-|z|))``: for labels 0 and 1 the
# first two parts give 0 or |z| exactly, and both parts are >= 0, so nothing cancels. The
# shorter ``logaddexp(0, z) - y z`` loses the small loss of a confident correct prediction
# (y = 1, z = 8: about 3e-4, of which float32 keeps only three digits). ``nnbin.loss`` is
# the checked public function.


def bce_with_logits_sum(xp: Any, z: Array, y: Array, w: Array | None = None) -> Array:
    """sum(softplus(z) - y z) over all samples, each term weighted by ``w`` (a column like
    y; None: 1), a 0-d array (finite for any finite z)."""
    a = xp.abs(z)
    # max(z, 0) as 0.5 z + 0.5 |z| (the same value): at z = 0 automatic differentiation
    # then gives sigmoid(0) - y whatever abs'(0) a library takes (JAX's max splits a tie
    # and its abs'(0) is 1, which made jax.grad(nnbin.loss) -y there)
    terms = (0.5 * z + 0.5 * a) - y * z + xp.log1p(xp.exp(-a))
    return xp.sum(terms if w is None else w * terms)


def bce_dz(xp: Any, z: Array, y: Array, w: Array | None = None) -> Array:
    """The derivative of each sample's term of :func:`bce_with_logits_sum` by its logit,
    d/dz [softplus(z) - y z] = sigmoid(z) - y, weighted by ``w`` (None: 1), (B, 1)."""
    dz = sigmoid(xp, z) - y
    return dz if w is None else dz * w


def l2_penalty(xp: Any, params: Any, alpha: float, n: int) -> Array:
    """scikit-learn's L2 term (alpha / 2n) sum ||W||^2 over the weight matrices (W1, W2,
    ...; not the biases), a 0-d array."""
    return 0.5 * alpha / n * sum(xp.sum(W * W) for W in params[0::2])


def activation_of(params: Any, activation: str | None = None) -> str:
    """``activation`` where given, else the parameters' own (a :class:`Params` says it): the
    math never assumes one."""
    if activation is not None:
        return activation
    own: str = getattr(params, "activation", "")
    if not own:
        raise InvalidInputError(
            "a bare tuple of arrays does not say its hidden layers' activation: pass "
            "activation=, or nnbin.Params(*params, activation=...)"
        )
    return own


def hidden_outputs(xp: Any, params: Any, X: Array, activation: str | None = None) -> list[Array]:
    """[h1, ..., hL], the outputs of the hidden layers, each (N, Hl)."""
    act = ACTIVATION_FNS[activation_of(params, activation)][0]
    h, out = X, []
    for W, b in layers(params)[:-1]:
        # tensordot, not @: NumPy's matmul has no fast path for the (N, 1) @ (1, H) outer
        # product of the seed network (measured 3-4x slower); tensordot is a matmul elsewhere.
        h = act(xp, xp.tensordot(h, W, axes=1) + b)
        out.append(h)
    return out


def hidden_layer(xp: Any, params: Any, X: Array, activation: str | None = None) -> Array:
    """hL, the output of the last hidden layer, shape (N, HL) (X itself with none)."""
    hs = hidden_outputs(xp, params, X, activation)
    return hs[-1] if hs else X


def forward(params: Any, X: Array, activation: str | None = None) -> Array:
    """Output logits z, shape (N, 1)."""
    xp = namespace(X, *params)
    return hidden_layer(xp, params, X, activation) @ params[-2] + params[-1]


def forward_blocks(
    params: Any, X: Any, activation: str | None = None, rows: int | None = None
) -> Array:
    """:func:`forward` over X ``rows`` samples at a time (None: all at once), each block
    :func:`dense`: the logits of a SciPy sparse X without densifying it whole."""
    n = int(X.shape[0])
    if rows is None or rows >= n:
        return forward(params, dense(X), activation)
    parts = [  # the standard leaves out-of-range stops undefined: min
        forward(params, dense(X[a : min(a + rows, n), ...]), activation) for a in range(0, n, rows)
    ]
    return namespace(*params).concat(parts, axis=0)


def accuracy(
    params: Any,
    X: Any,
    y: Array,
    activation: str | None,
    weights: Any = None,
    rows: int | None = None,
) -> Array:
    """The share of samples, weighted by ``weights`` (None: each 1), whose class the sign of
    the logit gets right (z >= 0: class 1), a 0-d array; X taken ``rows`` samples at a time
    (None: at once), each block :func:`dense`, its hits summed (no (N, H) array, no logits
    kept). :func:`nnbin.accuracy`, and early stopping's score eagerly and under ``jax.jit``."""
    xp, n = namespace(y), int(X.shape[0])
    step = rows or max(n, 1)
    hits: Any = None
    for a in range(0, n, step):
        b = min(a + step, n)
        z = forward(params, dense(X[a:b, ...]), activation)
        right = xp.astype((z >= 0.0) == (y[a:b, ...] == 1.0), y.dtype)
        part = xp.sum(right if weights is None else weights[a:b, ...] * right)
        hits = part if hits is None else hits + part
    return hits / (float(n) if weights is None else xp.sum(weights))


def predict_proba(params: Any, X: Array, activation: str | None = None) -> Array:
    """P(y = 1 | x) = sigmoid(z), shape (N, 1)."""
    return sigmoid(namespace(X, *params), forward(params, X, activation))


# --- the backward pass, written by hand ---------------------------------------------------


def _block_grads(
    xp: Any,
    params: Any,
    X: Array,
    y: Array,
    with_loss: bool,
    activation: str | None,
    w: Array | None,
) -> tuple[Array | None, Any]:
    """Loss and gradient of the *summed* loss over this block's rows, each weighted by ``w``
    (a (B, 1) column; None: 1) (the caller divides by N, or by the weights' sum)."""
    activation = activation_of(params, activation)
    act_grad = ACTIVATION_FNS[activation][1]
    pairs = layers(params)
    Wo = pairs[-1][0]

    # the shapes in the right-hand column are aligned on purpose:
    # fmt: off
    # forward
    hs = [X, *hidden_outputs(xp, params, X, activation)]  # h0 = X, h1 .. hL
    h = hs[-1]                                        # (B, HL)
    z = xp.matmul(h, Wo) + pairs[-1][1]               # (B, 1)
    loss_sum = bce_with_logits_sum(xp, z, y, w) if with_loss else None

    # output layer
    # (B, 1): N dL/dz, or with weights sum(w) dL/dz
    dz = bce_dz(xp, z, y, w)
    dWo = xp.matmul(dz.T, h).T                        # (HL, 1) = hL^T dz, as a row: no (HL, B) copy
    dbo = xp.sum(dz, axis=0)                          # (1,)
    if len(pairs) == 1:                               # no hidden layer: logistic regression
        return loss_sum, like(params, [dWo, dbo])

    # last hidden layer: dL/daL = (dz Wo^T) * s with s = act'(aL). Wo^T only scales column j
    # by Wo[j], so it is applied after the sum over samples: this saves one (B, H) product
    # and, for the bias, a column sum over a tall array (slow on GPUs; a matmul is not).
    # h(L-1)^T dL/daL and sum_n dL/daL come from one product, [h(L-1) dz, dz]^T s: one pass
    # over s instead of two (measured 1.2x a step under XLA on the CPU).
    s = act_grad(xp, h)                               # (B, HL)  act'(aL)
    wo_row = Wo.T                                     # (1, HL)
    below = hs[-2]                                    # (B, H(L-1))
    d = below.shape[1]
    outer = xp.concat([below * dz, dz], axis=1)       # (B, H(L-1) + 1)
    dW_db = xp.matmul(outer.T, s) * wo_row            # (H(L-1) + 1, HL)
    dWL = dW_db[:d, ...]                              # (H(L-1), HL) = h(L-1)^T dL/daL
    dbL = dW_db[d, ...]                               # (HL,)        = sum_n dL/daL
    grads = [dWL, dbL, dWo, dbo]

    # the layers below: dL/dal in full, weight and bias gradients from one product each
    if len(pairs) > 2:
        delta = (dz * s) * wo_row                     # (B, HL)  N dL/daL
        ones = xp.ones_like(dz)                       # (B, 1)
        for k in range(len(pairs) - 2, 0, -1):        # hidden layer k: hs[k] = hk
            back = xp.matmul(delta, pairs[k][0].T)    # (B, Hk)  N dL/dhk (through W(k+1))
            delta = back * act_grad(xp, hs[k])        # (B, Hk)  N dL/dak
            below = hs[k - 1]                         # (B, H(k-1))
            d = below.shape[1]
            dWb_k = xp.matmul(xp.concat([below, ones], axis=1).T, delta)  # (H(k-1) + 1, Hk)
            grads = [dWb_k[:d, ...], dWb_k[d, ...], *grads]
    # fmt: on
    return loss_sum, like(params, grads)


def value_and_grads(
    params: Any,
    X: Array,
    y: Array,
    *,
    with_loss: bool = True,
    block_rows: int | None = None,
    activation: str | None = None,
    alpha: float | Array = 0.0,
    weights: Array | None = None,
    xp: Any = None,
) -> tuple[Array | None, Any]:
    """Mean BCE (plus the L2 penalty ``alpha``; the loss is None when ``with_loss`` is
    false) and its gradient, by blocks of rows; with ``weights`` (a (N, 1) column of
    sample weights) the weighted mean, N replaced by their sum. A SciPy sparse X (the numpy
    backend's) is densified one block at a time (:func:`dense`). ``xp``: the
    namespace to compute in (None: the arrays' own; CuPy's CUDA-graph capture hands one
    whose products cuBLAS does not run, ``nnbin_backends.cuda.gemm``)."""
    if xp is None:
        xp = namespace(y, *params)  # X's library is y's (checked where the data came in)
    n: Any = X.shape[0]

    def w(a: int, b: int) -> Array | None:
        return None if weights is None else weights[a:b, ...]

    if block_rows is None or block_rows >= n:
        loss_sum, grads = _block_grads(xp, params, dense(X), y, with_loss, activation, weights)
    else:
        loss_sum, grads = _block_grads(
            xp, params, dense(X[:block_rows, ...]), y[:block_rows, ...], with_loss, activation,
            w(0, block_rows),
        )  # fmt: skip
        for start in range(block_rows, n, block_rows):
            stop = min(start + block_rows, n)  # the standard leaves out-of-range stops undefined
            part_loss, part = _block_grads(
                xp, params, dense(X[start:stop, ...]), y[start:stop, ...], with_loss, activation,
                w(start, stop),
            )  # fmt: skip
            grads = like(params, (g + p for g, p in zip(grads, part)))
            if loss_sum is not None:
                loss_sum = loss_sum + part_loss
    if weights is not None:
        n = xp.sum(weights)  # the weighted mean's denominator (a 0-d array)
    inv_n = 1.0 / n
    grads = like(params, (g * inv_n for g in grads))
    loss = loss_sum * inv_n if loss_sum is not None else None
    # scikit-learn's L2: (alpha / 2N) sum ||W||^2 over the weights, not the biases; alpha a
    # Python number, or a 0-d array (traced under jax.jit: a grid over alpha compiles once)
    if not isinstance(alpha, (int, float)) or alpha:
        k = alpha / n
        grads = like(
            params, (g + k * p if i % 2 == 0 else g for i, (g, p) in enumerate(zip(grads, params)))
        )
        if loss is not None:
            loss = loss + l2_penalty(xp, params, alpha, n)
    return loss, grads
