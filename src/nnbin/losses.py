"""Mean binary cross-entropy, computed from logits (the module is `losses`: `nnbin.loss` is
the checked public function).

    L = mean( softplus(z) - y z ),   softplus(z) = log(1 + e^z)

This equals -mean(y log p + (1 - y) log(1 - p)) with p = sigmoid(z), but never forms
log(p) or log(1 - p), which are -inf once p rounds to 0 or 1. (The seed notebook passed
its arguments in the wrong order and printed a scaled L1 error instead of this.)

Each term is evaluated as ``max(z, 0) - y z + log1p(exp(-|z|))``: for labels 0 and 1 the
first two parts give 0 or |z| exactly, and both parts are >= 0, so nothing cancels. The
shorter ``logaddexp(0, z) - y z`` loses the small loss of a confident correct prediction
(y = 1, z = 8: about 3e-4, of which float32 keeps only three digits).

Formulas on logits and weights, nothing else: this module imports no other (the network's
loss is ``nnbin.loss``, which checks its arguments and takes z from :func:`nnbin.model.forward`;
training takes it with the gradients, from :func:`nnbin.backprop.value_and_grads`).
"""

from __future__ import annotations

from typing import Any

Array = Any  # an array of any array-API library (nnbin.model.Array)


def bce_with_logits_sum(xp: Any, z: Array, y: Array, w: Array | None = None) -> Array:
    """sum(softplus(z) - y z) over all samples, each term weighted by ``w`` (a column like
    y; None: 1), a 0-d array (finite for any finite z)."""
    a = xp.abs(z)
    # max(z, 0) as 0.5 z + 0.5 |z| (the same value): at z = 0 automatic differentiation
    # then gives sigmoid(0) - y whatever abs'(0) a library takes (JAX's max splits a tie
    # and its abs'(0) is 1, which made jax.grad(nnbin.loss) -y there)
    terms = (0.5 * z + 0.5 * a) - y * z + xp.log1p(xp.exp(-a))
    return xp.sum(terms if w is None else w * terms)


def l2_penalty(xp: Any, params: Any, alpha: float, n: int) -> Array:
    """scikit-learn's L2 term (alpha / 2n) sum ||W||^2 over the weight matrices (W1, W2,
    ...; not the biases), a 0-d array."""
    return 0.5 * alpha / n * sum(xp.sum(W * W) for W in params[0::2])
