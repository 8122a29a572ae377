"""Third oracle: automatic differentiation of nnbin's own loss (float64, several shapes)
against the hand-written gradients. jax.grad where JAX is installed."""

from __future__ import annotations

import numpy as np
import pytest

import nnbin

from .helpers import NAMES, random_case
from .tolerances import relative_error, rtol

SHAPES = [(30, 1, 1), (200, 1, 32), (64, 3, 7), (50, 6, 16)]


@pytest.mark.parametrize("n,d,h", SHAPES)
def test_hand_written_gradients_match_jax_grad(n, d, h):
    jax = pytest.importorskip("jax", reason="JAX not installed: no jax.grad oracle")
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    be = nnbin.get_backend("jax")
    case = random_case(be, "float64", n, d, h, seed=77 + n)
    auto = jax.grad(nnbin.loss)(case.params, case.Xd, case.yd)
    _, hand = nnbin.loss_and_grads(case.params, case.Xd, case.yd)
    for name, a, g in zip(NAMES, auto, hand):
        err = relative_error(np.asarray(g), np.asarray(a, dtype=np.float64))
        assert err <= rtol("float64", "op"), f"d{name}: {err:.3g} from jax.grad"


@pytest.mark.parametrize("n,d,h", SHAPES)
def test_hand_written_gradients_match_torch_autograd(n, d, h):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: no autograd oracle")
    be = nnbin.get_backend("torch")
    case = random_case(be, "float64", n, d, h, seed=99 + n)
    leaves = [p.clone().requires_grad_(True) for p in case.params]
    loss = nnbin.loss(nnbin.Params(*leaves), case.Xd, case.yd)
    auto = torch.autograd.grad(loss, leaves)
    with torch.no_grad():
        _, hand = nnbin.loss_and_grads(case.params, case.Xd, case.yd)
    for name, a, g in zip(NAMES, auto, hand):
        err = relative_error(be.to_host(g), be.to_host(a))
        assert err <= rtol("float64", "op"), f"d{name}: {err:.3g} from torch.autograd"
