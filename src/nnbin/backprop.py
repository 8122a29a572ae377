"""The backward pass, written by hand.

Forward (see :mod:`nnbin.model`), for a block of B samples out of N, hidden layers
l = 1 .. L, h0 = X::

    hl = act(h(l-1) Wl + bl)    (B, Hl)       z = hL Wo + bo      (B, 1)
    L  = (1/N) sum(softplus(z) - y z)  [+ (alpha / 2N) sum of every ||W||^2]

With sample weights w (scikit-learn's ``sample_weight``) the sum weighs each term by w_n
and N is sum(w): the weighted mean, the penalty scaled by sum(w), and dL/dz weighted alike.

Backward, the chain rule layer by layer from the output::

    dL/dz  = w (sigmoid(z) - y) / N                     (B, 1)   (w = 1 unweighted)
    dL/dWo = hL^T dL/dz,  dL/dbo = sum_n dL/dz            (L = 0: hL = X, and done)
    dL/daL = (dL/dz Wo^T) * act'(aL)                    (B, HL)
    for l = L .. 1:
        dL/dWl = h(l-1)^T dL/dal,  dL/dbl = sum_n dL/dal
        dL/da(l-1) = (dL/dal Wl^T) * act'(a(l-1))       (B, H(l-1))   (l > 1)
    L2: dL/dW += (alpha / N) W for every weight matrix (not the biases), as scikit-learn

act' is written from the activation's output (sigmoid: h (1 - h); tanh: 1 - h^2; ReLU:
h > 0), beside each activation in :mod:`nnbin.model`. dL/dz needs no division by p or
1 - p (the seed notebook divided, which is inf/NaN once a sigmoid saturates):
d/dz [softplus(z) - y z] = sigmoid(z) - y exactly.

Gradients are sums over samples, so the batch can be processed in blocks whose partial
sums are added; the result is the same full-batch gradient. Backends pick the block size
(:meth:`nnbin.backend.Backend.block_rows`); ``None`` means the whole batch at once.
"""

from __future__ import annotations

from typing import Any

from .losses import bce_with_logits_sum, l2_penalty
from .model import (
    ACTIVATION_FNS,
    Array,
    activation_of,
    dense,
    hidden_outputs,
    layers,
    like,
    namespace,
    sigmoid,
)  # fmt: skip


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
    dz = sigmoid(xp, z) - y if w is None else (sigmoid(xp, z) - y) * w
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
    backend's) is densified one block at a time (:func:`nnbin.model.dense`). ``xp``: the
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
