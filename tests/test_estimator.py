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

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Checks this estimator cannot meet, each with the reason.
EXPECTED_FAILED = {}


@parametrize_with_checks(
    [BinaryMLPClassifier(max_iter=50)], expected_failed_checks=lambda est: EXPECTED_FAILED
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
    "check_sample_weight_equivalence_on_dense_data": (
        "float32: weighted sums and repeated rows round differently (~1e-6 relative)"
    ),
}


@parametrize_with_checks(
    [
        BinaryMLPClassifier(max_iter=20, backend=b)
        # not dask: ~75 ms of scheduling a mini-batch makes its ~60 fits minutes long; a dask
        # fit is checked below (test_fitted_on_host_data_with_any_backend_...)
        for b in _installed("strict", "jax", "torch")
    ],
    expected_failed_checks=lambda est: JAX_FLOAT32 if est.backend == "jax" else EXPECTED_FAILED,
)
def test_sklearn_estimator_checks_on_every_backend(estimator, check):
    check(estimator)


def test_any_two_labels_and_scores():
    X, y01 = nnbin.two_gaussians(n_per_class=200, seed=0)
    y = np.where(y01[:, 0] == 1, "cat", "dog")
    clf = BinaryMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    assert list(clf.classes_) == ["cat", "dog"]
    proba = clf.predict_proba(X)
    assert proba.shape == (400, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(X)) <= {"cat", "dog"}
    assert clf.score(X, y) >= 0.99
    assert clf.decision_function(X).shape == (400,)


def test_pipeline_and_cross_validation():
    X, y = nnbin.two_gaussians(n_per_class=200, seed=1, n_features=2)
    pipe = make_pipeline(StandardScaler(), BinaryMLPClassifier(max_iter=200, random_state=0))
    scores = cross_val_score(pipe, X, y[:, 0], cv=3)
    assert scores.shape == (3,) and scores.min() >= 0.99


def test_get_set_params_roundtrip():
    clf = BinaryMLPClassifier(hidden_layer_sizes=(8,))
    assert clf.get_params()["hidden_layer_sizes"] == (8,)
    assert clf.set_params(learning_rate_init=0.5).learning_rate_init == 0.5


def test_more_than_two_classes_is_a_clear_error():
    X = np.arange(9.0).reshape(-1, 1)
    with pytest.raises(ValueError, match="Only binary classification"):
        BinaryMLPClassifier(max_iter=1).fit(X, [0, 1, 2] * 3)
    assert list(BinaryMLPClassifier(max_iter=1).fit(X, [1] * 9).classes_) == [1]  # as theirs


