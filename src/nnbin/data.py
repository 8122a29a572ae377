"""The seed job's data."""

from __future__ import annotations

import numpy as np


def two_gaussians(
    n_per_class: int = 10_000,
    seed: int = 0,
    *,
    mean: float = 6.0,
    std: float = 1.0,
    n_features: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed notebook's data: N(-mean, std) labelled 0 and N(+mean, std) labelled 1, shuffled.

    Returns host (NumPy float64) arrays X of shape (2 n, D) and y of shape (2 n, 1);
    :func:`nnbin.train` moves them to the chosen backend once.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    x0 = rng.normal(-mean, std, size=(n_per_class, n_features))
    x1 = rng.normal(mean, std, size=(n_per_class, n_features))
    X = np.concatenate([x0, x1])
    y = np.concatenate([np.zeros((n_per_class, 1)), np.ones((n_per_class, 1))])
    order = rng.permutation(2 * n_per_class)
    return X[order], y[order]
