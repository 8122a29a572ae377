from __future__ import annotations

import numpy as np
import pytest

import nnbin
from nnbin import plot
from nnbin.plot import crossings


def test_crossings_interpolates_linearly():
    x = np.linspace(-1, 1, 5)
    assert crossings(x, np.array([0.0, 0.2, 0.4, 0.6, 1.0])) == pytest.approx([0.25])
    assert crossings(x, np.full(5, 0.9)) == []
    assert len(crossings(x, np.array([0.0, 1.0, 0.0, 1.0, 0.0]))) == 4


def test_figure_is_written_atomically(tmp_path, monkeypatch):
    """A failed save leaves the previous figure in place and no temporary file behind."""
    pytest.importorskip("matplotlib")
    import nnbin
    from nnbin.plot import boundary_figure

    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p = nnbin.init_params(1, 4, 0)
    path = tmp_path / "fig.png"
    path.write_bytes(b"previous")
    import matplotlib.figure

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(OSError):
        boundary_figure(p, X, y, path, backend=nnbin.get_backend("numpy"))
    assert path.read_bytes() == b"previous"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["fig.png"]


@pytest.mark.parametrize("d", [1, 2])
def test_the_figure_never_builds_a_whole_grid_by_hidden_array(tmp_path, d):
    """The probability curve (801 points) and heat map (40,000 points) are worked out in
    blocks: with H = 2,048 a whole (40,000, H) float64 array would be 655 MB."""
    import tracemalloc

    X, y = nnbin.two_gaussians(n_per_class=500, seed=0, n_features=d)
    p = nnbin.init_params(d, 2048, 0)
    be = nnbin.get_backend("numpy")
    tracemalloc.start()
    try:
        plot.boundary_figure(p, X, y, tmp_path / "f.png", backend=be)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "f.png").stat().st_size > 0
    assert peak < 0.25 * 801 * 2048 * 8 * (50 if d == 2 else 1), peak


def test_the_density_of_a_large_class_is_drawn_from_a_bounded_sample(monkeypatch, tmp_path):
    X, y = nnbin.two_gaussians(n_per_class=3000, seed=0)
    sizes = []
    import seaborn as sns

    real = sns.kdeplot
    monkeypatch.setattr(sns, "kdeplot", lambda **kw: sizes.append(kw["x"].size) or real(**kw))
    monkeypatch.setattr(plot, "KDE_SAMPLES", 1000)
    plot.boundary_figure(
        nnbin.init_params(1, 4, 0), X, y, tmp_path / "f.png", backend=nnbin.get_backend("numpy")
    )
    assert sizes == [1000, 1000]


def test_the_axes_are_named_by_the_data_files_columns(tmp_path, monkeypatch):
    """nnbin train --data with columns height,weight: the heat map's axes say so (x0/x1
    only where the data have no names)."""
    pytest.importorskip("matplotlib")
    from nnbin.cli import main

    seen = []
    real = plot.atomic_savefig

    def keep(fig, path):
        seen.append([(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes])
        real(fig, path)

    monkeypatch.setattr(plot, "atomic_savefig", keep)
    X, y = nnbin.two_gaussians(n_per_class=30, seed=0, n_features=2)
    data = tmp_path / "hw.csv"
    np.savetxt(
        data, np.column_stack([X, y]), delimiter=",", header="height,weight,label", comments=""
    )
    out = tmp_path / "f.png"
    assert main(["train", "--data", str(data), "--steps", "5", "--quiet", "--plot", str(out)]) == 0
    assert ("height", "weight") in seen[-1]
    model = tmp_path / "m.safetensors"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--steps",
                "5",
                "--quiet",
                "--no-plot",
                "--save",
                str(model),
            ]
        )
        == 0
    )
    assert main(["plot", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    assert ("height", "weight") in seen[-1]
    one = tmp_path / "one.csv"
    X1, y1 = nnbin.two_gaussians(n_per_class=30, seed=0)
    np.savetxt(one, np.column_stack([X1, y1]), delimiter=",", header="age,label", comments="")
    assert main(["train", "--data", str(one), "--steps", "5", "--quiet", "--plot", str(out)]) == 0
    assert seen[-1][0][0] == "age"
