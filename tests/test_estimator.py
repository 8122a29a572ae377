"""The scikit-learn estimator: scikit-learn's own checks, pipelines, array-API inputs."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn not installed")

from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import nnbin  # noqa: E402
from nnbin.estimator import BinaryMLPClassifier  # noqa: E402

# Checks this estimator cannot meet, each with the reason.
EXPECTED_FAILED = {}


@parametrize_with_checks(
    [BinaryMLPClassifier(steps=50)], expected_failed_checks=lambda est: EXPECTED_FAILED
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _installed(*names):
    import importlib.util

    return [
        n
        for n in names
        if importlib.util.find_spec({"strict": "array_api_strict"}.get(n, n)) is not None
    ]


# Fitted on host (NumPy) data with any backend, the estimator predicts on host data: the
# same checks, with each other CPU backend doing the work.
# JAX without 64-bit mode (process-wide, never switched on by the API) trains float64 host
# data in float32: results then differ from a float64 fit by more than these checks allow.
JAX_FLOAT32 = {
    "check_array_api_input": "float64 host data train in float32 on JAX without x64",
    "check_array_api_mixed_inputs": "float64 host data train in float32 on JAX without x64",
    "check_methods_sample_order_invariance": "float32 sums in another order differ by ~1 ulp",
}


@parametrize_with_checks(
    [
        BinaryMLPClassifier(steps=20, backend=b)
        for b in _installed("strict", "jax", "torch", "dask")
    ],
    expected_failed_checks=lambda est: JAX_FLOAT32 if est.backend == "jax" else EXPECTED_FAILED,
)
def test_sklearn_estimator_checks_on_every_backend(estimator, check):
    check(estimator)


def test_any_two_labels_and_scores():
    X, y01 = nnbin.two_gaussians(n_per_class=200, seed=0)
    y = np.where(y01[:, 0] == 1, "cat", "dog")
    clf = BinaryMLPClassifier(steps=300).fit(X, y)
    assert list(clf.classes_) == ["cat", "dog"]
    proba = clf.predict_proba(X)
    assert proba.shape == (400, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(X)) <= {"cat", "dog"}
    assert clf.score(X, y) >= 0.99
    assert clf.decision_function(X).shape == (400,)


def test_pipeline_and_cross_validation():
    X, y = nnbin.two_gaussians(n_per_class=200, seed=1, n_features=2)
    pipe = make_pipeline(StandardScaler(), BinaryMLPClassifier(steps=200))
    scores = cross_val_score(pipe, X, y[:, 0], cv=3)
    assert scores.shape == (3,) and scores.min() >= 0.99


def test_get_set_params_roundtrip():
    clf = BinaryMLPClassifier(hidden=8)
    assert clf.get_params()["hidden"] == 8
    assert clf.set_params(lr=0.5).lr == 0.5


def test_more_than_two_classes_is_a_clear_error():
    X = np.arange(9.0).reshape(-1, 1)
    with pytest.raises(ValueError, match="Only binary classification"):
        BinaryMLPClassifier(steps=1).fit(X, [0, 1, 2] * 3)
    with pytest.raises(ValueError, match="exactly two classes"):
        BinaryMLPClassifier(steps=1).fit(X, [1] * 9)


@pytest.mark.parametrize("library", ["array_api_strict", "torch"])
def test_array_api_inputs_give_outputs_of_the_same_library(library):
    xp = pytest.importorskip(library)
    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    Xa, ya = xp.asarray(X), xp.asarray(y[:, 0])
    with sklearn.config_context(array_api_dispatch=True):
        clf = BinaryMLPClassifier(steps=200).fit(Xa, ya)
        proba, labels = clf.predict_proba(Xa), clf.predict(Xa)
    owner = nnbin.backend_of(proba)
    assert owner.name == ("strict" if library == "array_api_strict" else "torch")
    assert nnbin.backend_of(labels) is owner and nnbin.backend_of(clf.params_.W1) is owner
    ref = BinaryMLPClassifier(steps=200).fit(X, y[:, 0]).predict_proba(X)
    np.testing.assert_allclose(owner.to_host(proba), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", _installed("strict", "jax", "torch", "dask"))
def test_fitted_on_host_data_with_any_backend_it_predicts_on_host_data(backend):
    X, y = nnbin.two_gaussians(n_per_class=100, seed=1)
    clf = BinaryMLPClassifier(steps=200, backend=backend).fit(X, y[:, 0])
    for out in (clf.predict(X), clf.predict_proba(X), clf.decision_function(X)):
        assert isinstance(out, np.ndarray)
    assert clf.score(X, y[:, 0]) == 1.0
    assert isinstance(clf.weights_in_, np.ndarray)
    assert nnbin.backend_of(clf.params_.W1).name == backend  # it trained there
