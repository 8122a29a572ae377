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
from typing import Any

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
    return train_to(w, X, y, lr=lr, stops=[steps], log_every=log_every)[0]


def train_to(
    w: dict[str, np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    *,
    lr: float,
    stops: list[int],
    log_every: int,
) -> list[Run]:
    """The seed loop run once to the last of ``stops``, and the run that ends at each stop
    (its losses up to there, its weights and loss there): a 300-step and a 1,000-step
    check from one run."""
    w = {k: v.copy() for k, v in w.items()}
    losses, runs = [], []
    for s in range(max(stops) + 1):
        if s in stops:
            runs.append(Run(list(losses), {k: v.copy() for k, v in w.items()}, loss(w, X, y)))
        if s == max(stops):
            break
        if s % log_every == 0:
            losses.append((s, loss(w, X, y)))
        g = gradients(w, X, y)
        for k in w:
            w[k] -= lr * g[k]
    return [runs[sorted(stops).index(s)] for s in stops]


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


# --- the deeper network and its optimizers ------------------------------------------------
# Written separately from nnbin and from the seed reference above: layers are a list of
# {"W", "b"} dicts, each activation's derivative is taken from the *pre-activation* a (nnbin
# takes it from the output), the backward pass keeps every dL/da in full (nnbin folds the
# output weights in after the sum), and the optimizers follow scikit-learn's formulas as its
# documentation states them. What nnbin and this share is the contract only: the order in
# which weights are drawn, the shuffle and the validation split (drawn with NumPy from the
# seeds nnbin documents), and the loss's definition.


def act(name: str, a: np.ndarray) -> np.ndarray:
    if name == "sigmoid":
        return sigmoid(a)
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.where(a > 0.0, a, 0.0)
    if name == "identity":
        return a
    raise ValueError(name)


def act_derivative(name: str, a: np.ndarray) -> np.ndarray:
    """d act / d a at the pre-activation a."""
    if name == "sigmoid":
        s = sigmoid(a)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 / np.cosh(a) ** 2
    if name == "relu":
        return (a > 0.0).astype(np.float64)
    if name == "identity":
        return np.ones_like(a)
    raise ValueError(name)


def deep_weights(
    n_features: int, hidden: tuple[int, ...], seed: int, activation: str, init: str
) -> list[dict[str, np.ndarray]]:
    """Layer by layer from the input, each weight matrix drawn from one
    numpy.random.default_rng(seed): "normal" N(0, 1); "glorot" uniform on +-sqrt(f / (fan_in
    + fan_out)), f = 2 for sigmoid, else 6; "he" N(0, 1) * sqrt(2 / fan_in). Biases 0."""
    rng = np.random.default_rng(seed)
    sizes = [n_features, *hidden, 1]
    layers = []
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        if init == "normal":
            W = rng.standard_normal((fan_in, fan_out))
        elif init == "glorot":
            bound = np.sqrt((2.0 if activation == "sigmoid" else 6.0) / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, (fan_in, fan_out))
        else:
            W = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        layers.append({"W": W, "b": np.zeros(fan_out)})
    return layers


def deep_forward(
    layers: list[dict[str, np.ndarray]], X: np.ndarray, activation: str
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Pre-activations a_l and outputs h_l of every hidden layer (h_0 = X), and the logits."""
    pre, outs = [], [X]
    for layer in layers[:-1]:
        a = outs[-1] @ layer["W"] + layer["b"]
        pre.append(a)
        outs.append(act(activation, a))
    z = outs[-1] @ layers[-1]["W"] + layers[-1]["b"]
    return pre, outs, z


def deep_loss(
    layers: list[dict[str, np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    alpha: float = 0.0,
    sw: np.ndarray | None = None,
) -> float:
    """Mean BCE from the logits plus (alpha / 2N) times the sum of squared weights; with
    sample weights sw, np.average's weighted mean and N = sum(sw) (scikit-learn's)."""
    _, _, z = deep_forward(layers, X, activation)
    terms = (np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))).ravel()
    bce = np.average(terms, weights=None if sw is None else sw.ravel())
    N = X.shape[0] if sw is None else float(np.sum(sw))
    l2 = sum(float(np.sum(layer["W"] ** 2)) for layer in layers)
    return float(bce + alpha * l2 / (2.0 * N))


def deep_gradients(
    layers: list[dict[str, np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    alpha: float = 0.0,
    sw: np.ndarray | None = None,
) -> list[dict[str, np.ndarray]]:
    N = X.shape[0] if sw is None else float(np.sum(sw))
    pre, outs, z = deep_forward(layers, X, activation)
    delta = (sigmoid(z) - y) / N  # dL/dz
    if sw is not None:
        delta = delta * sw.reshape(-1, 1)
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    for i in range(len(layers) - 1, -1, -1):
        grads[i]["W"] = outs[i].T @ delta + (alpha / N) * layers[i]["W"]
        grads[i]["b"] = delta.sum(axis=0)
        if i > 0:  # dL/da of the layer below
            delta = (delta @ layers[i]["W"].T) * act_derivative(activation, pre[i - 1])
    return grads


def flat(layers: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The layers as nnbin orders its parameters: W1, b1, W2, b2, ..."""
    return [a for layer in layers for a in (layer["W"], layer["b"])]


class Sgd:
    """scikit-learn's SGD: v <- momentum v - lr g; p <- p + v, or with Nesterov's momentum
    p <- p + momentum v - lr g (momentum 0 is plain gradient descent)."""

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False) -> None:
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.v: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        for k, g in enumerate(grads):
            self.v[k] = self.momentum * self.v[k] - self.lr * g
            if self.nesterov:
                params[k] += self.momentum * self.v[k] - self.lr * g
            else:
                params[k] += self.v[k]