@pytest.mark.parametrize("library", ["array_api_strict", "torch"])
def test_array_api_inputs_give_outputs_of_the_same_library(library):
    xp = pytest.importorskip(library)
    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    Xa, ya = xp.asarray(X), xp.asarray(y[:, 0])
    with sklearn.config_context(array_api_dispatch=True):
        clf = BinaryMLPClassifier(max_iter=200, random_state=0).fit(Xa, ya)
        proba, labels = clf.predict_proba(Xa), clf.predict(Xa)
    owner = nnbin.backend_of(proba)
    assert owner.name == ("strict" if library == "array_api_strict" else "torch")
    assert nnbin.backend_of(labels) is owner and nnbin.backend_of(clf.params_[0]) is owner
    ref = BinaryMLPClassifier(max_iter=200, random_state=0).fit(X, y[:, 0]).predict_proba(X)
    np.testing.assert_allclose(owner.to_host(proba), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", _installed("strict", "jax", "torch", "dask"))
def test_fitted_on_host_data_with_any_backend_it_predicts_on_host_data(backend):
    X, y = nnbin.two_gaussians(n_per_class=100, seed=1)
    clf = BinaryMLPClassifier(max_iter=200, random_state=0, backend=backend).fit(X, y[:, 0])
    for out in (clf.predict(X), clf.predict_proba(X), clf.decision_function(X)):
        assert isinstance(out, np.ndarray)
    assert clf.score(X, y[:, 0]) == 1.0
    assert isinstance(clf.weights_in_, np.ndarray)
    assert nnbin.backend_of(clf.params_[0]).name == backend  # it trained there


def test_takes_mlpclassifiers_parameters_and_defaults():
    """Every MLPClassifier parameter is one of ours, with the same default: a swap in a
    binary task is one word."""
    import inspect

    from sklearn.neural_network import MLPClassifier

    theirs = MLPClassifier().get_params()
    ours = BinaryMLPClassifier().get_params()
    assert set(theirs) <= set(ours)
    for name, value in theirs.items():
        assert ours[name] == value or (
            name == "hidden_layer_sizes" and tuple(ours[name]) == value
        ), name
    assert set(ours) - set(theirs) == {"backend", "dtype", "cuda_graphs"}
    assert "random_state" in inspect.signature(BinaryMLPClassifier).parameters


def _breast_cancer(scaled):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0, stratify=y)
    if scaled:
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    return Xtr, Xte, ytr, yte


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "standardised"])
def test_breast_cancer_as_a_new_user_tries_it(scaled):
    """Defaults that do not collapse on unscaled features (the seed job's step size 1 and
    sigmoid units predicted the majority class, 0.63); within a point or two of
    MLPClassifier, which scores 0.92 raw and 0.95 standardised here."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    Xtr, Xte, ytr, yte = _breast_cancer(scaled)
    theirs = MLPClassifier(random_state=0).fit(Xtr, ytr).score(Xte, yte)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*collapsed")
        ours = BinaryMLPClassifier(random_state=0).fit(Xtr, ytr)
    assert ours.score(Xte, yte) >= theirs - 0.02
    assert len(ours.loss_curve_) == ours.n_iter_ and ours.best_loss_ == min(ours.loss_curve_)


def test_collapse_to_one_class_is_reported():
    Xtr, _, ytr, _ = _breast_cancer(False)
    # the seed job's settings on unscaled features: the sigmoid units saturate
    clf = BinaryMLPClassifier(
        activation="logistic",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=1.0,
        batch_size=len(ytr),
        max_iter=30,
        random_state=0,
    )
    with pytest.warns(UserWarning, match="training collapsed.*unscaled features"):
        clf.fit(Xtr, ytr)
    assert len(set(clf.predict(Xtr))) == 1


def test_lbfgs_fits_and_says_when_it_did_not_converge():
    """solver='lbfgs' trains (full batch, batch_size ignored as scikit-learn ignores it);
    loss_ is the loss where it ended; a run cut by max_iter warns in scikit-learn's words."""
    X, y = nnbin.two_gaussians(n_per_class=40, seed=0)
    clf = BinaryMLPClassifier(solver="lbfgs", hidden_layer_sizes=(4,), batch_size=7,
                              learning_rate_init=0.5, random_state=0).fit(X, y[:, 0])  # fmt: skip
    assert clf.score(X, y[:, 0]) == 1.0 and clf.n_iter_ < 200
    assert "L-BFGS" in clf.loop_ and not hasattr(clf, "_optimizer")
    warning = sklearn.exceptions.ConvergenceWarning
    with pytest.warns(warning, match=r"lbfgs failed to converge after 2 iter"):
        cut = BinaryMLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, y[:, 0])
    assert cut.n_iter_ == 2 and cut.loss_ == pytest.approx(cut.final_loss_)


def test_early_stopping_attributes():
    X, y = nnbin.two_gaussians(n_per_class=300, seed=2, n_features=2)
    clf = BinaryMLPClassifier(
        hidden_layer_sizes=(16, 8),
        early_stopping=True,
        n_iter_no_change=5,
        random_state=0,
        max_iter=500,
        learning_rate_init=0.01,
    ).fit(X, y[:, 0])
    assert clf.n_iter_ < 500 and clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert [c.shape for c in clf.coefs_] == [(2, 16), (16, 8), (8, 1)]
    assert clf.n_layers_ == 4 and clf.out_activation_ == "logistic"


