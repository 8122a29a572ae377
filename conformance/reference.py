"""The independent reference: plain NumPy float64, in the seed notebook's own style.

It does not import nnbin. It follows the notebook's two-step backward pass (dL/dy_hat,
then the sigmoid's derivative dy_hat/dz) with the notebook's two bugs fixed: the loss is
binary cross-entropy with the arguments in the right order (computed from logits), and
the division by y_hat (1 - y_hat) is refused where it would be 0 instead of silently
returning inf/NaN. Every array here is float64, whatever dtype the backend under test
uses: its inputs are rounded to that dtype first, so the comparison isolates arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ReferenceSaturatedError(ArithmeticError):
    """y_hat (1 - y_hat) underflowed to 0: the two-step formula cannot be used here."""


def initial_weights(n_features: int, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """W ~ N(0, 1) from numpy.random.default_rng(seed), W1 drawn before W2; zero biases."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((n_features, hidden))
    W2 = rng.standard_normal((hidden, 1))
    return {"W1": W1, "b1": np.zeros(hidden), "W2": W2, "b2": np.zeros(1)}


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def forward(w: dict[str, np.ndarray], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations h (N, H) and output logits z (N, 1)."""
    h = sigmoid(np.dot(X, w["W1"]) + w["b1"])
    z = np.dot(h, w["W2"]) + w["b2"]
    return h, z


def loss(w: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    """Mean BCE = mean(-y log p - (1-y) log(1-p)), evaluated from the logits as
    mean(log(1 + e^z) - y z)."""
    _, z = forward(w, X)
    # max(z, 0) - y z + log1p(exp(-|z|)): for labels 0/1 nothing cancels
    return float(np.mean(np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))))


def gradients(w: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The seed notebook's backward pass, two steps at the output, the loss fixed."""
    N = X.shape[0]
    h, z = forward(w, X)
    y_hat = sigmoid(z)
    slope = y_hat * (1.0 - y_hat)  # dy_hat/dz
    if not np.all(slope > 0.0):
        raise ReferenceSaturatedError("y_hat is exactly 0 or 1 for some sample")
    dL_dyhat = (y_hat - y) / slope / N  # d/dy_hat of mean(-y log y_hat - (1-y) log(1-y_hat))
    dL_dz = dL_dyhat * slope
    dW2 = np.dot(h.T, dL_dz)
    db2 = np.sum(dL_dz, axis=0)
    dL_dh = np.dot(dL_dz, w["W2"].T)
    dL_da1 = dL_dh * h * (1.0 - h)
    dW1 = np.dot(X.T, dL_da1)
    db1 = np.sum(dL_da1, axis=0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def step(
    w: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float
) -> dict[str, np.ndarray]:
    g = gradients(w, X, y)
    return {k: w[k] - lr * g[k] for k in w}


@dataclass
class Run:
    losses: list[tuple[int, float]]  # loss before the update of every log_every-th step
    final: dict[str, np.ndarray]
    final_loss: float


def train(
    w: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, lr: float, steps: int, log_every: int
) -> Run:
    """The seed loop: full-batch gradient descent, the weights updated in place."""
    w = {k: v.copy() for k, v in w.items()}
    losses = []
    for s in range(steps):
        if s % log_every == 0:
            losses.append((s, loss(w, X, y)))
        g = gradients(w, X, y)
        for k in w:
            w[k] -= lr * g[k]
    return Run(losses, w, loss(w, X, y))


def two_gaussians(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed-job-like data drawn here, independently of nnbin.two_gaussians."""
    rng = np.random.default_rng(seed + 12345)
    X = np.concatenate(
        [rng.normal(-6.0, 1.0, (n_per_class, 1)), rng.normal(6.0, 1.0, (n_per_class, 1))]
    )
    y = np.concatenate([np.zeros((n_per_class, 1)), np.ones((n_per_class, 1))])
    order = rng.permutation(2 * n_per_class)
    return X[order], y[order]


def gradient_magnitudes(
    w: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray
) -> dict[str, np.ndarray]:
    """Each gradient recomputed from absolute values of its terms, with the two
    subtractions that cancel (sigmoid(z) - y and 1 - h) replaced by their largest possible
    rounding error, 1. Rounding error of a gradient is at most a modest multiple of
    eps times this (a forward error bound); where a unit or the output saturates, the
    gradient itself is far smaller than this scale, and norm-wise relative error
    overstates the error of a correct computation."""
    N = X.shape[0]
    h, z = forward(w, X)
    dz = (np.abs(sigmoid(z) - y) + 1.0) / N
    s = np.abs(h * (1.0 - h)) + h
    a_w2 = np.abs(w["W2"]).T
    return {
        "W1": np.dot(np.abs(X).T, dz * s * a_w2),
        "b1": np.sum(dz * s * a_w2, axis=0),
        "W2": np.dot(np.abs(h).T, dz),
        "b2": np.sum(dz, axis=0),
    }
