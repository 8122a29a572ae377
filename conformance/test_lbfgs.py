"""L-BFGS (``optimizer="lbfgs"``, scikit-learn's ``solver="lbfgs"``), per backend, against
two independent references: the reference's own L-BFGS (``reference.lbfgs_train``: flat
NumPy vectors, the same documented algorithm) iteration by iteration, and scipy's
L-BFGS-B on the reference's loss (the minimiser scikit-learn calls) for where a converged
run ends. Bugs planted in the two-loop recursion and in the line search must fail here.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnbin
import nnbin.lbfgs

from . import reference as ref
from .helpers import assert_close, rounded
from .test_network import _mutated_function

#: iterations compared one by one: L-BFGS's line search takes decisions on the loss, so
#: rounding differences may change a decision after many iterations (float32 sooner)
ITERATIONS = {"float64": 25, "float32": 6}


def _data(n: int = 120, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(0.0, 1.0, (n, d))
    y = ((X[:, :1] - 0.5 * X[:, 1:2] ** 2 + 0.4 * rng.normal(size=(n, 1))) > 0).astype(float)
    return X, y


def _start(dtype: str, hidden: tuple[int, ...], activation: str, d: int = 3) -> list:
    layers = ref.deep_weights(d, hidden, 5, activation, "glorot")
    return [{k: rounded(v, dtype) for k, v in layer.items()} for layer in layers]


def _nnbin_run(backend, dtype, X, y, layers, **options):
    params = [backend.asarray(a, dtype) for a in ref.flat(layers)]
    start = tuple(params)  # bare: the run names the activation
    hidden = tuple(int(layer["W"].shape[1]) for layer in layers[:-1])
    return nnbin.train(
        backend.asarray(X, dtype), backend.asarray(y, dtype), optimizer="lbfgs", hidden=hidden,
        params=start, log_every=1, **options,
    )  # fmt: skip


CASES = [("tanh", (6, 3), 0.01), ("relu", (5,), 0.0), ("sigmoid", (4,), 0.1)]


@pytest.mark.parametrize("activation,hidden,alpha", CASES, ids=lambda v: str(v))
def test_lbfgs_run_matches_reference(backend, dtype, activation, hidden, alpha):
    """Every iteration's loss and the final parameters of ``ITERATIONS[dtype]`` iterations
    (the evaluations the line searches made need not be counted alike: the loss says)."""
    X, y = _data()
    X = rounded(X, dtype)
    layers = _start(dtype, hidden, activation)
    steps = ITERATIONS[dtype]
    expected = ref.lbfgs_train(
        layers, X, y, activation=activation, alpha=alpha, max_iter=steps, tol=0.0
    )
    assert expected.iterations == steps and not expected.converged, "too easy a case"
    got = _nnbin_run(
        backend, dtype, X, y, layers, steps=steps, activation=activation, alpha=alpha, tol=0.0
    )
    assert got.n_iter == steps, got.message
    assert [s for s, _ in got.history] == list(range(steps))
    assert_close(
        backend, backend.asarray(np.array([v for _, v in got.history]), dtype),
        np.array(expected.losses), dtype=dtype, what="run", label="L-BFGS loss curve",
    )  # fmt: skip
    for i, (p, e) in enumerate(zip(got.params, expected.final)):
        assert_close(backend, p, e, dtype=dtype, what="run", label=f"L-BFGS parameter {i}")


def test_lbfgs_ends_where_scipy_does(backend):
    """A run to convergence (tol 1e-4, a strong penalty: one minimum near) ends at a loss no higher
    than scipy's L-BFGS-B reaches on the reference's loss from the same start (plus a
    hundredth of the distance it covered), predicting the same classes."""
    from scipy.optimize import minimize

    dtype = "float64" if "float64" in backend.dtypes else backend.dtypes[0]
    X, y = _data()
    X = rounded(X, dtype)
    layers = _start(dtype, (5,), "tanh")
    x0, fg, unflat = ref.flat_objective(layers, X, y, "tanh", 1.0)
    theirs = minimize(fg, x0, jac=True, method="L-BFGS-B", options={"maxiter": 200, "gtol": 1e-4})
    got = _nnbin_run(backend, dtype, X, y, layers, steps=200, activation="tanh", alpha=1.0)
    start = fg(x0)[0]
    assert got.message.startswith("CONVERGENCE") or got.n_iter == 200, got.message
    slack = 0.01 * (start - theirs.fun) + (1e-3 if dtype == "float32" else 0.0)
    assert got.final_loss <= theirs.fun + slack, (got.final_loss, theirs.fun)
    ours = ref.deep_forward(
        [
            {k: backend.to_host(v) for k, v in zip("Wb", pair)}
            for pair in zip(got.params[0::2], got.params[1::2])
        ],
        X,
        "tanh",
    )[2]
    scipys = ref.deep_forward(unflat(theirs.x), X, "tanh")[2]
    agree = np.mean((ours >= 0) == (scipys >= 0))
    assert agree >= 0.97, agree


LBFGS_MUTANTS = {
    # planted in nnbin.lbfgs: (function, the variable (None: its return value), the bug)
    "two-loop recursion": ("direction", "b", "rho * inner(s, q)"),
    "starting matrix": ("direction", "gamma", "1.0"),
    "curvature condition": ("_curved", None, "slope < 0.0"),
}


@pytest.mark.parametrize("planted", list(LBFGS_MUTANTS))
def test_planted_lbfgs_bug_is_caught(backend, monkeypatch, planted):
    """Each bug planted in nnbin's L-BFGS makes the comparison above fail."""
    function, variable, bug = LBFGS_MUTANTS[planted]
    fn = getattr(nnbin.lbfgs, function)
    monkeypatch.setattr(nnbin.lbfgs, function, _mutated_function(fn, variable, bug))
    dtype = "float64" if "float64" in backend.dtypes else backend.dtypes[0]
    with pytest.raises(AssertionError):
        test_lbfgs_run_matches_reference(backend, dtype, "tanh", (6, 3), 0.01)