def test_partial_fit_continues_the_optimizer():
    """partial_fit = one epoch a call, with Adam's moments carried: two calls of one epoch
    give what one fit of two epochs gives (full batch, so no shuffle is involved)."""
    X, y = nnbin.two_gaussians(n_per_class=100, seed=3)
    kw = {"hidden_layer_sizes": (6,), "batch_size": 200, "random_state": 1}
    inc = BinaryMLPClassifier(**kw)
    with pytest.raises(ValueError, match="exactly two labels"):
        BinaryMLPClassifier(**kw).partial_fit(X[:5], y[:5, 0], classes=[0, 1, 2])
    inc.partial_fit(X, y[:, 0], classes=[0, 1])
    inc.partial_fit(X, y[:, 0])
    whole = BinaryMLPClassifier(max_iter=2, n_iter_no_change=100, **kw).fit(X, y[:, 0])
    assert inc.n_iter_ == 2 and inc.t_ == 400 and len(inc.loss_curve_) == 2
    for a, b in zip(inc.coefs_, whole.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(inc.loss_curve_, whole.loss_curve_, rtol=1e-12)


def test_warm_start_starts_from_the_fitted_parameters():
    X, y = nnbin.two_gaussians(n_per_class=100, seed=4)
    clf = BinaryMLPClassifier(
        hidden_layer_sizes=(5,),
        max_iter=50,
        learning_rate_init=0.05,
        random_state=0,
        warm_start=True,
    )
    first = clf.fit(X, y[:, 0]).loss_curve_[-1]
    second = clf.fit(X, y[:, 0]).loss_curve_[50]  # the curve goes on: the second fit's first
    assert second < first * 1.01  # continued, not restarted from the initial weights


# --- the one-word swap: what scikit-learn's MLPClassifier does, point by point -------------


def _data(n=100, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def test_predict_log_proba_is_the_log_of_predict_proba_and_finite_when_it_saturates():
    X, y = _data()
    clf = BinaryMLPClassifier(max_iter=30, random_state=0).fit(X, y)
    np.testing.assert_allclose(
        clf.predict_log_proba(X), np.log(clf.predict_proba(X)), rtol=1e-9, atol=1e-12
    )
    far = np.full((2, 3), 1e4) * np.array([[1.0], [-1.0]])  # probabilities round to 0 and 1
    log_p = clf.predict_log_proba(far)
    assert np.all(np.isfinite(log_p)) and np.all(log_p <= 0)
    sk = sklearn.neural_network.MLPClassifier(max_iter=30, random_state=0).fit(X, y)
    assert clf.predict_log_proba(X).shape == sk.predict_log_proba(X).shape


def test_warm_start_fits_accumulate_the_curve_and_t_as_scikit_learn_does():
    X, y = _data()
    ours = BinaryMLPClassifier(max_iter=3, warm_start=True, random_state=0)
    theirs = sklearn.neural_network.MLPClassifier(max_iter=3, warm_start=True, random_state=0)
    for clf in (ours, theirs):
        clf.fit(X, y).fit(X, y)  # scikit-learn 1.9: the curve and t_ go on, n_iter_ is 3
        assert len(clf.loss_curve_) == 6 and clf.n_iter_ == 3 and clf.t_ == 600
        assert clf.loss_ == clf.loss_curve_[-1]
    cold = BinaryMLPClassifier(max_iter=3, random_state=0).fit(X, y).fit(X, y)
    assert len(cold.loss_curve_) == 3 and cold.n_iter_ == 3 and cold.t_ == 300


@pytest.mark.parametrize("verbose", [0, 1, 10, True, False])
def test_verbose_takes_scikit_learns_integers(verbose, capsys):
    X, y = _data()
    BinaryMLPClassifier(max_iter=2, verbose=verbose, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    if verbose:
        assert out.count("Iteration ") == 2 and "loss = " in out
    else:
        assert out == ""


@pytest.mark.parametrize("bad", [-1, 2.5, "yes"])
def test_verbose_refuses_what_scikit_learn_refuses(bad):
    X, y = _data()
    with pytest.raises(nnbin.InvalidInputError, match="verbose must be"):
        BinaryMLPClassifier(max_iter=1, verbose=bad).fit(X, y)


def test_n_iter_no_change_inf_never_stops_on_the_rule():
    X, y = _data()
    clf = BinaryMLPClassifier(max_iter=25, n_iter_no_change=np.inf, tol=1e9, random_state=0)
    assert clf.fit(X, y).n_iter_ == 25  # a tol no epoch can meet: only inf keeps it going
    stops = BinaryMLPClassifier(max_iter=25, n_iter_no_change=2, tol=1e9, random_state=0)
    theirs = sklearn.neural_network.MLPClassifier(
        max_iter=25, n_iter_no_change=2, tol=1e9, random_state=0
    )
    assert stops.fit(X, y).n_iter_ == theirs.fit(X, y).n_iter_ == 4
    early = BinaryMLPClassifier(
        max_iter=12, n_iter_no_change=np.inf, tol=1e9, early_stopping=True, random_state=0
    )
    assert early.fit(X, y).n_iter_ == 12


def test_partial_fit_refuses_early_stopping_and_other_classes_as_scikit_learn_does():
    X, y = _data()
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        BinaryMLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError):  # scikit-learn's own refuses it too
        sklearn.neural_network.MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])
    clf = BinaryMLPClassifier(random_state=0).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"classes=\[0, 2\] is not the same as on the first"):
        clf.partial_fit(X, y, classes=[0, 2])
    clf.partial_fit(X, y, classes=[1, 0])  # the same classes, in any order
    assert clf.n_iter_ == 2


