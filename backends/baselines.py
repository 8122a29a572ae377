"""Benchmark baselines that need JAX or PyTorch: what a user could write instead of nnbin.

Used by ``nnbin bench`` (nnbin/bench.py, which also holds the seed-style NumPy loop). They
share no code with nnbin's core: each builds the seed network its library's usual way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nnbin.data import two_gaussians
from nnbin.errors import NnbinError


def jax_grad(n: int, dtype: str, steps: int, hidden: int) -> Callable[[], None]:
    import jax
    import jax.numpy as jnp

    if dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise NnbinError("float64 needs JAX's x64 mode")
    X, y = two_gaussians(n // 2, seed=0)
    Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
    rng = np.random.default_rng(0)
    p0 = (
        jnp.asarray(rng.standard_normal((1, hidden)), dtype),
        jnp.zeros(hidden, dtype),
        jnp.asarray(rng.standard_normal((hidden, 1)), dtype),
        jnp.zeros(1, dtype),
    )

    def loss(p: Any, X: Any, y: Any) -> Any:
        z = jax.nn.sigmoid(X @ p[0] + p[1]) @ p[2] + p[3]
        return jnp.mean(jnp.logaddexp(0, z) - y * z)

    @jax.jit
    def train(p: Any, X: Any, y: Any) -> Any:
        g = jax.grad(loss)
        return jax.lax.fori_loop(
            0, steps, lambda _, q: jax.tree.map(lambda a, b: a - b, q, g(q, X, y)), p
        )

    def run() -> None:
        jax.block_until_ready(train(p0, Xj, yj))

    return run


def torch_autograd(n: int, dtype: str, steps: int, hidden: int) -> Callable[[], None]:
    import torch

    X, y = two_gaussians(n // 2, seed=0)
    tdt = getattr(torch, dtype)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    Xt = torch.as_tensor(X, dtype=tdt, device=dev)
    yt = torch.as_tensor(y, dtype=tdt, device=dev)
    rng = np.random.default_rng(0)
    init = [
        rng.standard_normal((1, hidden)),
        np.zeros(hidden),
        rng.standard_normal((hidden, 1)),
        np.zeros(1),
    ]

    def run() -> None:
        p = [torch.tensor(a, dtype=tdt, device=dev, requires_grad=True) for a in init]
        for _ in range(steps):
            z = torch.sigmoid(Xt @ p[0] + p[1]) @ p[2] + p[3]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt)
            grads = torch.autograd.grad(loss, p)
            with torch.no_grad():
                p = [(a - g).requires_grad_() for a, g in zip(p, grads)]
        if dev == "cuda":
            torch.cuda.synchronize()

    return run
