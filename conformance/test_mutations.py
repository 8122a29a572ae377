"""The suite must fail on a broken backprop: bugs planted in a copy of nnbin's own backward
pass must each fail the gradient check.

A bug is planted in the module's syntax tree, not its text: the value assigned to one named
variable in one named function is replaced (``ast``), so reformatting or re-commenting
nnbin/model.py leaves every mutation site where it was. A site that is no longer there
(renamed, removed) fails with a message saying which."""

from __future__ import annotations

import ast
import inspect
import types

import pytest

import nnbin.model

from .helpers import check_gradients, random_case

# name -> (function, variable assigned there, the buggy expression assigned instead)
MUTANTS = {
    "drop the sigmoid-derivative factor": ("_block_grads", "s", "xp.ones_like(h)"),
    "transpose the wrong operand": ("_block_grads", "dWL", "dW_db[:d, ...].T"),
    "forget the 1/N": ("value_and_grads", "inv_n", "1.0"),
    "flip the sign of dL/dz": ("bce_dz", "dz", "y - sigmoid(xp, z)"),
    "drop W2 from the bias gradient": ("_block_grads", "dbL", "(outer.T @ s)[d, ...]"),
}


class _Plant(ast.NodeTransformer):
    """Replaces the value of ``variable = ...`` inside ``function``; counts the sites."""

    def __init__(self, function: str, variable: str, expression: str) -> None:
        self.function, self.variable = function, variable
        self.value = ast.parse(expression, mode="eval").body
        self.inside, self.sites = False, 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        outer, self.inside = self.inside, node.name == self.function
        self.generic_visit(node)
        self.inside = outer
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if self.inside and names == [self.variable]:
            self.sites += 1
            node.value = self.value
        return node


def mutant(site: tuple[str, str, str] | None = None) -> types.ModuleType:
    """A fresh module from nnbin/model.py's syntax tree, with the bug ``site`` planted.
    A site that is not there once is a LookupError, never an AssertionError: a planted-bug
    test expects the latter, and must not pass because its bug was never planted."""
    tree = ast.parse(inspect.getsource(nnbin.model))
    if site is not None:
        plant = _Plant(*site)
        tree = ast.fix_missing_locations(plant.visit(tree))
        if plant.sites != 1:
            raise LookupError(
                f"the mutation site {site[1]} = ... in {site[0]}() is "
                f"not in nnbin/model.py once ({plant.sites} found)"
            )
    module = types.ModuleType("nnbin._mutant", nnbin.model.__doc__)
    module.__dict__["__package__"] = "nnbin"
    exec(compile(tree, "<mutant of nnbin/model.py>", "exec"), module.__dict__)
    # the mutant's functions work on the real module's types (the parameters' classes)
    for name, value in vars(nnbin.model).items():
        if isinstance(value, type):
            module.__dict__[name] = value
    return module


def _case(backend):
    # D == H so that a wrongly transposed (H, D) gradient still has the (D, H) shape and
    # only its values can give it away.
    dtype = "float64" if "float64" in backend.dtypes else backend.dtypes[0]
    return random_case(backend, dtype, n=50, d=4, h=4, seed=3)


def test_unmutated_copy_passes(backend):
    """The machinery itself is sound: an unedited copy passes the same check."""
    check_gradients(_case(backend), mutant().value_and_grads)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_planted_bug_is_caught(backend, name):
    with pytest.raises(AssertionError):
        check_gradients(_case(backend), mutant(MUTANTS[name]).value_and_grads)


def test_mutation_sites_survive_reformatting(monkeypatch):
    """The same sites are found in a reformatted copy of the source (other line breaks,
    spacing and comments): what a formatter does cannot disable a mutant."""
    source = inspect.getsource(nnbin.model)
    reformatted = ast.unparse(ast.parse(source))  # no comments, other spacing and breaks
    assert reformatted != source
    monkeypatch.setattr(inspect, "getsource", lambda module: reformatted)
    for site in MUTANTS.values():
        mutant(site)  # each found exactly once
    with pytest.raises(LookupError, match=r"not in nnbin/model\.py once"):
        mutant(("_block_grads", "no_such_variable", "0"))


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
    if backend.runners.fused is None:
        pytest.skip(f"{backend.name} has no fused step")
    fused = backend.runners.fused
    if not hasattr(fused, "_modules"):
        pytest.skip(
            "the kernels are mutated on the cupy backend (torch and jax reach the "
            "same kernels through DLPack)"
        )
    from nnbin_backends.cuda import kernels as cuda_fused

    original = cuda_fused.source

    def mutated() -> str:
        source = original()
        if name is None:
            return source
        old, new = KERNEL_MUTANTS[name]
        assert source.count(old) == 1, f"the mutation site {old!r} is not in the kernels"
        return source.replace(old, new)

    monkeypatch.setattr(cuda_fused, "source", mutated)
    monkeypatch.setattr(fused, "_modules", {})  # compiled afresh, restored afterwards
    case = random_case(backend, "float64", n=3000, d=4, h=4, seed=3)
    if name is None:  # the machinery is sound: the unedited source passes
        check_gradients(case, fused.loss_and_grads)
        return
    with pytest.raises(AssertionError):
        check_gradients(case, fused.loss_and_grads)