def test_assigned_coefs_and_intercepts_are_where_the_next_fit_starts():
    """scikit-learn's test_fit assigns coefs_ and intercepts_ and calls partial_fit: the
    update starts from them (and a warm fit too), not from the weights fitted before."""
    X, y = _data()
    clf = BinaryMLPClassifier(hidden_layer_sizes=(3,), random_state=0, learning_rate_init=0.1)
    clf.partial_fit(X, y, classes=[0, 1])
    W1 = np.full((3, 3), 0.1)
    clf.coefs_ = [W1, np.full((3, 1), 0.2)]
    clf.intercepts_ = [np.zeros(3), np.zeros(1)]
    fresh = BinaryMLPClassifier(hidden_layer_sizes=(3,), random_state=0, learning_rate_init=0.1)
    fresh.partial_fit(X, y, classes=[0, 1])
    fresh.params_ = nnbin.Params(
        W1, np.zeros(3), np.full((3, 1), 0.2), np.zeros(1), activation="relu"
    )
    fresh.coefs_ = [W1, np.full((3, 1), 0.2)]
    fresh.intercepts_ = [np.zeros(3), np.zeros(1)]
    for est in (clf, fresh):
        est.partial_fit(X, y)
    np.testing.assert_allclose(clf.coefs_[0], fresh.coefs_[0], rtol=1e-12)
    assert not np.allclose(clf.coefs_[0], W1)  # trained on from the assigned weights
    wrong = BinaryMLPClassifier(hidden_layer_sizes=(3,), random_state=0).fit(X, y)
    wrong.set_params(warm_start=True)
    wrong.coefs_ = [np.ones((3, 4)), np.ones((4, 1))]
    wrong.intercepts_ = [np.zeros(4), np.zeros(1)]
    with pytest.raises(nnbin.InvalidInputError, match="hidden widths"):
        wrong.fit(X, y)


def test_partial_fit_trains_on_a_batch_of_one_class_once_classes_are_known():
    """A stream with imbalanced batches: a batch of one label trains (scikit-learn's
    partial_fit does), on the first call when classes= names both, and on later calls."""
    X, y = _data(200)
    zeros, ones = X[y == 0], X[y == 1]
    clf = BinaryMLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    clf.partial_fit(zeros, np.zeros(len(zeros), int), classes=[0, 1])
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1]
    clf.partial_fit(ones, np.ones(len(ones), int))
    assert clf.n_iter_ == 2 and clf.t_ == len(zeros) + len(ones)
    # the one-class first call starts from the weights a two-class one would have drawn
    twin = BinaryMLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    twin.partial_fit(X, y, classes=[0, 1])
    assert twin.coefs_[0].shape == clf.coefs_[0].shape
    with pytest.raises(ValueError, match="needs classes= naming both labels"):
        BinaryMLPClassifier().partial_fit(zeros, np.zeros(len(zeros), int))  # no classes=
    fresh = BinaryMLPClassifier()
    with pytest.raises(ValueError):
        fresh.partial_fit(zeros, np.zeros(len(zeros), int))
    assert not hasattr(fresh, "classes_")  # the refused call left nothing half-set
    with pytest.raises(ValueError):  # scikit-learn's refuses a first call without classes
        sklearn.neural_network.MLPClassifier().partial_fit(zeros, np.zeros(len(zeros), int))


@pytest.mark.parametrize("backend", _installed("numpy", "torch", "jax"))
def test_a_fit_on_one_label_predicts_it_as_scikit_learns_does(backend):
    """MLPClassifier fits y of one label and then predicts that label everywhere (its
    predict_proba still has two columns): the same here, on each backend, host data."""
    X, _ = _data(60)
    y = np.full(60, "yes", dtype=object)
    ours = BinaryMLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    ours.set_params(backend=backend).fit(X, y)
    theirs = sklearn.neural_network.MLPClassifier(
        hidden_layer_sizes=(4,), max_iter=5, random_state=0
    ).fit(X, y)
    assert list(ours.classes_) == list(theirs.classes_) == ["yes"]
    assert list(ours.predict(X[:7])) == list(theirs.predict(X[:7])) == ["yes"] * 7
    assert ours.predict_proba(X).shape == theirs.predict_proba(X).shape == (60, 2)
    assert ours.score(X, y) == 1.0
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        ours.set_params(warm_start=True).fit(X, np.where(np.arange(60) < 30, "yes", "no"))


def test_early_stopping_holds_out_a_stratified_split():
    """scikit-learn's classifiers hold out a stratified validation set: both classes on
    both sides in proportion, a class of one sample an error (as scikit-learn's)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = np.r_[np.zeros(45, int), np.ones(5, int)]  # 10% positives
    result = nnbin.train(
        X, y.reshape(-1, 1).astype(float), hidden=3, steps=3, early_stopping=True,
        validation_fraction=0.2, seed=3,
    )  # fmt: skip
    assert result.validation_scores  # it ran; which rows went where:
    from nnbin.data import hold_out_rows

    for seed in range(20):
        keep, out = hold_out_rows(y.astype(float), 0.2, seed)
        assert len(out) == 10 and int(y[out].sum()) == 1 and int(y[keep].sum()) == 4
    lone = np.r_[np.zeros(9, int), np.ones(1, int)]
    for est in (BinaryMLPClassifier(early_stopping=True), sklearn.neural_network.MLPClassifier(
        early_stopping=True
    )):  # fmt: skip
        with pytest.raises(ValueError, match="The least populated classes in y have only 1"):
            est.fit(X[:10], lone)
    with pytest.raises(nnbin.InvalidInputError, match="at least 2 on each side"):
        nnbin.train(X[:4], np.array([[0.0], [1.0], [0.0], [1.0]]), early_stopping=True, steps=1)


def test_early_stopping_with_string_labels():
    """scikit-learn's test_mlp_early_stopping_string_labels, on two string labels."""
    X, y = _data(200)
    labels = np.array(["class_a", "class_b"], dtype=object)[y]
    clf = BinaryMLPClassifier(early_stopping=True, max_iter=50, random_state=42).fit(X, labels)
    assert clf.validation_scores_ is not None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert np.isfinite(clf.validation_scores_).all()
    assert set(clf.predict(X)) <= {"class_a", "class_b"}


