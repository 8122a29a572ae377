from __future__ import annotations

import numpy as np
import pytest

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
