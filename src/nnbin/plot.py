"""The decision-boundary figure (matplotlib and seaborn, imported only when drawing)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import Backend
from .files import atomic_write
from .model import Params, max_width, predict_proba, quiet_overflow
from .validate import counted


def crossings(x: np.ndarray, p: np.ndarray, level: float = 0.5) -> list[float]:
    """Where the curve p(x) crosses ``level``, by linear interpolation between grid points."""
    d = p - level
    idx = np.nonzero(np.signbit(d[:-1]) != np.signbit(d[1:]))[0]
    return [float(x[i] - d[i] * (x[i + 1] - x[i]) / (d[i + 1] - d[i])) for i in idx]


#: the most samples of a class its density estimate is drawn from (a seeded subsample past
#: that: the curve does not change visibly, and the time stays bounded)
KDE_SAMPLES = 200_000


def _proba(
    params: Params, points: np.ndarray, backend: Backend, activation: str | None = None
) -> np.ndarray:
    """P(y = 1 | x) at ``points`` (host, (M, D)) as a host array, worked out in the blocks of
    samples training uses on the backend (at most 4,096 rows), so that no (M, H) array of a
    wide network is built whole."""
    dtype = str(params[0].dtype).rpartition(".")[2]
    h = max_width(params)
    rows = min(backend.block_rows(points.shape[0], h) or 4096, 4096)
    parts = [
        backend.to_host(
            predict_proba(
                params, backend.asarray(points[i : i + rows], dtype), activation=activation
            )
        )
        for i in range(0, points.shape[0], rows)
    ]
    return np.concatenate(parts, axis=0)


def _draw_boundary(
    ax: Any,
    params: Params,
    X: np.ndarray,
    y: np.ndarray | None,
    backend: Backend,
    x_range: tuple[float, float],
    max_points: int,
    activation: str | None = None,
    names: tuple[str, ...] = ("x",),
) -> list[float]:
    """Class densities, samples and the probability curve on ``ax``; the 0.5 crossings."""
    import seaborn as sns

    grid = np.linspace(*x_range, 801)
    proba = _proba(params, grid[:, None], backend, activation)[:, 0]
    cross = crossings(grid, proba.astype(np.float64))
    colors = {0: "tab:blue", 1: "tab:orange"}
    x = X[:, 0]
    if y is not None:
        for label in (0, 1):
            if np.sum(y == label) > 1:
                members = x[y == label]
                if members.size > KDE_SAMPLES:
                    pick = np.random.default_rng(label).choice(members.size, KDE_SAMPLES, False)
                    members = members[np.sort(pick)]
                sns.kdeplot(
                    x=members,
                    ax=ax,
                    fill=True,
                    alpha=0.3,
                    color=colors[label],
                    label=f"class {label} density (n = {int(np.sum(y == label))})",
                )
    ax.set_xlim(*x_range)
    ax.set_xlabel(names[0])
    ax.set_ylabel("density")
    ax2 = ax.twinx()
    rng = np.random.default_rng(0)
    keep = rng.permutation(x.size)[:max_points]
    if y is not None:
        jitter = rng.uniform(-0.03, 0.03, keep.size)
        ax2.scatter(
            x[keep],
            y[keep] + jitter,
            s=4,
            alpha=0.25,
            c=[colors[int(v)] for v in y[keep]],
            label="samples (at their label)",
        )
    ax2.plot(grid, proba, color="black", lw=2, label="P(y = 1 | x)")
    ax2.axhline(0.5, color="grey", lw=0.8, ls=":")
    for c in cross:
        ax2.axvline(c, color="crimson", ls="--", lw=1.2)
        ax2.annotate(
            f"p = 0.5 at x = {c:.3f}",
            (c, 0.5),
            xytext=(8, 12),
            textcoords="offset points",
            color="crimson",
        )
    ax2.set_ylim(-0.08, 1.08)
    ax2.set_ylabel("predicted probability of class 1")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center left", fontsize=8, frameon=False)
    return cross


def _draw_heatmap(
    ax: Any,
    params: Params,
    X: np.ndarray,
    y: np.ndarray | None,
    backend: Backend,
    max_points: int,
    activation: str | None = None,
    names: tuple[str, ...] = ("x0", "x1"),
) -> None:
    """P(y = 1 | x) over the plane of two features, with the 0.5 contour and the samples."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * (hi - lo) + 1e-9
    g0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200)
    g1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
    m0, m1 = np.meshgrid(g0, g1)
    grid = np.column_stack([m0.ravel(), m1.ravel()])
    proba = _proba(params, grid, backend, activation).reshape(m0.shape)
    mesh = ax.pcolormesh(m0, m1, proba, cmap="RdBu_r", vmin=0, vmax=1, shading="auto")
    ax.figure.colorbar(mesh, ax=ax, label="P(y = 1 | x)")
    ax.contour(m0, m1, proba, levels=[0.5], colors="black", linewidths=2)
    keep = np.random.default_rng(0).permutation(X.shape[0])[:max_points]
    ax.scatter(
        X[keep, 0],
        X[keep, 1],
        s=4,
        c="k" if y is None else y[keep],
        cmap="RdBu_r",
        edgecolors="white",
        linewidths=0.2,
        vmin=0,
        vmax=1,
    )
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("probability, with the p = 0.5 contour", fontsize=10)