def test_partial_fit_is_not_there_for_lbfgs_and_the_stopping_counter_is():
    """As scikit-learn's: no partial_fit attribute with solver='lbfgs'; the stopping rule's
    counter as _no_improvement_count (scikit-learn's tests read it)."""
    assert not hasattr(BinaryMLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(BinaryMLPClassifier(solver="sgd"), "partial_fit")
    X, y = _data()
    clf = BinaryMLPClassifier(max_iter=50, n_iter_no_change=3, tol=1e9, random_state=0)
    assert clf.fit(X, y)._no_improvement_count == 4 and clf.n_iter_ == 5


def test_pandas_input_on_torch_gives_no_pytorch_warning():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("torch")
    import warnings

    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with warnings.catch_warnings():  # PyTorch's own warning an error; nnbin's (a collapsed
        warnings.simplefilter("error", UserWarning)  # 2-epoch fit) not what is tested here
        warnings.filterwarnings("ignore", message="BinaryMLPClassifier predicts one class")
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        BinaryMLPClassifier(max_iter=2, backend="torch").fit(frame, pd.Series(y))


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_step_size_schedules_end_where_scikit_learns_do(schedule, solver):
    """scikit-learn's learning_rate schedules (solver='sgd'; ignored by Adam): the step size
    its optimizer ends at, after a fit, two warm fits and partial_fit calls, the same."""
    X, y = _data()
    kw = dict(
        solver=solver, learning_rate=schedule, hidden_layer_sizes=(5,), random_state=0,
        learning_rate_init=0.1, power_t=0.3, max_iter=30, n_iter_no_change=np.inf,
    )  # fmt: skip
    if schedule == "adaptive":  # a run whose every adaptive step is taken the same way
        kw.update(tol=1e9, n_iter_no_change=1, max_iter=300)
    ours = BinaryMLPClassifier(**kw).fit(X, y)
    theirs = sklearn.neural_network.MLPClassifier(**kw).fit(X, y)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    if schedule == "adaptive" and solver == "sgd":
        assert ours.n_iter_ == theirs.n_iter_ < 300  # stopped once lr <= 1e-6
        assert ours._optimizer.learning_rate <= 1e-6
    kw.update(max_iter=3, warm_start=True, tol=1e-4, n_iter_no_change=10)
    ours, theirs = BinaryMLPClassifier(**kw), sklearn.neural_network.MLPClassifier(**kw)
    for _ in range(2):
        ours.fit(X, y)
        theirs.fit(X, y)
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    kw.update(warm_start=False)
    ours, theirs = BinaryMLPClassifier(**kw), sklearn.neural_network.MLPClassifier(**kw)
    for _ in range(3):
        ours.partial_fit(X, y, classes=[0, 1])
        theirs.partial_fit(X, y, classes=[0, 1])
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)


def test_a_schedule_that_cannot_act_is_refused_by_train_and_ignored_by_the_estimator():
    X, y = _data()
    with pytest.raises(nnbin.InvalidInputError, match="cannot take effect with optimizer"):
        nnbin.train(X, y.reshape(-1, 1).astype(float), optimizer="adam", learning_rate="invscaling")
    with pytest.raises(nnbin.InvalidInputError, match=r"power_t=0.25 .*cannot take effect"):
        nnbin.train(X, y.reshape(-1, 1).astype(float), power_t=0.25)
    with pytest.raises(nnbin.InvalidInputError, match="this run has none"):
        nnbin.train(X, y.reshape(-1, 1).astype(float), learning_rate="adaptive")
    BinaryMLPClassifier(max_iter=3, learning_rate="invscaling", power_t=0.25).fit(X, y)  # adam
    BinaryMLPClassifier(max_iter=3, solver="sgd", power_t=0.25).fit(X, y)  # constant