class Adam:
    """Kingma and Ba's Adam as scikit-learn writes it: the bias corrections folded into the
    step size, lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.t = 0
        self.m: list[np.ndarray] | None = None
        self.v: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.m is None or self.v is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        lr_t = self.lr * np.sqrt(1.0 - self.b2**self.t) / (1.0 - self.b1**self.t)
        for k, g in enumerate(grads):
            self.m[k] = self.b1 * self.m[k] + (1.0 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1.0 - self.b2) * g**2
            params[k] -= lr_t * self.m[k] / (np.sqrt(self.v[k]) + self.eps)


@dataclass
class DeepRun:
    losses: list[tuple[int, float]]  # (epoch, mean of that epoch's batch losses)
    final: list[np.ndarray]  # W1, b1, ... as nnbin orders them
    epochs: int  # epochs run (fewer than asked when a stopping rule ended the run)
    scores: list[float]  # held-out accuracy after each epoch (early stopping)


def stratified_hold_out(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, trained rows), each in the data's order. H = ceil(fraction N) within
    [1, N - 1]; of them P = round(H N1 / N) positives (halves up), within [1, N1 - 1] and
    leaving one negative on each side; walking numpy.random.default_rng([seed, 2])
    .permutation(N), a sample is held out while its class's quota lasts."""
    labels = y.reshape(-1) == 1.0
    N, N1 = labels.size, int(labels.sum())
    H = min(max(1, int(np.ceil(fraction * N))), N - 1)
    if N1 in (0, N):
        quota = {bool(N1): H}
    else:
        P = int(np.floor(H * N1 / N + 0.5))
        P = min(max(P, 1, H - (N - N1 - 1)), N1 - 1, H - 1)
        quota = {True: P, False: H - P}
    out = []
    for i in np.random.default_rng([seed, 2]).permutation(N):
        if quota[bool(labels[i])] > 0:
            quota[bool(labels[i])] -= 1
            out.append(int(i))
    held = np.zeros(N, dtype=bool)
    held[out] = True
    return np.flatnonzero(held), np.flatnonzero(~held)


