"""Mean binary cross-entropy, computed from logits.

    L = mean( softplus(z) - y z ),   softplus(z) = log(1 + e^z) = logaddexp(0, z)

This equals -mean(y log p + (1 - y) log(1 - p)) with p = sigmoid(z), but never forms
log(p) or log(1 - p), which are -inf once p rounds to 0 or 1. (The seed notebook passed
its arguments in the wrong order and printed a scaled L1 error instead of this.)
"""

from __future__ import annotations

from typing import Any

from .model import Array, Params, forward, namespace


def bce_with_logits_sum(xp: Any, z: Array, y: Array) -> Array:
    """sum(softplus(z) - y z) over all samples, a 0-d array (finite for any finite z)."""
    return xp.sum(xp.logaddexp(xp.zeros_like(z), z) - y * z)


def loss(params: Params, X: Array, y: Array) -> Array:
    """Mean binary cross-entropy of the network on (X, y), a 0-d array."""
    xp = namespace(X, y, *params)
    return bce_with_logits_sum(xp, forward(params, X), y) / X.shape[0]