def test_identity_activation_as_scikit_learns():
    """activation='identity' (a linear hidden layer): scikit-learn accepts it, so does the
    swap; its fit reaches scikit-learn's training loss on linearly separable data."""
    X, y = _data(200)
    kw = dict(activation="identity", hidden_layer_sizes=(4,), max_iter=300, random_state=0)
    ours = BinaryMLPClassifier(**kw).fit(X, y)
    theirs = sklearn.neural_network.MLPClassifier(**kw).fit(X, y)
    assert ours.score(X, y) >= theirs.score(X, y) - 0.02
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.5, abs=0.02)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_no_hidden_layer_is_logistic_regression(backend):
    """hidden_layer_sizes=() (scikit-learn accepts it): a logistic regression, the output
    layer on X. Its L2-penalised loss is strictly convex, so L-BFGS reaches the one optimum
    scikit-learn's LogisticRegression(C = 1 / alpha) finds by another method, and
    MLPClassifier(hidden_layer_sizes=()) from other starting weights."""
    pytest.importorskip(backend)
    if backend == "jax" and not nnbin.get_backend("jax").x64_enabled():
        pytest.skip("float64 on JAX needs JAX_ENABLE_X64=1 (the conformance suite checks it)")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.logistic(size=300) > 0.3).astype(int)
    alpha = 0.5
    kw = dict(hidden_layer_sizes=(), solver="lbfgs", alpha=alpha, tol=1e-12, max_iter=1000)
    ours = BinaryMLPClassifier(**kw, backend=backend, dtype="float64", random_state=0)
    ours.fit(X, y)
    mlp = sklearn.neural_network.MLPClassifier(**kw, random_state=1).fit(X, y)
    logistic = LogisticRegression(C=1 / alpha, tol=1e-12, max_iter=10_000).fit(X, y)
    assert ours.n_layers_ == mlp.n_layers_ == 2 and len(ours.coefs_) == 1
    assert ours.coefs_[0].shape == (4, 1) and ours.intercepts_[0].shape == (1,)
    for theirs_W, theirs_b in ((logistic.coef_.T, logistic.intercept_),
                               (mlp.coefs_[0], mlp.intercepts_[0])):  # fmt: skip
        np.testing.assert_allclose(ours.coefs_[0], theirs_W, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ours.intercepts_[0], theirs_b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X), logistic.predict_proba(X), atol=1e-5)
    # every solver trains it, and the first-order ones get near the same loss
    for solver in ("adam", "sgd"):
        other = BinaryMLPClassifier(hidden_layer_sizes=(), solver=solver, alpha=alpha,
                                    learning_rate_init=0.05, max_iter=300, random_state=0,
                                    backend=backend, dtype="float64").fit(X, y)  # fmt: skip
        assert other.loss_ == pytest.approx(ours.loss_, rel=0.02), solver


def test_sample_weight_as_scikit_learns():
    """fit(X, y, sample_weight=): integer weights are repeated rows (one full batch), zero
    weights drop a sample, a scalar weighs every sample alike; bad weights are scikit-
    learn's errors; partial_fit takes them in scikit-learn's position (third)."""
    X, y = _data(80)
    w = np.random.default_rng(1).integers(0, 3, 80)
    rows = np.repeat(np.arange(80), w)
    kw = dict(hidden_layer_sizes=(4,), solver="sgd", batch_size=1000, max_iter=20, alpha=0.0,
              shuffle=False, random_state=0, n_iter_no_change=np.inf)  # fmt: skip
    weighted = BinaryMLPClassifier(**kw).fit(X, y, sample_weight=w)
    repeated = BinaryMLPClassifier(**kw).fit(X[rows], y[rows])
    np.testing.assert_allclose(weighted.coefs_[0], repeated.coefs_[0], rtol=1e-10)
    plain = BinaryMLPClassifier(**kw).fit(X, y)
    np.testing.assert_allclose(
        BinaryMLPClassifier(**kw).fit(X, y, sample_weight=2.5).coefs_[0], plain.coefs_[0],
        rtol=1e-10,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"sample_weight sums to -[0-9.]+, not > 0"):
        BinaryMLPClassifier(**kw).fit(X, y, sample_weight=-w)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(79,\)"):
        BinaryMLPClassifier(**kw).fit(X, y, sample_weight=w[:79])
    clf = BinaryMLPClassifier(**kw)
    clf.partial_fit(X, y, w, [0, 1])
    assert list(clf.classes_) == [0, 1]
    early = BinaryMLPClassifier(early_stopping=True, max_iter=5, random_state=0)
    assert len(early.fit(X, y, sample_weight=w + 1).validation_scores_) == 5