def _draw_loss(ax: Any, history: list[tuple[int, float]]) -> None:
    steps, losses = zip(*history)
    ax.plot(steps, losses, marker="o", color="black")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mean binary cross-entropy")
    ax.set_title("training loss", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


#: features beyond this magnitude cannot be drawn: a density's variance, a grid's spacing
#: and the axes' ticks overflow float64 on the way
PLOT_LIMIT = 1e150


def too_large_to_plot(X: Any) -> str | None:
    """Why features ``X`` cannot be drawn (None: they can)."""
    X = np.asarray(X, dtype=np.float64)
    top = float(np.max(np.abs(X), initial=0.0))
    if top > PLOT_LIMIT:
        return (
            f"the features reach {top:.3g}, too large to plot (beyond {PLOT_LIMIT:.0e}: a "
            "density over them overflows); rescale the features to draw them"
        )
    return None


@quiet_overflow
def boundary_figure(
    params: Params,
    X: np.ndarray,
    y: np.ndarray | None,
    path: str | os.PathLike[str],
    *,
    backend: Backend,
    title: str = "",
    history: list[tuple[int, float]] | None = None,
    x_range: tuple[float, float] = (-10.0, 10.0),
    max_points: int = 2000,
    activation: str | None = None,
    names: Sequence[str] | None = None,
) -> list[float]:
    """Write the model's figure to ``path`` and return the 0.5 crossings (D = 1).

    D = 1: both class densities (seaborn ``kdeplot``), a sample of the points at their
    label (jittered), and the predicted probability over ``x_range`` with the 0.5 crossing
    marked and labelled. D = 2: a probability heat map with the 0.5 contour. The axes are
    named by ``names`` (a data file's feature columns), else x / x0, x1. With a
    ``history``, a second panel shows the loss curve. Written atomically. The parameters
    say their activation (``activation`` only for a bare tuple of arrays).
    """
    from .validate import network

    params = network(params, activation)
    activation = params.activation
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.asarray(X, dtype=np.float64)
    y = None if y is None else np.asarray(y).reshape(-1)
    d = int(params[0].shape[0])
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"the model has {counted(d, 'feature')} but the data have shape {X.shape}")
    why = too_large_to_plot(X)
    if why is not None:
        raise ValueError(why)
    panels = (1 if d <= 2 else 0) + (1 if history else 0)
    if panels == 0:
        raise ValueError(f"nothing to draw: {counted(d, 'feature')} and no training history")
    fig, axes = plt.subplots(
        1, panels, figsize=(8 if panels == 1 else 13, 4.5), layout="constrained", squeeze=False
    )
    cross: list[float] = []
    shown = tuple(names) if names is not None and len(names) == d else None
    if d == 1:
        cross = _draw_boundary(
            axes[0, 0], params, X, y, backend, x_range, max_points, activation, shown or ("x",)
        )
    elif d == 2:
        _draw_heatmap(
            axes[0, 0], params, X, y, backend, max_points, activation, shown or ("x0", "x1")
        )
    if history:
        _draw_loss(axes[0, -1], history)
    # a "$" (in a file name, say) would start matplotlib's mathtext: shown as itself instead
    fig.suptitle((title or "nnbin: class densities and the decision boundary").replace("$", r"\$"))
    atomic_savefig(fig, path)
    plt.close(fig)
    return cross


def atomic_savefig(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save ``fig`` to ``path`` atomically (see :func:`nnbin.files.atomic_write`)."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=120))
