"""Parameters that know their architecture: every public function computes with the hidden
activation the parameters carry, for each way parameters are made (train, init_params,
load, the estimator, coefs_ put together by hand); a bare tuple of arrays needs the
activation said, and a contradicting one is refused. The expected numbers come from a
forward pass written here in NumPy, not from nnbin."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest

import nnbin

ACTS = {
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "identity": lambda a: a,
}


def numpy_proba(arrays, X, activation):
    """P(y = 1 | x) of the network (W1, b1, ..., Wo, bo) with hidden ``activation``."""
    h = np.asarray(X, dtype=np.float64)
    pairs = list(zip(arrays[0::2], arrays[1::2]))
    for W, b in pairs[:-1]:
        h = ACTS[activation](h @ np.asarray(W) + np.asarray(b))
    z = h @ np.asarray(pairs[-1][0]) + np.asarray(pairs[-1][1])
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    y = (X[:, :1] * X[:, 1:] > 0).astype(np.float64)  # not linear: the activation matters
    return X, y


def _relu_run(X, y):
    return nnbin.train(
        X, y, hidden=(8, 4), activation="relu", optimizer="adam", lr=0.01, steps=30, seed=1
    )


def _assert_relu_everywhere(params, X, y):
    """Every public function on ``params`` computes with ReLU units (the value sigmoid
    units would give is far from it, so a silent sigmoid fails)."""
    want = numpy_proba(params, X, "relu")
    assert np.max(np.abs(want - numpy_proba(params, X, "sigmoid"))) > 0.05
    np.testing.assert_allclose(nnbin.predict_proba(params, X), want, rtol=1e-12)
    z = np.log(want) - np.log1p(-want)
    np.testing.assert_allclose(nnbin.forward(params, X), z, rtol=1e-9, atol=1e-12)
    bce = float(np.mean(-y * np.log(want) - (1 - y) * np.log1p(-want)))
    assert float(nnbin.loss(params, X, y)) == pytest.approx(bce, rel=1e-10)
    assert float(nnbin.loss_and_grads(params, X, y)[0]) == pytest.approx(bce, rel=1e-10)
    assert nnbin.accuracy(params, X, y) == pytest.approx(float(np.mean((want >= 0.5) == y)))


def test_a_train_result_computes_with_its_own_activation(data):
    X, y = data
    result = _relu_run(X, y)
    assert result.params.activation == "relu" == result.activation
    assert isinstance(result.params, nnbin.Params)
    _assert_relu_everywhere(result.params, X, y)
    stepped = nnbin.step(result.params, X, y, 0.1)
    assert stepped.activation == "relu"


def test_init_params_carry_their_activation(data):
    X, y = data
    params = nnbin.init_params(2, (5, 3), seed=2, activation="relu")
    assert params.activation == "relu" and params._fields == ("W1", "b1", "W2", "b2", "W3", "b3")
    _assert_relu_everywhere(params, X, y)
    assert nnbin.init_params(2, 5).activation == "sigmoid"  # the seed network's


def test_a_loaded_model_computes_with_the_saved_activation(data, tmp_path):
    X, y = data
    result = _relu_run(X, y)
    nnbin.save(tmp_path / "m.safetensors", result)
    model = nnbin.load(tmp_path / "m.safetensors")
    assert model.params.activation == "relu" == model.activation
    _assert_relu_everywhere(model.params, X, y)


def test_the_estimators_parameters_and_its_coefs_put_together(data):
    pytest.importorskip("sklearn")
    X, y = data
    clf = nnbin.BinaryMLPClassifier(
        hidden_layer_sizes=(8,), max_iter=30, random_state=0, learning_rate_init=0.01
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y[:, 0])
    assert clf.params_.activation == "relu"  # scikit-learn's default activation
    _assert_relu_everywhere(clf.params_, X, y)
    arrays = [a for pair in zip(clf.coefs_, clf.intercepts_) for a in pair]
    with pytest.raises(nnbin.InvalidInputError, match=r"bare tuple.*activation="):
        nnbin.predict_proba(tuple(arrays), X)
    _assert_relu_everywhere(nnbin.Params(*arrays, activation="relu"), X, y)
    np.testing.assert_allclose(
        clf.predict_proba(X)[:, 1:], numpy_proba(arrays, X, "relu"), rtol=1e-12
    )
    # set_params after the fit changes the next fit, not what the fitted network computes
    clf.set_params(activation="tanh")
    np.testing.assert_allclose(
        clf.predict_proba(X)[:, 1:], numpy_proba(arrays, X, "relu"), rtol=1e-12
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda p, X, y: nnbin.predict_proba(p, X),
        lambda p, X, y: nnbin.forward(p, X),
        lambda p, X, y: nnbin.loss(p, X, y),
        lambda p, X, y: nnbin.loss_and_grads(p, X, y),
        lambda p, X, y: nnbin.step(p, X, y),
        lambda p, X, y: nnbin.accuracy(p, X, y),
        lambda p, X, y: nnbin.Model(p, "float64"),
        lambda p, X, y: nnbin.train(X, y, params=p, hidden=(8, 4), steps=1),
    ],
    ids=[
        "predict_proba",
        "forward",
        "loss",
        "loss_and_grads",
        "step",
        "accuracy",
        "Model",
        "train",
    ],
)
def test_a_bare_tuple_needs_the_activation_said(data, call):
    X, y = data
    arrays = tuple(_relu_run(X, y).params)
    with pytest.raises(nnbin.InvalidInputError, match="bare tuple of arrays"):
        call(arrays, X, y)


def test_a_bare_tuple_with_the_activation_said_is_that_network(data):
    X, y = data
    arrays = tuple(_relu_run(X, y).params)
    np.testing.assert_allclose(
        nnbin.predict_proba(arrays, X, activation="relu"), numpy_proba(arrays, X, "relu")
    )
    # scikit-learn's name for the sigmoid
    np.testing.assert_allclose(
        nnbin.predict_proba(arrays, X, activation="logistic"), numpy_proba(arrays, X, "sigmoid")
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda p, X, y: nnbin.predict_proba(p, X, activation="sigmoid"),
        lambda p, X, y: nnbin.loss(p, X, y, activation="tanh"),
        lambda p, X, y: nnbin.accuracy(p, X, y, activation="sigmoid"),
        lambda p, X, y: nnbin.Model(p, "float64", activation="sigmoid"),
        lambda p, X, y: nnbin.train(X, y, params=p, hidden=(8, 4), activation="tanh", steps=1),
    ],
    ids=["predict_proba", "loss", "accuracy", "Model", "train"],
)
def test_an_activation_that_contradicts_the_parameters_is_refused(data, call):
    X, y = data
    params = _relu_run(X, y).params
    with pytest.raises(nnbin.InvalidInputError, match="relu network"):
        call(params, X, y)


def test_a_continued_run_trains_with_the_parameters_activation(data):
    X, y = data
    first = _relu_run(X, y)
    more = nnbin.train(
        X, y, params=first.params, hidden=(8, 4), optimizer="adam", lr=0.01, steps=5, seed=1
    )
    assert more.activation == "relu" == more.params.activation


def test_params_need_an_activation_and_keep_it_through_pickle_and_copy():
    arrays = (np.ones((1, 2)), np.zeros(2), np.ones((2, 1)), np.zeros(1))
    with pytest.raises(nnbin.InvalidInputError, match="activation="):
        nnbin.Params(*arrays)
    with pytest.raises(nnbin.InvalidInputError, match="activation must be one of"):
        nnbin.Params(*arrays, activation="softsign")
    p = nnbin.Params(*arrays, activation="tanh")
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p), copy.copy(p)):
        assert type(q) is type(p) and q.activation == "tanh"
        assert all(np.array_equal(a, b) for a, b in zip(p, q))
    assert type(p)(*arrays).activation == "tanh"  # how JAX rebuilds a pytree node
    assert p.W2 is arrays[2] and p.b2 is arrays[3]
    with pytest.raises(AttributeError):
        p.W3  # noqa: B018
    with pytest.raises(nnbin.InvalidInputError, match="tanh network"):
        type(p)(*arrays, activation="relu")


def test_jax_transforms_keep_the_architecture():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    X = jnp.asarray(np.random.default_rng(0).normal(size=(20, 2)), dtype=jnp.float32)
    y = jnp.asarray((np.arange(20) % 2)[:, None], dtype=jnp.float32)
    p = nnbin.init_params(2, 3, seed=0, backend="jax", activation="relu")
    leaves, tree = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 4 and jax.tree_util.tree_unflatten(tree, leaves).activation == "relu"
    got = jax.jit(nnbin.predict_proba)(p, X)
    want = numpy_proba([np.asarray(a, dtype=np.float64) for a in p], np.asarray(X), "relu")
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    grads = jax.grad(nnbin.loss)(p, X, y)
    assert type(grads) is type(p)
    _, hand = nnbin.loss_and_grads(p, X, y)
    for g, h in zip(grads, hand):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-4, atol=1e-6)


def test_onnx_export_reads_the_activation_from_the_parameters(data, tmp_path):
    pytest.importorskip("ndonnx")
    ort = pytest.importorskip("onnxruntime")
    X, y = data
    params = _relu_run(X, y).params
    nnbin.export_onnx(params, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": X})))
    np.testing.assert_allclose(out["probability"], numpy_proba(params, X, "relu"), rtol=1e-10)
    with pytest.raises(nnbin.InvalidInputError, match="bare tuple"):
        nnbin.export_onnx(tuple(params), tmp_path / "n.onnx")


def test_warnings_point_at_the_callers_line(data):
    X, y = data
    with pytest.warns(UserWarning, match="converting it to float64") as record:
        nnbin.train(X, (y > 0).astype(np.int64), steps=1)
    assert {w.filename for w in record} == {__file__}
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    clf = nnbin.BinaryMLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning) as record:
        clf.fit(X, y[:, 0])
    assert {w.filename for w in record if w.category is ConvergenceWarning} == {__file__}


@pytest.mark.parametrize("library", ["jax", "torch"])
def test_autodiff_of_the_loss_at_a_logit_of_exactly_zero(library):
    """dL/dz = (sigmoid(z) - y) / N holds at z = 0 too for jax.grad and torch.autograd of
    nnbin.loss (max(z, 0) written as 0.5 z + 0.5 |z|): a ReLU network whose units are all
    off and whose output bias is 0 gives logits of exactly 0, where JAX's derivatives of max
    and abs at a tie made jax.grad(nnbin.loss) -y / N."""
    X = np.array([[-1.0], [-2.0], [-3.0], [1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    arrays = (np.ones((1, 2)), np.zeros(2), np.ones((2, 1)), np.zeros(1))  # z = 0 for x < 0
    if library == "jax":
        jax = pytest.importorskip("jax")
        f32 = jax.numpy.float32  # JAX's default: no 64-bit mode switched on for the process
        p = nnbin.Params(*(jax.numpy.asarray(a, dtype=f32) for a in arrays), activation="relu")
        Xl, yl = jax.numpy.asarray(X, dtype=f32), jax.numpy.asarray(y, dtype=f32)
        auto = jax.grad(nnbin.loss)(p, Xl, yl)
    else:
        torch = pytest.importorskip("torch")
        leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
        Xl, yl = torch.tensor(X), torch.tensor(y)
        loss = nnbin.loss(nnbin.Params(*leaves, activation="relu"), Xl, yl)
        auto = torch.autograd.grad(loss, leaves)
    z = np.maximum(X @ arrays[0], 0.0) @ arrays[2] + arrays[3]
    assert np.sum(z == 0.0) == 3  # the case: three logits of exactly 0
    want_db2 = np.mean(1.0 / (1.0 + np.exp(-z)) - y)  # by hand, from the formula
    rtol = 1e-6 if library == "jax" else 1e-12
    np.testing.assert_allclose(np.asarray(auto[3]), [want_db2], rtol=rtol)
    _, hand = nnbin.loss_and_grads(nnbin.Params(*arrays, activation="relu"), X, y)
    for a, h in zip(auto, hand):
        got = np.asarray(a.detach() if library == "torch" else a, dtype=np.float64)
        np.testing.assert_allclose(got, h, rtol=rtol, atol=1e-7)
