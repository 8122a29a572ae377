"""The suite must fail on a broken backprop: bugs planted in a copy of nnbin's own backward
pass (its source, edited and executed as a new module) must each fail the gradient check."""

from __future__ import annotations

import inspect
import types

import pytest

import nnbin.backprop

from .helpers import check_gradients, random_case

MUTANTS = {
    "drop the sigmoid-derivative factor": ("s = h * (1.0 - h)", "s = xp.ones_like(h)"),
    "transpose the wrong operand": (
        "dW1 = ((X * dz).T @ s) * w2_row", "dW1 = (s.T @ (X * dz)) * w2_row"),
    "forget the 1/N": ("inv_n = 1.0 / n", "inv_n = 1.0"),
    "flip the sign of dL/dz": ("dz = sigmoid(xp, z) - y", "dz = y - sigmoid(xp, z)"),
    "drop W2 from the bias gradient": (
        "db1 = ((dz.T @ s) * w2_row)[0, ...]", "db1 = (dz.T @ s)[0, ...]"),
}


def mutant(old: str | None, new: str = "") -> types.ModuleType:
    """A fresh module from nnbin/backprop.py's source with ``old`` replaced by ``new``."""
    source = inspect.getsource(nnbin.backprop)
    if old is not None:
        assert source.count(old) == 1, f"the mutation site {old!r} is not in nnbin/backprop.py"
        source = source.replace(old, new)
    module = types.ModuleType("nnbin._mutant", nnbin.backprop.__doc__)
    module.__dict__["__package__"] = "nnbin"
    exec(compile(source, "<mutant of nnbin/backprop.py>", "exec"),
         module.__dict__)
    return module


def _case(backend):
    # D == H so that a wrongly transposed (H, D) gradient still has the (D, H) shape and
    # only its values can give it away.
    dtype = "float64" if "float64" in backend.dtypes else backend.dtypes[0]
    return random_case(backend, dtype, n=50, d=4, h=4, seed=3)


def test_unmutated_copy_passes(backend):
    """The machinery itself is sound: an unedited copy passes the same check."""
    check_gradients(_case(backend), mutant(None).loss_and_grads)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_planted_bug_is_caught(backend, name):
    old, new = MUTANTS[name]
    with pytest.raises(AssertionError):
        check_gradients(_case(backend), mutant(old, new).loss_and_grads)


# Bugs planted in the fused step's kernel source (backends with one: cupy), compiled and run
# on the device; the same sites are checked on the CPU by tests/test_fused_kernels.py.
KERNEL_MUTANTS = {
    "drop the sigmoid's derivative": ("((real)1 - h[j])", "((real)1)"),
    "drop the W2 scale of dW1": ("g *= W2[k % H_];", ""),
    "a shuffle tree one level short": ("offset > 0; offset /= 2", "offset > 1; offset /= 2"),
    "only the first warp's sums": ("w < WARPS_; ++w) s +=", "w < 1; ++w) s +="),
}


@pytest.mark.parametrize("name", [None, *KERNEL_MUTANTS])
def test_planted_kernel_bug_is_caught(backend, name, monkeypatch):
    if not getattr(backend, "has_fused", False):
        pytest.skip(f"{backend.name} has no fused step")
    if not hasattr(backend, "_modules"):
        pytest.skip("the kernels are mutated on the cupy backend (torch and jax reach the "
                    "same kernels through DLPack)")
    from nnbin_backends import cuda_fused

    original = cuda_fused.kernel_source

    def mutated(*args, **kwargs):
        source = original(*args, **kwargs)
        if name is None:
            return source
        old, new = KERNEL_MUTANTS[name]
        assert source.count(old) == 1, f"the mutation site {old!r} is not in the kernels"
        return source.replace(old, new)

    monkeypatch.setattr(cuda_fused, "kernel_source", mutated)
    monkeypatch.setattr(backend, "_modules", {})  # compiled afresh, restored afterwards
    case = random_case(backend, "float64", n=3000, d=4, h=4, seed=3)
    if name is None:  # the machinery is sound: the unedited source passes
        check_gradients(case, backend.fused_loss_and_grads)
        return
    with pytest.raises(AssertionError):
        check_gradients(case, backend.fused_loss_and_grads)
