"""Second oracle: central finite differences of the reference loss, in float64, against the
hand-written gradients, at random shapes."""

from __future__ import annotations

import numpy as np
import pytest

import nnbin

from . import reference as ref
from .helpers import NAMES, random_case
from .tolerances import relative_error, rtol


def fd_gradients(w, X, y):
    h = np.finfo(np.float64).eps ** (1 / 3)
    out = {}
    for name in NAMES:
        g = np.zeros_like(w[name])
        for idx in np.ndindex(w[name].shape):
            step = h * max(1.0, abs(w[name][idx]))
            plus = {k: v.copy() for k, v in w.items()}
            minus = {k: v.copy() for k, v in w.items()}
            plus[name][idx] += step
            minus[name][idx] -= step
            g[idx] = (ref.loss(plus, X, y) - ref.loss(minus, X, y)) / (2 * step)
        out[name] = g
    return out


@pytest.mark.parametrize("n,d,h", [(30, 1, 1), (57, 1, 32), (40, 3, 4), (25, 5, 9)])
def test_gradients_match_finite_differences(backend, n, d, h):
    if "float64" not in backend.dtypes:
        pytest.skip(f"{backend.name} has no float64")
    case = random_case(backend, "float64", n, d, h, seed=1000 + n)
    _, grads = nnbin.loss_and_grads(case.params, case.Xd, case.yd)
    fd = fd_gradients(case.w, case.X, case.y)
    for name, g in zip(NAMES, grads):
        err = relative_error(backend.to_host(g), fd[name])
        assert err <= rtol("float64", "fd"), f"d{name}: {err:.3g} from finite differences"