def deep_train(
    layers: list[dict[str, np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    activation: str,
    optimizer: Sgd | Adam,
    epochs: int,
    log_every: int,
    batch_size: int | None = None,
    alpha: float = 0.0,
    seed: int = 0,
    early_stopping: bool = False,
    validation_fraction: float = 0.1,
    n_iter_no_change: int | None = None,
    tol: float = 1e-4,
    learning_rate: str = "constant",
    power_t: float = 0.5,
    sample_weight: np.ndarray | None = None,
) -> DeepRun:
    """Epochs of mini-batches (rows shuffled each epoch by
    numpy.random.default_rng([seed, 1]).permutation), every batch one optimizer step on its
    mean loss with the penalty scaled by the batch size, the epoch's loss the batch losses
    weighted by batch size. Early stopping holds out a stratified ceil(fraction N) samples
    (:func:`stratified_hold_out`) and stops after more than n_iter_no_change epochs
    without a held-out accuracy above the best by tol, returning the best; without it,
    n_iter_no_change applies to the training loss instead. ``learning_rate`` as
    scikit-learn's SGD documents it: "invscaling" sets the step size after each epoch to
    lr / (t + 1)^power_t, t the samples seen so far; "adaptive" divides it by 5 where the
    rule would stop, unless it is already at most 1e-6 (then the run stops).
    ``sample_weight``: each batch's loss and gradient their weighted mean (its own weights'
    sum), the held-out accuracy weighted; the epoch's loss still weighs batches by size."""
    params = [a.copy() for a in flat(layers)]
    Xv = yv = None
    sw = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    weighted = sample_weight is not None
    if early_stopping:
        out, keep = stratified_hold_out(y, validation_fraction, seed)
        X, y, Xv, yv, sw, swv = X[keep], y[keep], X[out], y[out], sw[keep], sw[out]
        if n_iter_no_change is None:
            n_iter_no_change = 10
    N = X.shape[0]
    rng = np.random.default_rng([seed, 1])
    size = N if batch_size is None else batch_size

    def as_layers(p: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"W": p[2 * i], "b": p[2 * i + 1]} for i in range(len(p) // 2)]

    losses, scores = [], []
    best_loss, best_score, stale, best = np.inf, -np.inf, 0, None
    lr0 = optimizer.lr
    ran = 0
    for epoch in range(epochs):
        rows = np.arange(N) if batch_size is None else rng.permutation(N)
        total = 0.0
        for start in range(0, N, size):
            idx = rows[start : start + size]
            lay = as_layers(params)
            bw = sw[idx] if weighted else None
            total += deep_loss(lay, X[idx], y[idx], activation, alpha, bw) * len(idx)
            g = deep_gradients(lay, X[idx], y[idx], activation, alpha, bw)
            optimizer.step(params, flat(g))
        ran = epoch + 1
        epoch_loss = total / N
        stopping = early_stopping or n_iter_no_change is not None
        if stopping or epoch % log_every == 0:
            losses.append((epoch, epoch_loss))
        if early_stopping:
            _, _, zv = deep_forward(as_layers(params), Xv, activation)
            right = ((zv >= 0.0) == (yv == 1.0)).ravel()
            score = float(np.average(right, weights=swv if weighted else None))
            scores.append(score)
            stale = stale + 1 if score < best_score + tol else 0
            if score > best_score:
                best_score, best = score, [p.copy() for p in params]
        elif n_iter_no_change is not None:
            stale = stale + 1 if epoch_loss > best_loss - tol else 0
            best_loss = min(best_loss, epoch_loss)
        if learning_rate == "invscaling":
            optimizer.lr = lr0 / (ran * N + 1) ** power_t
        if stopping and stale > n_iter_no_change:
            if learning_rate != "adaptive" or optimizer.lr <= 1e-6:
                break
            optimizer.lr = optimizer.lr / 5.0
            stale = 0
    final = best if (early_stopping and best is not None) else params
    return DeepRun(losses, final, ran, scores)


# --- L-BFGS, on one flat float64 vector --------------------------------------------------


def flat_objective(
    layers: list[dict[str, np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    alpha: float,
) -> tuple[np.ndarray, Any, Any]:
    """The deep network's loss and gradient on one flat vector, as scipy's minimisers take
    them: (the layers flattened, v -> (loss, gradient), v -> layers)."""
    shapes = [a.shape for a in flat(layers)]

    def unflat(v: np.ndarray) -> list[dict[str, np.ndarray]]:
        parts, at = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            parts.append(v[at : at + size].reshape(shape))
            at += size
        return [{"W": parts[2 * i], "b": parts[2 * i + 1]} for i in range(len(parts) // 2)]

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        lay = unflat(v)
        g = deep_gradients(lay, X, y, activation, alpha)
        return deep_loss(lay, X, y, activation, alpha), np.concatenate([a.ravel() for a in flat(g)])

    return np.concatenate([a.ravel() for a in flat(layers)]), objective, unflat


@dataclass
class LbfgsRun:
    losses: list[float]  # the loss before each iteration
    final: list[np.ndarray]  # W1, b1, ... as nnbin orders them
    iterations: int
    evaluations: int
    converged: bool


def lbfgs_train(
    layers: list[dict[str, np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    activation: str,
    alpha: float,
    max_iter: int,
    max_fun: int = 15000,
    tol: float = 1e-4,
    memory: int = 10,
) -> LbfgsRun:
    """L-BFGS as Nocedal & Wright's algorithm 7.4 (two-loop recursion, H0 = s.y / y.y from
    the newest pair, pairs with s.y <= 0 not kept) with their strong Wolfe line search
    (algorithms 3.5/3.6: c1 = 1e-4, c2 = 0.9, trial steps doubled while bracketing, the
    zoom's trial the interpolating cubic's minimiser unless it falls within a tenth of the
    bracket's ends, then the midpoint; 20 evaluations a search; the first iteration's
    trial step min(1, 1/||g||)). Stops as scipy's L-BFGS-B: max|g| <= tol (also at the
    start), a relative reduction <= 1e7 eps, max_iter iterations, more than max_fun
    evaluations after an iteration. A failed search retries once along -g."""
    x, objective, unflat = flat_objective(layers, X, y, activation, alpha)
    count = [0]

    def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
        count[0] += 1
        return objective(v)

    f, g = fg(x)
    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    losses: list[float] = []
    it, converged = 0, bool(np.max(np.abs(g)) <= tol)
    while not converged and it < max_iter:
        losses.append(f)
        found = None
        for _attempt in range(2):
            q = g.copy()
            coeffs = []
            for s, yy in zip(reversed(S), reversed(Y)):
                a = (s @ q) / (yy @ s)
                coeffs.append(a)
                q -= a * yy
            if S:
                q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
            for (s, yy), a in zip(zip(S, Y), reversed(coeffs)):
                q += (a - (yy @ q) / (yy @ s)) * s
            d = -q
            d0 = g @ d
            if d0 >= 0.0:
                S, Y = [], []
                continue
            t = 1.0 if S else min(1.0, 1.0 / np.sqrt(-d0))
            found = _wolfe(fg, x, d, f, d0, t)
            if found is not None:
                break
            S, Y = [], []
        if found is None:
            break  # no step
        t, f_new, g_new = found
        s, yy = t * d, g_new - g
        if s @ yy > 0.0:
            S, Y = [*S, s][-memory:], [*Y, yy][-memory:]
        x, f_old, f, g = x + t * d, f, f_new, g_new
        it += 1
        reduced = f_old - f <= 1e7 * np.finfo(float).eps * max(abs(f_old), abs(f), 1.0)
        if reduced or np.max(np.abs(g)) <= tol:
            converged = True
        elif count[0] > max_fun:
            break
    return LbfgsRun(losses, flat(unflat(x)), it, count[0], converged)


def _wolfe(fg, x, d, f0, d0, t):  # type: ignore[no-untyped-def]
    """(t, f, g) meeting the strong Wolfe conditions, or None."""
    c1, c2, evals = 1e-4, 0.9, 0

    def at(t: float) -> tuple[float, float, np.ndarray]:
        f, g = fg(x + t * d)
        return f, float(g @ d), g

    def high(t: float, f: float, f_ref: float) -> bool:
        return not np.isfinite(f) or f > f0 + c1 * t * d0 or f >= f_ref

    lo = (0.0, f0, d0, None)
    hi = None
    first = True
    while evals < 20:
        f, slope, g = at(t)
        evals += 1
        if high(t, f, np.inf if first else lo[1]):
            hi = (t, f, slope, g)
            break
        if abs(slope) <= -c2 * d0:
            return t, f, g
        if slope >= 0.0:
            hi, lo = lo, (t, f, slope, g)
            break
        lo, first = (t, f, slope, g), False
        t = 2.0 * t
    else:
        return None
    while evals < 20:
        (a, fa, da, _), (b, fb, db, _) = lo, hi
        w = abs(b - a)
        if w <= 1e-12 * max(abs(a), abs(b), 1e-300):
            return None
        # the cubic through both ends with their slopes: its minimiser
        e1 = da + db - 3.0 * (fa - fb) / (a - b)
        disc = e1 * e1 - da * db
        t = np.nan
        if disc >= 0.0:
            e2 = np.sign(b - a) * np.sqrt(disc)
            t = b - (b - a) * (db + e2 - e1) / (db - da + 2.0 * e2)
        if not (min(a, b) + 0.1 * w <= t <= max(a, b) - 0.1 * w):
            t = (a + b) / 2.0
        f, slope, g = at(t)
        evals += 1
        if high(t, f, fa):
            hi = (t, f, slope, g)
            continue
        if abs(slope) <= -c2 * d0:
            return t, f, g
        if slope * (b - a) >= 0.0:
            hi = lo
        lo = (t, f, slope, g)
    return None
