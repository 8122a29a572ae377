"""The decision-boundary figure (matplotlib and seaborn, imported only when drawing)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from .backend import Backend
from .model import Params, predict_proba


def crossings(x: np.ndarray, p: np.ndarray, level: float = 0.5) -> list[float]:
    """Where the curve p(x) crosses ``level``, by linear interpolation between grid points."""
    d = p - level
    idx = np.nonzero(np.signbit(d[:-1]) != np.signbit(d[1:]))[0]
    return [float(x[i] - d[i] * (x[i + 1] - x[i]) / (d[i + 1] - d[i])) for i in idx]


def boundary_figure(
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    path: str | os.PathLike[str],
    *,
    backend: Backend,
    title: str = "",
    x_range: tuple[float, float] = (-10.0, 10.0),
    max_points: int = 2000,
) -> list[float]:
    """Write the seed job's figure for one-feature data and return the 0.5 crossings.

    Both class densities (seaborn ``kdeplot``), a sample of the points at their label
    (jittered), and the predicted probability over ``x_range`` with the 0.5 crossing marked.
    The file is written atomically (a temporary file in the same folder, then a rename).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if X.ndim != 2 or X.shape[1] != 1:
        raise ValueError(f"the decision-boundary figure needs one feature; X has shape {X.shape}")
    x = X[:, 0]
    grid = np.linspace(*x_range, 801)
    dtype = str(params.W1.dtype).rpartition(".")[2]
    proba = backend.to_host(predict_proba(params, backend.asarray(grid[:, None], dtype)))[:, 0]
    cross = crossings(grid, proba.astype(np.float64))

    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    colors = {0: "tab:blue", 1: "tab:orange"}
    for label in (0, 1):
        sns.kdeplot(x=x[y == label], ax=ax, fill=True, alpha=0.3, color=colors[label],
                    label=f"class {label} density (n = {int(np.sum(y == label))})")
    ax.set_xlim(*x_range)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax2 = ax.twinx()
    rng = np.random.default_rng(0)
    keep = rng.permutation(x.size)[:max_points]
    jitter = rng.uniform(-0.03, 0.03, keep.size)
    ax2.scatter(x[keep], y[keep] + jitter, s=4, alpha=0.25,
                c=[colors[int(v)] for v in y[keep]], label="samples (at their label)")
    ax2.plot(grid, proba, color="black", lw=2, label="P(y = 1 | x)")
    ax2.axhline(0.5, color="grey", lw=0.8, ls=":")
    for c in cross:
        ax2.axvline(c, color="crimson", ls="--", lw=1.2)
        ax2.annotate(f"p = 0.5 at x = {c:.3f}", (c, 0.5), xytext=(8, 12),
                     textcoords="offset points", color="crimson")
    ax2.set_ylim(-0.08, 1.08)
    ax2.set_ylabel("predicted probability of class 1")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="center left",
              fontsize=8, frameon=False)
    ax.set_title(title or "nnbin: class densities and the decision boundary")
    atomic_savefig(fig, path)
    plt.close(fig)
    return cross


def atomic_savefig(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save ``fig`` to ``path`` through a temporary file in the same folder, then rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(prefix=".nnbin-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=suffix.lstrip(".") or "png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