@pytest.mark.parametrize("schedule", ["constant", "adaptive"])
def test_partial_fit_counts_the_stopping_rule_across_calls_as_scikit_learn(schedule):
    """scikit-learn's partial_fit reads each call's loss with the stopping rule across calls:
    _no_improvement_count grows, and the adaptive schedule takes a fifth of the step size
    where it passes n_iter_no_change; the same here, call after call."""
    X, y = _data()
    kw = dict(solver="sgd", learning_rate=schedule, tol=1e9, n_iter_no_change=2,
              hidden_layer_sizes=(4,), random_state=0, learning_rate_init=0.1)  # fmt: skip
    ours, theirs = BinaryMLPClassifier(**kw), sklearn.neural_network.MLPClassifier(**kw)
    for _ in range(8):
        ours.partial_fit(X, y, classes=[0, 1])
        theirs.partial_fit(X, y, classes=[0, 1])
        assert ours._no_improvement_count == theirs._no_improvement_count
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    if schedule == "adaptive":
        assert ours._optimizer.learning_rate < 0.1 / 5


def _sparse_problem(n: int = 240, d: int = 30, seed: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Data about 80% zero (as bag-of-words features are), labels from a few columns."""
    rng = np.random.default_rng(seed)
    X = rng.exponential(1.0, (n, d)) * (rng.random((n, d)) < 0.2)
    y = (X[:, :4].sum(axis=1) > X[:, 4:8].sum(axis=1)).astype(int)
    return X, y


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array"])
@pytest.mark.parametrize(
    "options",
    [
        {"solver": "adam"},
        {"solver": "sgd", "hidden_layer_sizes": (8, 4), "activation": "tanh"},
        {"solver": "lbfgs", "hidden_layer_sizes": 15},
        {"solver": "adam", "early_stopping": True, "hidden_layer_sizes": ()},
    ],
    ids=["adam", "sgd-deep", "lbfgs", "early-stopping-no-hidden"],
)
def test_sparse_x_trains_as_its_dense_x_does(fmt, options):
    """A SciPy sparse X (MLPClassifier takes CSR and CSC) trains on the numpy backend kept
    sparse; the run, the loss curve and every prediction are those of the same X dense, to
    rounding (the blocks of rows are summed in another order)."""
    sparse = pytest.importorskip("scipy.sparse")
    X, y = _sparse_problem()
    Xs = getattr(sparse, fmt)(X)
    kw = dict(random_state=0, max_iter=25, backend="numpy", **options)
    dense_fit = BinaryMLPClassifier(**kw).fit(X, y)  # (ConvergenceWarning: ignored here)
    sparse_fit = BinaryMLPClassifier(**kw).fit(Xs, y)
    assert sparse_fit.n_iter_ == dense_fit.n_iter_
    np.testing.assert_allclose(sparse_fit.loss_curve_, dense_fit.loss_curve_, rtol=1e-12)
    for W, V in zip(sparse_fit.coefs_, dense_fit.coefs_, strict=True):
        np.testing.assert_allclose(W, V, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(sparse_fit.predict(Xs), dense_fit.predict(X))
    np.testing.assert_allclose(sparse_fit.predict_proba(Xs), dense_fit.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(
        sparse_fit.predict_log_proba(Xs), dense_fit.predict_log_proba(X), atol=1e-10
    )
    assert sparse_fit.score(Xs, y) == dense_fit.score(X, y)
    assert sparse_fit.__sklearn_tags__().input_tags.sparse


def test_negative_sample_weights_as_scikit_learns():
    """Negative weights are scikit-learn's MLP's to take: a row of weight 2 beside its copy
    of weight -1 is that row once (one full batch: the weighted sums are the same sums), on
    sgd and lbfgs; early stopping whose trained or held-out part sums to <= 0 is one error."""
    X, y = _data(60)
    kw = dict(hidden_layer_sizes=(4,), batch_size=1000, max_iter=15, random_state=0,
              shuffle=False, n_iter_no_change=np.inf, alpha=1e-3)  # fmt: skip
    twice = np.r_[np.arange(60), np.arange(20)]
    w = np.r_[np.full(20, 2.0), np.ones(40), np.full(20, -1.0)]
    for solver in ("sgd", "lbfgs"):
        once = BinaryMLPClassifier(solver=solver, **kw).fit(X, y)
        signed = BinaryMLPClassifier(solver=solver, **kw).fit(X[twice], y[twice], sample_weight=w)
        for a, b in zip(once.coefs_ + once.intercepts_, signed.coefs_ + signed.intercepts_):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(signed.loss_curve_, once.loss_curve_, rtol=1e-9)
    early = BinaryMLPClassifier(early_stopping=True, validation_fraction=0.5, max_iter=3,
                                random_state=0)  # fmt: skip
    lopsided = np.where(np.arange(60) % 2 == 0, 5.0, -4.9)  # some split's part sums < 0
    with pytest.raises(
        ValueError, match=r"sample_weight of the (samples trained on|held-out samples) sums to"
    ):
        for seed in range(20):
            early.set_params(random_state=seed).fit(X, y, sample_weight=lopsided)


def test_sparse_x_streams_through_partial_fit_and_sample_weight():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = _sparse_problem()
    w = np.random.default_rng(1).integers(0, 3, len(y)).astype(float)
    ours = BinaryMLPClassifier(random_state=0, backend="numpy")
    dense = BinaryMLPClassifier(random_state=0, backend="numpy")
    for a in range(0, len(y), 60):
        rows = slice(a, a + 60)
        ours.partial_fit(sparse.csr_matrix(X[rows]), y[rows], sample_weight=w[rows], classes=[0, 1])
        dense.partial_fit(X[rows], y[rows], sample_weight=w[rows], classes=[0, 1])
    np.testing.assert_allclose(ours.loss_curve_, dense.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(ours.decision_function(sparse.csr_matrix(X)),
                               dense.decision_function(X), atol=1e-12)  # fmt: skip


def test_sparse_x_is_densified_a_block_at_a_time():
    """Many features, few of them set: a fit and its predictions never hold X dense (80 MB
    here); the host memory they take at their peak (tracemalloc sees NumPy's buffers) stays
    under a tenth of that."""
    import tracemalloc

    sparse = pytest.importorskip("scipy.sparse")
    n, d = 2000, 5000
    Xs = sparse.random(n, d, density=0.002, format="csr", random_state=3)
    y = np.arange(n) % 2
    whole = n * d * 8
    model = BinaryMLPClassifier(hidden_layer_sizes=8, max_iter=2, random_state=0, backend="numpy")
    tracemalloc.start()
    try:
        model.fit(Xs, y)
        model.predict_proba(Xs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole / 10, f"peak {peak / 2**20:.1f} MiB; X dense is {whole / 2**20:.0f} MiB"


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_sparse_x_elsewhere_is_one_error_naming_toarray(backend):
    """The other backends refuse a sparse X, in fit and in predict of a model they fitted,
    with one error that says what to pass instead (and names "sparse", as scikit-learn's
    own check of estimators that refuse it expects)."""
    sparse = pytest.importorskip("scipy.sparse")
    pytest.importorskip(backend)
    X, y = _sparse_problem()
    model = BinaryMLPClassifier(backend=backend, max_iter=2, random_state=0)
    with pytest.raises(nnbin.InvalidInputError, match=r"sparse.*X\.toarray\(\)"):
        model.fit(sparse.csr_matrix(X), y)
    assert not model.__sklearn_tags__().input_tags.sparse
    model.fit(X.astype(np.float32), y)
    with pytest.raises(nnbin.InvalidInputError, match=r"sparse.*X\.toarray\(\)"):
        model.predict(sparse.csr_matrix(X.astype(np.float32)))


def test_max_iter_of_0_is_refused_as_scikit_learn_refuses_it():
    """scikit-learn's MLPClassifier constrains max_iter to [1, inf); nnbin's estimator took
    0 and 'fitted' nothing. One InvalidInputError (a ValueError), naming max_iter."""
    X, y = nnbin.two_gaussians(n_per_class=10, seed=0)
    with pytest.raises(nnbin.InvalidInputError, match="max_iter must be"):
        BinaryMLPClassifier(max_iter=0).fit(X, y.ravel())
    with pytest.raises(ValueError):
        BinaryMLPClassifier(max_iter=0).fit(X, y.ravel())


def test_lbfgs_convergence_warning_is_scikit_learns_word_for_word():
    """The ConvergenceWarning of an L-BFGS fit cut by max_iter ends as scikit-learn's does
    (its last sentence was missing)."""
    X, y = nnbin.two_gaussians(n_per_class=40, seed=0)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning) as seen:
        BinaryMLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, y[:, 0])
    (text,) = [str(w.message) for w in seen if "lbfgs failed" in str(w.message)]
    assert text.endswith(
        "(max_iter=2).\nYou might also want to scale the data as shown in:\n"
        "    https://scikit-learn.org/stable/modules/preprocessing.html"
    ), text


def test_a_fit_that_raised_leaves_no_half_fitted_model_to_predict_with():
    """A fit that raised (here: diverged) after setting classes_: predict is scikit-learn's
    NotFittedError, not AttributeError: params_."""
    X, y = nnbin.two_gaussians(n_per_class=10, seed=0)
    clf = BinaryMLPClassifier(solver="sgd", learning_rate_init=1e308, max_iter=3)
    with pytest.raises(nnbin.TrainingDivergedError), np.errstate(all="ignore"):
        clf.fit(X, y.ravel())
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(sklearn.exceptions.NotFittedError):
            method(X)


def test_string_labels_of_a_collapsed_fit_are_named_in_the_warning():
    """String labels in an object array: the collapse warning names the class (it raised
    AttributeError: 'str' object has no attribute 'item')."""
    X, y = np.zeros((20, 2)), np.array(["a", "b"] * 10, dtype=object)
    with pytest.warns(UserWarning, match=r"predicts one class \('[ab]'\) for every training"):
        BinaryMLPClassifier(max_iter=2).fit(X, y)
