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
    loss = nnbin.loss(nnbin.Params(*leaves, activation="sigmoid"), case.Xd, case.yd)
    auto = torch.autograd.grad(loss, leaves)
    with torch.no_grad():
        _, hand = nnbin.loss_and_grads(case.params, case.Xd, case.yd)
    for name, a, g in zip(NAMES, auto, hand):
        err = relative_error(be.to_host(g), be.to_host(a))
        assert err <= rtol("float64", "op"), f"d{name}: {err:.3g} from torch.autograd"


DEEP = [(5,), (7, 3), (5, 3, 7)]  # 1, 2 and 3 hidden layers, odd widths


def _deep_params(be, d, hidden, seed):
    rng = np.random.default_rng(seed)
    sizes = [d, *hidden, 1]
    flat = []
    for i in range(len(sizes) - 1):
        flat += [rng.normal(0, 1, (sizes[i], sizes[i + 1])), rng.normal(0, 0.5, (sizes[i + 1],))]
    X = rng.normal(0, 1.5, (45, d))
    y = (rng.random((45, 1)) < 0.5).astype(np.float64)
    put = [be.asarray(a, "float64") for a in flat]
    return tuple(put), be.asarray(X, "float64"), be.asarray(y, "float64")


@pytest.mark.parametrize("hidden", DEEP, ids=lambda h: "H" + "-".join(map(str, h)))
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_deep_gradients_match_jax_grad(activation, hidden):
    jax = pytest.importorskip("jax", reason="JAX not installed: no jax.grad oracle")
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    be = nnbin.get_backend("jax")
    params, X, y = _deep_params(be, 3, hidden, seed=len(hidden))

    def loss(p):
        return nnbin.loss(p, X, y, activation=activation, alpha=0.4)

    auto = jax.grad(loss)(params)
    _, hand = nnbin.loss_and_grads(params, X, y, activation=activation, alpha=0.4)
    for k, (a, g) in enumerate(zip(auto, hand)):
        err = relative_error(np.asarray(g), np.asarray(a, dtype=np.float64))
        assert err <= rtol("float64", "op"), f"parameter {k}: {err:.3g} from jax.grad"


@pytest.mark.parametrize("hidden", DEEP, ids=lambda h: "H" + "-".join(map(str, h)))
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_deep_gradients_match_torch_autograd(activation, hidden):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: no autograd oracle")
    be = nnbin.get_backend("torch")
    params, X, y = _deep_params(be, 3, hidden, seed=10 + len(hidden))
    leaves = [p.clone().requires_grad_(True) for p in params]
    loss = nnbin.loss(tuple(leaves), X, y, activation=activation, alpha=0.4)
    auto = torch.autograd.grad(loss, leaves)
    with torch.no_grad():
        _, hand = nnbin.loss_and_grads(params, X, y, activation=activation, alpha=0.4)
    for k, (a, g) in enumerate(zip(auto, hand)):
        err = relative_error(be.to_host(g), be.to_host(a))
        assert err <= rtol("float64", "op"), f"parameter {k}: {err:.3g} from torch.autograd"
