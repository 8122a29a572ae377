"""nnbin.lbfgs on its own: the line search meets the strong Wolfe conditions, the minimiser
finds a known minimum, the stopping rules count as scikit-learn's, the options that cannot
act with L-BFGS are refused, and the estimator's held-out accuracy is scikit-learn's.
(Whole runs against independent references, per backend: conformance/test_lbfgs.py.)"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nnbin
from nnbin import lbfgs


def _numpy_stepper(f_and_g, x0, **kwargs):
    """An L-BFGS minimiser on a one-leaf pytree of NumPy arrays."""

    def objective(params):
        f, g = f_and_g(params[0])
        return np.asarray(f), (g,)

    def evaluate(params, d, t):
        return lbfgs.evaluate(objective, params, d, t)

    return lbfgs.Lbfgs(
        (np.asarray(x0, float),), evaluate, read=lambda a: [float(v) for v in a], **kwargs
    )


def _rosenbrock(x):
    a, b = x[0], x[1]
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return f, g


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_line_search_meets_the_strong_wolfe_conditions(scale):
    """Along the steepest descent of Rosenbrock's function from three points, with trial
    steps far too short and far too long: the step returned meets both conditions."""
    for x0 in ([-1.2, 1.0], [2.0, -1.0], [0.0, 3.0]):
        x = np.array(x0)
        f0, g0 = _rosenbrock(x)
        d = -g0 / np.linalg.norm(g0)
        slope0 = float(g0 @ d)

        def at(t, x=x, d=d):
            f, g = _rosenbrock(x + t * d)
            return float(f), float(g @ d)

        t = lbfgs.line_search(at, float(f0), slope0, scale)
        assert t is not None and t > 0
        f, slope = at(t)
        assert f <= f0 + lbfgs.C1 * t * slope0
        assert abs(slope) <= -lbfgs.C2 * slope0


def test_line_search_steps_back_from_non_finite_losses():
    def at(t):  # finite only for t < 1; minimum at 0.5
        return (math.inf, math.nan) if t >= 1.0 else ((t - 0.5) ** 2, 2 * (t - 0.5))

    t = lbfgs.line_search(at, 0.25, -1.0, 4.0)
    assert t is not None and 0 < t < 1


def test_minimises_rosenbrocks_function():
    stepper = _numpy_stepper(_rosenbrock, [-1.2, 1.0], tol=1e-8)
    for _ in range(200):
        message = stepper.iterate()
        if message:
            break
    assert message.startswith("CONVERGENCE"), message
    np.testing.assert_allclose(stepper.params[0], [1.0, 1.0], atol=1e-4)


def test_max_fun_stops_after_the_iteration_that_passes_it():
    """As scipy's L-BFGS-B counts (scikit-learn's max_fun): the run ends after the first
    iteration with more than max_fun evaluations made, and not before."""
    stepper = _numpy_stepper(_rosenbrock, [-1.2, 1.0], tol=0.0, max_fun=15)
    counts = []
    while True:
        message = stepper.iterate()
        counts.append(stepper.n_fun)
        if message:
            break
    assert message == lbfgs.EVALUATION_LIMIT
    assert counts[-1] > 15 and all(c <= 15 for c in counts[:-1])


def test_converged_at_the_start_runs_no_iteration():
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    result = nnbin.train(X, y, optimizer="lbfgs", hidden=3, steps=50, tol=1e9)
    assert result.n_iter == 0 and result.message == lbfgs.CONVERGED_GRADIENT
    assert len(result.history) == 1  # the starting loss


@pytest.mark.parametrize(
    "option",
    [dict(lr=0.5), dict(batch_size=8), dict(early_stopping=True), dict(n_iter_no_change=3)],
    ids=lambda o: next(iter(o)),
)
def test_options_that_cannot_act_with_lbfgs_are_refused(option):
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    with pytest.raises(nnbin.InvalidInputError, match="cannot take effect with optimizer='lbfgs'"):
        nnbin.train(X, y, optimizer="lbfgs", **option)


def test_max_fun_acts_only_with_lbfgs():
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    with pytest.raises(nnbin.InvalidInputError, match=r"max_fun=10 .* acts only with optimizer"):
        nnbin.train(X, y, max_fun=10)


def test_cli_trains_with_lbfgs(tmp_path, capsys):
    from nnbin.cli import main

    out = tmp_path / "m.safetensors"
    assert main(["train", "--optimizer", "lbfgs", "--steps", "30", "--log-every", "10",
                 "--hidden", "4", "--no-plot", "--save", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "L-BFGS ended after" in printed and "CONVERGENCE" in printed, printed
    assert "epochs" not in printed, printed  # not the stopping rule's words
    assert out.is_file()


def test_held_out_accuracy_within_a_point_of_scikit_learns():
    """BinaryMLPClassifier(solver='lbfgs') beside MLPClassifier(solver='lbfgs'), the same
    parameters, on four data sets: mean held-out accuracy within one point."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    ours, theirs = [], []
    for seed in range(4):
        X, y = make_classification(600, 10, n_informative=5, random_state=seed)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0)
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        kw = dict(solver="lbfgs", hidden_layer_sizes=(20,), alpha=1.0, max_iter=300, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # both stop at max_iter
            ours.append(nnbin.BinaryMLPClassifier(**kw).fit(Xtr, ytr).score(Xte, yte))
            theirs.append(MLPClassifier(**kw).fit(Xtr, ytr).score(Xte, yte))
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.01, (ours, theirs)
