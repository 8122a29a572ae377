"""The public API: shapes, libraries in = libraries out, errors for mixed inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnbin


def test_two_gaussians_is_the_seed_data():
    X, y = nnbin.two_gaussians(n_per_class=10_000, seed=0)
    assert X.shape == (20_000, 1) and y.shape == (20_000, 1)
    assert X.dtype == np.float64 and set(np.unique(y)) == {0.0, 1.0}
    assert int(y.sum()) == 10_000
    assert abs(X[y[:, 0] == 0].mean() + 6) < 0.05 and abs(X[y[:, 0] == 1].mean() - 6) < 0.05
    assert abs(X[y[:, 0] == 0].std() - 1) < 0.05
    assert 0.4 < y[:100].mean() < 0.6  # shuffled, not 10,000 zeros then 10,000 ones
    X2, _ = nnbin.two_gaussians(n_per_class=10_000, seed=0)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, nnbin.two_gaussians(n_per_class=10_000, seed=1)[0])


def test_two_gaussians_several_features():
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0, n_features=3)
    assert X.shape == (100, 3) and y.shape == (100, 1)


def test_init_params_shapes_and_seed(clean_backend_env):
    p = nnbin.init_params(n_features=3, hidden=7, seed=4)
    assert isinstance(p, nnbin.Params) and isinstance(p, tuple)
    assert [a.shape for a in p] == [(3, 7), (7,), (7, 1), (1,)]
    assert not np.any(p.b1) and not np.any(p.b2)
    rng = np.random.default_rng(4)
    np.testing.assert_array_equal(p.W1, rng.standard_normal((3, 7)))
    np.testing.assert_array_equal(p.W2, rng.standard_normal((7, 1)))
    p32 = nnbin.init_params(3, 7, 4, dtype="float32")
    assert p32.W1.dtype == np.float32
    np.testing.assert_array_equal(p32.W1, p.W1.astype(np.float32))


def test_init_params_rejects_nonsense():
    with pytest.raises(ValueError, match="hidden"):
        nnbin.init_params(1, 0)


def test_outputs_have_the_documented_shapes():
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    p = nnbin.init_params(1, 5, 0)
    assert nnbin.forward(p, X).shape == (40, 1)
    proba = nnbin.predict_proba(p, X)
    assert proba.shape == (40, 1) and np.all((proba >= 0) & (proba <= 1))
    loss = nnbin.loss(p, X, y)
    assert loss.shape == () and float(loss) > 0
    loss2, grads = nnbin.loss_and_grads(p, X, y)
    assert float(loss2) == pytest.approx(float(loss), rel=1e-12)
    assert isinstance(grads, nnbin.Params)
    assert [g.shape for g in grads] == [a.shape for a in p]
    new = nnbin.step(p, X, y, lr=1.0)
    assert float(nnbin.loss(new, X, y)) < float(loss)
    for a, g, n in zip(p, grads, new):
        np.testing.assert_allclose(n, a - g)


def test_step_does_not_modify_its_inputs():
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    p = nnbin.init_params(1, 5, 0)
    before = [a.copy() for a in p]
    nnbin.step(p, X, y)
    nnbin.train(X, y, hidden=5, steps=3)
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)


def test_array_api_strict_in_strict_out():
    xp = pytest.importorskip("array_api_strict")
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    Xs, ys = xp.asarray(X), xp.asarray(y)
    result = nnbin.train(Xs, ys, hidden=4, steps=5, log_every=1)
    assert result.backend == "strict" and result.dtype == "float64"
    assert all(type(a).__module__.startswith("array_api_strict") for a in result.params)
    assert type(nnbin.predict_proba(result.params, Xs)).__module__.startswith("array_api_strict")
    assert [s for s, _ in result.history] == [0, 1, 2, 3, 4]


def test_mixing_libraries_is_one_clear_error():
    xp = pytest.importorskip("array_api_strict")
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    p = nnbin.init_params(1, 4, 0)
    with pytest.raises(nnbin.MixedArraysError, match="never copies"):
        nnbin.forward(p, xp.asarray(X))
    with pytest.raises(nnbin.MixedArraysError):
        nnbin.train(xp.asarray(X), y, steps=1)
    with pytest.raises(nnbin.MixedArraysError, match="backend='numpy'"):
        nnbin.train(xp.asarray(X), xp.asarray(y), steps=1, backend="numpy")


def test_host_data_moves_to_the_chosen_backend():
    pytest.importorskip("array_api_strict")
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    result = nnbin.train(X, y, hidden=4, steps=2, backend="strict")
    assert all(type(a).__module__.startswith("array_api_strict") for a in result.params)


def test_train_records_loss_before_each_logged_step():
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    result = nnbin.train(X, y, hidden=4, steps=25, log_every=10, seed=0)
    assert [s for s, _ in result.history] == [0, 10, 20]
    p0 = nnbin.init_params(1, 4, 0)
    assert result.history[0][1] == pytest.approx(float(nnbin.loss(p0, X, y)), rel=1e-12)
    assert result.final_loss == pytest.approx(float(nnbin.loss(result.params, X, y)), rel=1e-12)
    assert nnbin.train(X, y, hidden=4, steps=5, log_every=0).history == []


def test_float32_data_trains_in_float32():
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    result = nnbin.train(X.astype(np.float32), y.astype(np.float32), steps=3)
    assert result.dtype == "float32" and result.params.W1.dtype == np.float32


def test_divergence_is_reported_with_step_and_lr():
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    with (
        pytest.raises(FloatingPointError, match=r"step 1 with lr=1e\+308"),
        np.errstate(all="ignore"),
    ):
        nnbin.train(X, y, steps=3, log_every=1, lr=1e308)


# --- the deeper network's options --------------------------------------------------------


def test_init_params_of_any_depth_and_initialisation():
    p = nnbin.init_params(3, (5, 4), seed=1, activation="relu")
    assert isinstance(p, nnbin.Params) and p.activation == "relu"
    assert [a.shape for a in p] == [(3, 5), (5,), (5, 4), (4,), (4, 1), (1,)]
    big = nnbin.init_params(400, (300,), seed=0, init="he")
    assert abs(np.std(big[0]) - np.sqrt(2 / 400)) < 0.01 * np.sqrt(2 / 400) * 10
    glorot = nnbin.init_params(400, (300,), seed=0, activation="tanh")  # default: Glorot
    bound = np.sqrt(6 / 700)
    assert np.max(np.abs(glorot[0])) <= bound and np.max(np.abs(glorot[0])) > 0.99 * bound
    seed_net = nnbin.init_params(1, 32, seed=0)  # the seed network: N(0, 1), a Params
    assert isinstance(seed_net, nnbin.Params)
    np.testing.assert_array_equal(seed_net.W1, np.random.default_rng(0).standard_normal((1, 32)))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"activation": "softmax"}, "activation must be one of"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"alpha": -1.0}, "alpha must be a finite number"),
        ({"validation_fraction": 1.0, "early_stopping": True}, "validation_fraction"),
        ({"beta2": 1.0, "optimizer": "adam"}, "beta2 must be"),
        ({"momentum": 1.5, "optimizer": "momentum"}, "momentum must be"),
        ({"n_iter_no_change": 0}, "n_iter_no_change must be >= 1"),
        ({"hidden": (4, None)}, "every hidden width must be"),
        ({"hidden": (4, 0)}, "every hidden width must be >= 1"),
        ({"init": "xavier"}, "init must be one of"),
        ({"nesterov": "yes"}, "nesterov must be True or False"),
    ],
)
def test_bad_training_options_are_one_clear_error(options, message):
    X, y = nnbin.two_gaussians(20, seed=0)
    with pytest.raises(nnbin.InvalidInputError, match=message):
        nnbin.train(X, y, steps=2, **options)


def test_starting_parameters_must_fit_the_network():
    X, y = nnbin.two_gaussians(20, seed=0)
    p = nnbin.init_params(1, (4, 3))
    with pytest.raises(nnbin.InvalidInputError, match="hidden widths"):
        nnbin.train(X, y, hidden=(4, 2), params=p, steps=1)
    bad = (p[0], p[1], p[2][:, :2], p[3], p[4], p[5])
    with pytest.raises(nnbin.InvalidInputError, match="do not belong together"):
        nnbin.loss(bad, X, y, activation="sigmoid")


def test_deep_functions_take_the_activation_and_penalty():
    X, y = nnbin.two_gaussians(50, seed=2)
    p = nnbin.init_params(1, (4, 3), seed=2, activation="tanh")
    loss, grads = nnbin.loss_and_grads(p, X, y, activation="tanh", alpha=0.5)
    assert float(loss) == pytest.approx(float(nnbin.loss(p, X, y, activation="tanh", alpha=0.5)))
    assert float(loss) > float(nnbin.loss(p, X, y, activation="tanh"))  # the penalty counts
    stepped = nnbin.step(p, X, y, 0.1, activation="tanh", alpha=0.5)
    for a, b, g in zip(stepped, p, grads, strict=True):
        np.testing.assert_allclose(a, b - 0.1 * g)
    opt = nnbin.Optimizer("adam", lr=0.01)
    new, state = opt.update(p, grads, opt.init(p))
    assert float(state[0]) == 1.0 and all(a.shape == b.shape for a, b in zip(new, p))
    assert nnbin.accuracy(p, X, y, activation="tanh") >= 0.0


# --- bad input: a wrong shape is one error, never a broadcast into a wrong number (y of
# shape (N,) against (N, 1) logits used to give an (N, N) array: a loss of 225 for a model
# whose loss is 0.0116) ------------------------------------------------------------------

X0, Y0 = nnbin.two_gaussians(n_per_class=20, seed=0)
P0 = nnbin.init_params(1, 3, seed=0)
P2 = nnbin.init_params(2, 3, seed=0)


FUNCTIONS_WITH_Y = {
    "loss": lambda p, X, y: nnbin.loss(p, X, y),
    "loss_and_grads": lambda p, X, y: nnbin.loss_and_grads(p, X, y),
    "step": lambda p, X, y: nnbin.step(p, X, y, 0.5),
    "accuracy": lambda p, X, y: nnbin.accuracy(p, X, y),
}


FUNCTIONS_OF_X = {
    "forward": lambda p, X, y: nnbin.forward(p, X),
    "predict_proba": lambda p, X, y: nnbin.predict_proba(p, X),
}


ALL_FUNCTIONS = {**FUNCTIONS_WITH_Y, **FUNCTIONS_OF_X}


BAD_Y = {
    "y with two columns": (np.hstack([Y0, Y0]), r"y must have shape \(N,\) or \(N, 1\)"),
    "y of shape (N, 1, 1)": (Y0[:, :, None], r"y must have shape \(N,\) or \(N, 1\)"),
    "y with a row short": (Y0[:-1], "X has 40 rows but y has 39"),
    "y of shape (1, N)": (Y0.T, r"y must have shape|X has 40 rows but y has 1"),
    "y a list": (Y0.tolist(), "y must be an array"),
    "y masked": (np.ma.masked_array(Y0), "y is a masked array"),
    "y complex": (Y0.astype(complex), "nnbin needs real numbers"),
}


BAD_X = {
    "X 1-D": (X0[:, 0], r"X must be 2-D.*X.reshape\(-1, 1\)"),
    "X 3-D": (X0[:, :, None], "X must be 2-D"),
    "X with 2 features for 1-feature parameters": (
        np.hstack([X0, X0]),
        "X has 2 features but the parameters take 1",
    ),
    "X masked": (np.ma.masked_array(X0, mask=np.zeros_like(X0, bool)), "X is a masked array"),
    "X a tuple": (tuple(X0[:, 0]), "X must be an array"),
}


BAD_PARAMS = {
    "three arrays": (P0[:3], "params must be nnbin.Params"),
    "a dict": (P0._asdict(), "params must be nnbin.Params"),
    "W2 of another model": (P0._replace(W2=P2.W2[:2]), r"W2 must have shape \(3, 1\)"),
    "b1 too long": (P0._replace(b1=np.zeros(4)), r"b1 must have shape \(3,\)"),
    "W1 1-D": (P0._replace(W1=P0.W1[0]), r"W1 must have shape \(D, H\)"),
    "b2 of shape ()": (P0._replace(b2=np.float64(0.0) * np.ones(())), r"b2 must have shape"),
}


@pytest.mark.parametrize("fn", list(FUNCTIONS_WITH_Y))
@pytest.mark.parametrize("case", list(BAD_Y))
def test_public_functions_refuse_a_bad_y(fn, case):
    y, message = BAD_Y[case]
    with pytest.raises(nnbin.InvalidInputError, match=message):
        FUNCTIONS_WITH_Y[fn](P0, X0, y)


@pytest.mark.parametrize("fn", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("case", list(BAD_X))
def test_public_functions_refuse_a_bad_x(fn, case):
    X, message = BAD_X[case]
    with pytest.raises(nnbin.InvalidInputError, match=message):
        ALL_FUNCTIONS[fn](P0, X, Y0)


@pytest.mark.parametrize("fn", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_public_functions_refuse_parameters_that_do_not_fit(fn, case):
    params, message = BAD_PARAMS[case]
    with pytest.raises(nnbin.InvalidInputError, match=message):
        ALL_FUNCTIONS[fn](params, X0, Y0)


def test_y_of_shape_n_is_taken_as_a_column_everywhere():
    result = nnbin.train(X0, Y0, hidden=3, steps=50)
    p, y1 = result.params, Y0[:, 0]
    assert float(nnbin.loss(p, X0, y1)) == float(nnbin.loss(p, X0, Y0))
    assert nnbin.accuracy(p, X0, y1) == nnbin.accuracy(p, X0, Y0) == 1.0
    loss1, g1 = nnbin.loss_and_grads(p, X0, y1)
    loss2, g2 = nnbin.loss_and_grads(p, X0, Y0)
    assert float(loss1) == float(loss2)
    for a, b, q in zip(g1, g2, p):
        assert a.shape == q.shape and np.array_equal(a, b)
    for a, b in zip(nnbin.step(p, X0, y1, 0.5), nnbin.step(p, X0, Y0, 0.5)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0, -1.0, True, "1", None, np.ones(2)])
def test_step_refuses_a_bad_step_size_as_train_does(lr):
    with pytest.raises(nnbin.InvalidInputError, match="lr must be"):
        nnbin.step(P0, X0, Y0, lr)
    with pytest.raises(nnbin.InvalidInputError, match="lr must be"):
        nnbin.train(X0, Y0, lr=lr, steps=1)


def test_accuracy_works_through_blocks_not_a_whole_n_by_h_array():
    import tracemalloc

    X, y = nnbin.two_gaussians(n_per_class=100_000, seed=0)
    result = nnbin.train(X[:2000], y[:2000], hidden=32, steps=100)
    tracemalloc.start()
    try:
        assert nnbin.accuracy(result.params, X, y) == 1.0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.05 * X.shape[0] * 32 * 8  # under 5% of one (N, H) float64 array


# --- every public function's bad input is an NnbinError with one line ---------------------


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(init="bogus"), "init must be one of normal, glorot, he, got 'bogus'"),
        (dict(n_features=0), "n_features must be >= 1, got 0"),
        (dict(n_features=-1), "n_features must be >= 1, got -1"),
        (dict(n_features=2.5), "n_features must be a whole number >= 1, got 2.5"),
        (dict(n_features=True), "n_features must be a whole number >= 1, got True"),
        (dict(seed=-3), "seed must be >= 0"),
        (dict(activation="softmax"), "activation must be one of sigmoid, tanh, relu"),
    ],
)
def test_init_params_refuses_bad_arguments_in_one_line(kwargs, needle):
    with pytest.raises(nnbin.InvalidInputError) as info:
        nnbin.init_params(**{"n_features": 1, "hidden": 3, **kwargs})
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(name="Adam"), "optimizer must be one of gd, momentum, adam, lbfgs, got 'Adam'"),
        (dict(name="adam", beta1=1.0), "beta1 must be a finite number in [0, 1), got 1.0"),
        (dict(name="adam", beta2=-0.1), "beta2 must be"),
        (dict(lr=-1.0), "lr must be a finite number > 0, got -1.0"),
        (dict(lr=float("nan")), "lr must be a finite number > 0"),
        (dict(name="adam", epsilon=0.0), "epsilon must be a finite number > 0, got 0.0"),
        (dict(name="momentum", momentum=1.5), "momentum must be a finite number in [0, 1]"),
        (dict(nesterov="yes"), "nesterov must be"),
    ],
)
def test_an_optimizer_checks_its_hyperparameters_as_train_does(kwargs, needle):
    with pytest.raises(nnbin.InvalidInputError) as info:
        nnbin.Optimizer(**kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)
    # the same value through train() is refused with the same words
    name = next(iter(kwargs.keys() - {"name"}), "name")
    option = {"name": "optimizer"}.get(name, name)
    given = {"optimizer": kwargs.get("name", "gd"), option: kwargs[name]}
    with pytest.raises(nnbin.InvalidInputError, match=re.escape(needle.split(",")[0])):
        nnbin.train(X0, Y0, steps=1, **given)


def test_a_valid_optimizer_still_updates():
    p = nnbin.init_params(1, 3, seed=0)
    opt = nnbin.Optimizer(name="adam", lr=0.01)
    _, grads = nnbin.loss_and_grads(p, X0, Y0)
    new, state = opt.update(p, grads, opt.init(p))
    assert float(state[0]) == 1.0 and not np.array_equal(new.W1, p.W1)


def test_initial_parameters_that_cannot_fit_are_refused_before_allocating():
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(nnbin.InvalidInputError, match=r"initial parameters would need about"):
            nnbin.init_params(1, (2, 10**9))
        with pytest.raises(nnbin.InvalidInputError, match=r"use fewer hidden units"):
            nnbin.train(X0, Y0, hidden=(2, 10**10), steps=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
