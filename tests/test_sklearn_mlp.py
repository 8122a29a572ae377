"""scikit-learn's own MLP tests, run on BinaryMLPClassifier: the one-word swap, as its users
would try it.

This module reads the installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py``
(scikit-learn ships its tests in the wheel), binds the name ``MLPClassifier`` to
:class:`nnbin.estimator.BinaryMLPClassifier` -- the one change to the file -- and runs its
tests here, with their own assertions, on each backend of ``BACKENDS`` that is installed.
It follows scikit-learn's releases: a test a new release ships runs here too.

What cannot apply to a binary classifier is left out, each with its reason (``left_out``):
``MLPRegressor``, multiclass and multilabel targets. Iris, a three-class data set that some
tests use only incidentally, is bound to its first two species, and the tests that loop
over ``classification_datasets`` get its binary data set alone (a parametrized multiclass
data set is left out). Tests of what the numpy backend alone does (``NUMPY_ONLY``: sparse X)
run on the other backends as strict expected failures that must raise nnbin's
InvalidInputError, the one error that says what to do instead.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("pandas")  # some of the tests importorskip it; one result everywhere

import nnbin.backend
from nnbin.estimator import BinaryMLPClassifier

_spec = importlib.util.find_spec("sklearn.neural_network")
assert _spec is not None and _spec.submodule_search_locations
SOURCE = Path(next(iter(_spec.submodule_search_locations))) / "tests" / "test_mlp.py"
if not SOURCE.is_file():
    pytest.skip(f"this scikit-learn has no {SOURCE} (tests not shipped)", allow_module_level=True)

#: the backends the tests run on (each skipped with a reason where it is not installed)
BACKENDS = ("numpy", "torch", "jax")

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"

#: tests of what the numpy backend alone does: on the others, strict expected failures
#: that must end in nnbin's one error saying what to do instead (InvalidInputError)
NUMPY_ONLY = {
    "test_sparse_matrices": "SciPy sparse X (kept sparse, densified a block of rows at a time)",
}
#: tests of an MLPClassifier that cannot apply to a binary classifier, and why
MULTICLASS = {
    "test_multilabel_classification": "multilabel targets",
    "test_predict_proba_multiclass": "a multiclass target",
    "test_predict_proba_multilabel": "multilabel targets",
    "test_partial_fit_unseen_classes": "four classes, built in the test",
    "test_mlp_early_stopping_string_labels": (
        "three string labels, built in the test (tests/test_estimator.py has the binary case)"
    ),
    "test_warm_start": "three to five classes, built in the test",
    "test_gradient": (
        "scikit-learn's private _loss_grad_lbfgs, on two and three classes (nnbin's gradients "
        "are checked against finite differences in conformance/)"
    ),
}


#: (test, solver) cases whose assertion does not hold on the binary data set for
#: scikit-learn's own MLPClassifier either (test_scikit_learns_own_fails_these shows it)
NOT_ON_BINARY = {
    ("test_mlp_warm_start_no_convergence", "lbfgs"): (
        "on the two-species iris L-BFGS converges before the second fit's max_iter=20, "
        "for scikit-learn's own MLPClassifier too: the test needs the three-class problem"
    ),
}


def _source() -> str:
    text = SOURCE.read_text(encoding="utf-8")
    if IMPORT not in text:  # the one change this module makes must still be possible
        raise AssertionError(f"{SOURCE} no longer has {IMPORT!r}: update {__file__}")
    return text.replace(
        IMPORT,
        "from sklearn.neural_network import MLPRegressor\n"
        "from nnbin.estimator import BinaryMLPClassifier as MLPClassifier",
    )


def _regressor_only(text: str) -> set[str]:
    """The tests whose code names MLPRegressor and not MLPClassifier."""
    names = set()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if "MLPRegressor" in used and "MLPClassifier" not in used:
                names.add(node.name)
    return names


_text = _source()
REGRESSOR_ONLY = _regressor_only(_text)
# scikit-learn's tests, defined in this module's namespace (pytest collects them from here);
# tracebacks point into scikit-learn's file
exec(compile(_text, str(SOURCE), "exec"), globals())

# the three-class data sets the tests use incidentally, bound to binary versions: the tests
# read these names when they run
_two = y_iris < 2  # type: ignore[name-defined]  # noqa: F821
X_iris, y_iris = X_iris[_two], y_iris[_two]  # type: ignore[name-defined]  # noqa: F821
classification_datasets = [  # type: ignore[no-redef]
    (X, y)
    for X, y in classification_datasets  # type: ignore[has-type]  # noqa: F821
    if np.unique(y).size == 2
]
assert MLPClassifier is BinaryMLPClassifier  # type: ignore[name-defined]  # noqa: F821


def left_out(name: str, params: dict) -> str | None:
    """Why the test ``name`` with these parameters cannot apply (None: it runs)."""
    if name in REGRESSOR_ONLY:
        return "MLPRegressor only"
    if name in MULTICLASS:
        return MULTICLASS[name]
    if any(v is MLPRegressor for v in params.values()):  # type: ignore[name-defined]  # noqa: F821
        return "the MLPRegressor case"
    if (name, params.get("solver")) in NOT_ON_BINARY:
        return NOT_ON_BINARY[name, params.get("solver")]
    y = params.get("y")
    if y is not None and np.unique(y).size > 2:
        return "the multiclass data set (its binary one runs)"
    return None


@pytest.fixture(autouse=True, params=BACKENDS)
def nnbin_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on one backend (``NNBIN_BACKEND``: the estimator's default), or left out
    with its reason, or run as an expected failure."""
    node = request.node
    params = dict(node.callspec.params) if hasattr(node, "callspec") else {}
    params.pop("nnbin_backend", None)
    reason = left_out(node.originalname, params)
    if reason is not None:
        pytest.skip(f"not for a binary classifier: {reason}")
    backend = request.param
    try:
        be = nnbin.backend.get_backend(backend)
    except nnbin.NnbinError as e:
        pytest.skip(f"{backend}: {e}")
    if backend == "jax":
        be.tools.enable_dtype("float64")  # float64 data train in float64, as with NumPy
    monkeypatch.setenv(nnbin.backend.ENV_VAR, backend)
    why = NUMPY_ONLY.get(node.originalname)
    if why is not None and backend != "numpy":
        reason = f"the numpy backend alone trains on {why}; {backend} says to pass X.toarray()"
        node.add_marker(
            pytest.mark.xfail(reason=reason, strict=True, raises=nnbin.InvalidInputError)
        )
    return backend


def test_the_swap_is_one_name():
    """The tests above are scikit-learn's, with MLPClassifier bound to BinaryMLPClassifier."""
    ran = [n for n in globals() if n.startswith("test_") and n != "test_the_swap_is_one_name"]
    assert len(ran) >= 30, ran  # scikit-learn 1.9.1 ships 43
    assert os.path.samefile(test_fit.__code__.co_filename, SOURCE)  # type: ignore[name-defined]  # noqa: F821


def test_scikit_learns_own_fails_these():
    """What NOT_ON_BINARY leaves out fails for scikit-learn's MLPClassifier on the same
    binary data: the second warm fit converges before its max_iter=20."""
    from sklearn.neural_network import MLPClassifier as Theirs

    model = Theirs(solver="lbfgs", warm_start=True, max_iter=10, random_state=0)
    with pytest.warns(Warning):
        model.fit(X_iris, y_iris)
    model.set_params(max_iter=20)
    model.fit(X_iris, y_iris)
    assert model.n_iter_ < 20
