"""The deeper network and its training, per backend and dtype, against the independent
reference (``reference.deep_*``, ``reference.Sgd``, ``reference.Adam``): gradients for every
activation at depths 1, 2 and 3 with odd widths, with and without the L2 penalty; finite
differences; whole runs for every optimizer, full batch and mini-batches; the stopping rules.
Bugs planted in each activation's derivative and in each optimizer's update must fail here.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import numpy as np
import pytest

import nnbin
import nnbin.model
import nnbin.optim
import nnbin.rules

from . import reference as ref
from .helpers import assert_close, rounded
from .test_mutations import _Plant

ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity"]
DEPTHS = [(5,), (7, 3), (5, 3, 7)]  # 1, 2 and 3 hidden layers, odd widths
#: every activation at every depth, and no hidden layer (logistic regression: scikit-learn's
#: hidden_layer_sizes=(); the activation then does nothing, so it is checked once)
NETWORKS = [(a, h) for a in ACTIVATIONS for h in DEPTHS] + [("sigmoid", ())]
NETWORK_IDS = [f"{a}-H{'-'.join(map(str, h)) or 'none'}" for a, h in NETWORKS]


def _names(n_layers: int) -> list[str]:
    return [f"{k}{i}" for i in range(1, n_layers + 1) for k in "Wb"]


class DeepCase:
    """Random data and weights (non-zero biases: every term of the gradient matters), on
    the host in float64 rounded to ``dtype`` and on the backend."""

    def __init__(
        self, be: Any, dtype: str, n: int, d: int, hidden: tuple[int, ...], seed: int
    ) -> None:
        rng = np.random.default_rng(seed)
        self.be, self.dtype = be, dtype
        self.X = rounded(rng.normal(0.0, 1.5, (n, d)), dtype)
        self.y = (rng.random((n, 1)) < 0.5).astype(np.float64)
        sizes = [d, *hidden, 1]
        self.layers = [
            {
                "W": rounded(rng.normal(0, 1, (sizes[i], sizes[i + 1])), dtype),
                "b": rounded(rng.normal(0, 0.5, (sizes[i + 1],)), dtype),
            }
            for i in range(len(sizes) - 1)
        ]
        self.Xd, self.yd = be.asarray(self.X, dtype), be.asarray(self.y, dtype)
        flat = [be.asarray(a, dtype) for a in ref.flat(self.layers)]
        self.params = tuple(flat)  # bare: each check says the activation


def _dtype64(backend: Any) -> str:
    return "float64" if "float64" in backend.dtypes else backend.dtypes[0]


def check_deep_gradients(case: DeepCase, activation: str, alpha: float) -> None:
    loss, grads = nnbin.loss_and_grads(
        case.params, case.Xd, case.yd, activation=activation, alpha=alpha
    )
    want_loss = ref.deep_loss(case.layers, case.X, case.y, activation, alpha)
    assert_close(case.be, loss, np.asarray(want_loss), dtype=case.dtype, what="op", label="loss")
    expected = ref.flat(ref.deep_gradients(case.layers, case.X, case.y, activation, alpha))
    assert len(grads) == len(expected)
    for name, g, e in zip(_names(len(case.layers)), grads, expected):
        assert_close(case.be, g, e, dtype=case.dtype, what="op", label=f"d{name}")


@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("activation, hidden", NETWORKS, ids=NETWORK_IDS)
def test_deep_gradients(backend, dtype, activation, hidden, alpha):
    case = DeepCase(backend, dtype, n=83, d=3, hidden=hidden, seed=len(hidden) * 7 + 1)
    check_deep_gradients(case, activation, alpha)


@pytest.mark.parametrize("activation, hidden", NETWORKS, ids=NETWORK_IDS)
def test_deep_forward(backend, dtype, activation, hidden):
    case = DeepCase(backend, dtype, n=41, d=2, hidden=hidden, seed=5)
    _, _, z = ref.deep_forward(case.layers, case.X, activation)
    got = nnbin.predict_proba(case.params, case.Xd, activation=activation)
    assert_close(backend, got, ref.sigmoid(z), dtype=dtype, what="op", label="probabilities")


@pytest.mark.parametrize("activation, hidden", NETWORKS, ids=NETWORK_IDS)
def test_deep_gradients_match_finite_differences(backend, activation, hidden):
    if "float64" not in backend.dtypes:
        pytest.skip(f"{backend.name} has no float64")
    case = DeepCase(backend, "float64", n=31, d=2, hidden=hidden, seed=11)
    _, grads = nnbin.loss_and_grads(case.params, case.Xd, case.yd, activation=activation, alpha=0.3)
    step = np.finfo(np.float64).eps ** (1 / 3)
    flat = ref.flat(case.layers)
    for k, (name, g) in enumerate(zip(_names(len(case.layers)), grads)):
        fd = np.zeros_like(flat[k])
        for idx in np.ndindex(flat[k].shape):
            h = step * max(1.0, abs(flat[k][idx]))
            values = []
            for sign in (1.0, -1.0):
                moved = [a.copy() for a in flat]
                moved[k][idx] += sign * h
                layers = [{"W": moved[2 * i], "b": moved[2 * i + 1]} for i in range(len(flat) // 2)]
                values.append(ref.deep_loss(layers, case.X, case.y, activation, 0.3))
            fd[idx] = (values[0] - values[1]) / (2 * h)
        err = np.linalg.norm(backend.to_host(g) - fd) / np.linalg.norm(fd)
        assert err <= 1e-6, f"d{name}: {err:.3g} from finite differences ({activation})"


# --- whole runs ------------------------------------------------------------------------------

OPTIMIZERS = {
    # name: (nnbin options, reference optimizer factory, step size)
    "gd": ({"optimizer": "gd"}, lambda lr: ref.Sgd(lr), 0.5),
    "momentum": ({"optimizer": "momentum", "momentum": 0.8}, lambda lr: ref.Sgd(lr, 0.8), 0.1),
    "nesterov": (
        {"optimizer": "momentum", "momentum": 0.8, "nesterov": True},
        lambda lr: ref.Sgd(lr, 0.8, nesterov=True),
        0.1,
    ),
    "adam": (
        {"optimizer": "adam", "beta1": 0.85, "beta2": 0.99},
        lambda lr: ref.Adam(lr, 0.85, 0.99),
        0.02,
    ),
}
ACTIVATION_OF = {"gd": "sigmoid", "momentum": "tanh", "nesterov": "relu", "adam": "tanh"}


def _run_data(n: int = 160, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    X = rng.normal(0.0, 1.0, (n, d))
    y = ((X[:, :1] - 0.5 * X[:, 1:2] ** 2 + 0.3 * rng.normal(size=(n, 1))) > 0).astype(float)
    return X, y


def check_whole_run(
    backend, dtype, name, batch_size, *, epochs=12, weights=None, hidden=(6, 3), sparse=False,
    **extra,
):  # fmt: skip
    """nnbin's run against the reference's; ``sparse``: about 70% of X zero, given to nnbin
    as a SciPy CSR matrix (the reference: the same values, dense)."""
    options, make, lr = OPTIMIZERS[name]
    activation = ACTIVATION_OF[name]
    X, y = _run_data()
    if sparse:
        X[np.random.default_rng(8).random(X.shape) < 0.7] = 0.0
    if weights is not None:  # sample weights, the same to both
        extra_ref = {**extra, "sample_weight": weights}
        extra_nnbin = {**extra, "sample_weight": backend.asarray(weights, dtype)}
    else:
        extra_ref = extra_nnbin = extra
    X = rounded(X, dtype)
    seed = 3
    start = ref.deep_weights(X.shape[1], hidden, seed, activation, "glorot")
    start = [{k: rounded(v, dtype) for k, v in layer.items()} for layer in start]
    expected = ref.deep_train(
        start,
        X,
        y,
        activation=activation,
        optimizer=make(lr),
        epochs=epochs,
        log_every=3,
        batch_size=batch_size,
        alpha=0.01,
        seed=seed,
        **extra_ref,
    )
    if sparse:
        import scipy.sparse

        X_given = scipy.sparse.csr_matrix(X.astype(dtype))
    else:
        X_given = backend.asarray(X, dtype)
    got = nnbin.train(
        X_given,
        backend.asarray(y, dtype),
        hidden=hidden,
        activation=activation,
        init="glorot",
        lr=lr,
        steps=epochs,
        log_every=3,
        batch_size=batch_size,
        alpha=0.01,
        seed=seed,
        **options,
        **extra_nnbin,
    )
    label = f"{name}, batch {batch_size}"
    assert [s for s, _ in got.history] == [s for s, _ in expected.losses], label
    assert got.n_iter == expected.epochs, (
        f"{label}: {got.n_iter} epochs, expected {expected.epochs}"
    )
    assert_close(
        backend,
        backend.asarray(np.array([v for _, v in got.history]), dtype),
        np.array([v for _, v in expected.losses]),
        dtype=dtype,
        what="run",
        label=f"{label}: loss curve",
    )
    for pname, p, e in zip(_names(len(hidden) + 1), got.params, expected.final):
        assert_close(backend, p, e, dtype=dtype, what="run", label=f"{label}: {pname}")
    if expected.scores:
        np.testing.assert_allclose(got.validation_scores, expected.scores, atol=1e-12)
    return got


@pytest.mark.parametrize("batch_size", [None, 48], ids=["full-batch", "batch48"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_whole_run_matches_reference(backend, dtype, name, batch_size):
    check_whole_run(backend, dtype, name, batch_size)


@pytest.mark.parametrize("name, batch_size", [("adam", 32), ("gd", None)])
def test_whole_run_without_a_hidden_layer_matches_reference(backend, dtype, name, batch_size):
    """hidden=(): logistic regression trained by the same loop, optimizers and batches."""
    check_whole_run(backend, dtype, name, batch_size, hidden=())


def test_early_stopping_matches_reference(backend):
    dtype = _dtype64(backend)
    got = check_whole_run(
        backend,
        dtype,
        "adam",
        40,
        epochs=60,
        early_stopping=True,
        validation_fraction=0.25,
        n_iter_no_change=3,
    )
    assert got.n_iter < 60, "the rule never stopped: the check would not test it"


def test_stopping_on_training_loss_matches_reference(backend):
    dtype = _dtype64(backend)
    got = check_whole_run(backend, dtype, "momentum", 40, epochs=80, n_iter_no_change=2, tol=0.02)
    assert got.n_iter < 80, "the rule never stopped: the check would not test it"


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_step_size_schedule_matches_reference(backend, schedule):
    """scikit-learn's schedules: invscaling's step size after every epoch, adaptive's fifth
    each time the stopping rule fires (the run goes on until it fires at <= 1e-6)."""
    dtype = _dtype64(backend)
    if schedule == "invscaling":
        got = check_whole_run(
            backend, dtype, "momentum", 40, epochs=12, learning_rate=schedule, power_t=0.3
        )
        assert got.lr_final == pytest.approx(0.1 / (12 * 160 + 1) ** 0.3, rel=1e-12)
    else:
        got = check_whole_run(
            backend, dtype, "momentum", 40, epochs=80, n_iter_no_change=2, tol=0.02,
            learning_rate=schedule,
        )  # fmt: skip
        assert got.lr_final is not None and got.lr_final < 0.1 / 5, "it never lowered lr"


SCHEDULE_MUTANTS = {
    # schedule -> (Schedule's method, its variable, the buggy value)
    "invscaling": ("rate", "t", "self.seen + (epoch + 1) * self.n"),
    "adaptive": ("fired", "lowered", "self.lr / 2.0"),
}


@pytest.mark.parametrize("schedule", list(SCHEDULE_MUTANTS))
def test_planted_schedule_bug_is_caught(backend, monkeypatch, schedule):
    method, variable, bug = SCHEDULE_MUTANTS[schedule]
    fn = getattr(nnbin.rules.Schedule, method)
    monkeypatch.setattr(nnbin.rules.Schedule, method, _mutated_function(fn, variable, bug))
    with pytest.raises(AssertionError):
        test_step_size_schedule_matches_reference(backend, schedule)


def _sample_weights(n: int, seed: int = 5) -> np.ndarray:
    """Whole weights 0 to 3 (zeros too: a sample that must not count) and one fraction."""
    w = np.random.default_rng(seed).integers(0, 4, n).astype(np.float64)
    w[1] = 0.25
    return w


def check_weighted_gradients(case: DeepCase, activation: str, alpha: float, vg: Any) -> None:
    w = _sample_weights(case.X.shape[0])
    loss, grads = vg(
        case.params, case.Xd, case.yd, activation=activation, alpha=alpha,
        weights=case.be.asarray(w.reshape(-1, 1), case.dtype),
    )  # fmt: skip
    want = ref.deep_loss(case.layers, case.X, case.y, activation, alpha, w)
    assert_close(case.be, loss, np.asarray(want), dtype=case.dtype, what="op", label="loss")
    expected = ref.flat(ref.deep_gradients(case.layers, case.X, case.y, activation, alpha, w))
    for name, g, e in zip(_names(len(case.layers)), grads, expected):
        assert_close(case.be, g, e, dtype=case.dtype, what="op", label=f"weighted d{name}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_weighted_gradients_match_reference(backend, activation):
    """scikit-learn's sample_weight: the weighted mean loss, the penalty over sum(w), the
    gradient of both (zero weights, fractional weights, blocks of rows)."""
    case = DeepCase(backend, _dtype64(backend), n=61, d=3, hidden=(5, 4), seed=11)
    check_weighted_gradients(case, activation, 0.3, nnbin.model.value_and_grads)

    def blocked(*a: Any, **k: Any) -> Any:
        return nnbin.model.value_and_grads(*a, block_rows=16, **k)

    check_weighted_gradients(case, activation, 0.3, blocked)


@pytest.mark.parametrize("planted", [False, True], ids=["unmutated", "mutated"])
def test_planted_bug_without_a_hidden_layer_is_caught(backend, planted):
    """Logistic regression's logits without their bias, z = X Wo: the check of hidden=()
    fails (it is the whole of that network's backward pass: no layer below hides it)."""
    from .test_mutations import mutant

    site = ("_block_grads", "z", "h @ Wo") if planted else None
    case = DeepCase(backend, _dtype64(backend), n=40, d=3, hidden=(), seed=13)
    _, grads = mutant(site).value_and_grads(
        case.params, case.Xd, case.yd, activation="sigmoid", alpha=0.2
    )
    want = ref.flat(ref.deep_gradients(case.layers, case.X, case.y, "sigmoid", 0.2))

    def check() -> None:
        for name, g, e in zip(("W1", "b1"), grads, want, strict=True):
            assert_close(backend, g, e, dtype=case.dtype, what="op", label=f"d{name}")

    if not planted:
        check()
        return
    with pytest.raises(AssertionError):
        check()


@pytest.mark.parametrize("planted", [False, True], ids=["unmutated", "mutated"])
def test_planted_weighting_bug_is_caught(backend, planted):
    """The weighted mean's denominator forgotten (N, not sum(w)): caught."""
    from .test_mutations import mutant

    site = ("value_and_grads", "n", "X.shape[0]") if planted else None
    vg = mutant(site).value_and_grads
    case = DeepCase(backend, _dtype64(backend), n=40, d=3, hidden=(4,), seed=12)
    if not planted:
        check_weighted_gradients(case, "tanh", 0.3, vg)
        return
    with pytest.raises(AssertionError):
        check_weighted_gradients(case, "tanh", 0.3, vg)


@pytest.mark.parametrize(
    "batch_size, extra",
    [
        (None, {}),
        (40, {}),
        (40, {"early_stopping": True, "validation_fraction": 0.25, "n_iter_no_change": 3}),
    ],
    ids=["full-batch", "batch40", "batch40-early-stopping"],
)
def test_sample_weighted_run_matches_reference(backend, batch_size, extra):
    """Whole runs with sample weights: each batch's weighted mean, the held-out accuracy
    weighted (early stopping), against the reference."""
    dtype = _dtype64(backend)
    w = _sample_weights(_run_data()[0].shape[0])
    name = "adam" if extra else "momentum"
    epochs = 30 if extra else 12
    check_whole_run(backend, dtype, name, batch_size, epochs=epochs, weights=w, **extra)


def test_negative_sample_weights_run_matches_reference(backend):
    """Some weights negative (scikit-learn's MLP takes them; the sum stays positive): a
    full-batch run against the reference (a mini-batch's sum could be <= 0)."""
    w = _sample_weights(_run_data()[0].shape[0])
    w[::7] = -0.5
    check_whole_run(backend, _dtype64(backend), "momentum", None, epochs=12, weights=w)


def test_integer_sample_weights_are_repeated_rows(backend):
    """A full-batch run with whole weights is the run on the rows repeated that often."""
    dtype = _dtype64(backend)
    X, y = _run_data(60)
    w = np.random.default_rng(7).integers(0, 4, 60)
    rows = np.repeat(np.arange(60), w)
    put = backend.asarray
    kw = dict(hidden=(4,), steps=15, lr=0.5, seed=1, log_every=5, dtype=dtype)
    weighted = nnbin.train(put(X, dtype), put(y, dtype), sample_weight=put(w, dtype), **kw)
    repeated = nnbin.train(put(X[rows], dtype), put(y[rows], dtype), **kw)
    for p, q in zip(weighted.params, repeated.params):
        assert_close(backend, p, backend.to_host(q), dtype=dtype, what="run", label="params")


# --- planted bugs ----------------------------------------------------------------------------


def _mutated_function(fn: Any, variable: str | None, expression: str | None) -> Any:
    """``fn`` recompiled from its syntax tree with the value of ``variable = ...`` replaced
    by ``expression`` (``variable`` None: its return value; ``expression`` None: nothing
    replaced), in ``fn``'s module's namespace."""
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source)
    if expression is None:
        pass
    elif variable is None:
        returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return)]
        if len(returns) != 1:  # a LookupError: a planted-bug test expects AssertionErrors
            raise LookupError(f"{fn.__qualname__} has {len(returns)} returns")
        returns[0].value = ast.parse(expression, mode="eval").body
    else:
        plant = _Plant(fn.__name__, variable, expression)
        tree = plant.visit(tree)
        if plant.sites != 1:
            raise LookupError(f"{variable} = ... is not in {fn.__qualname__} once")
    tree = ast.fix_missing_locations(tree)
    module = inspect.getmodule(fn)
    assert module is not None
    namespace = dict(module.__dict__)
    exec(compile(tree, f"<mutant of {fn.__qualname__}>", "exec"), namespace)
    return namespace[fn.__name__]


DERIVATIVE_MUTANTS = {
    "sigmoid": (nnbin.model.sigmoid_grad, "h"),
    "tanh": (nnbin.model.tanh_grad, "1.0 - h"),
    "relu": (nnbin.model.relu_grad, "xp.ones_like(h)"),
    "identity": (nnbin.model.identity_grad, "xp.zeros_like(h)"),
}


@pytest.mark.parametrize("planted", [False, True], ids=["unmutated", "mutated"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_planted_derivative_bug_is_caught(backend, monkeypatch, activation, planted):
    fn, bug = DERIVATIVE_MUTANTS[activation]
    forward_fn = nnbin.model.ACTIVATION_FNS[activation][0]
    replacement = _mutated_function(fn, None, bug if planted else None)
    monkeypatch.setitem(nnbin.model.ACTIVATION_FNS, activation, (forward_fn, replacement))
    case = DeepCase(backend, _dtype64(backend), n=60, d=3, hidden=(5, 4), seed=9)
    if not planted:  # the machinery is sound: a recompiled, unedited copy passes
        check_deep_gradients(case, activation, 0.0)
        return
    with pytest.raises(AssertionError):
        check_deep_gradients(case, activation, 0.0)


UPDATE_MUTANTS = {
    # optimizer run -> (variable in Optimizer.update, the buggy value)
    "gd": ("descended", "like(params, (p - 0.5 * lr * g for p, g in zip(params, grads)))"),
    "momentum": ("velocity", "like(params, (v - lr * g for v, g in zip(velocity, grads)))"),
    "nesterov": ("ahead", "velocity"),
    "adam": ("rate", "lr"),
}


@pytest.mark.parametrize("name", list(UPDATE_MUTANTS))
def test_planted_update_bug_is_caught(backend, monkeypatch, name):
    variable, bug = UPDATE_MUTANTS[name]
    monkeypatch.setattr(
        nnbin.optim.Optimizer,
        "update",
        _mutated_function(nnbin.optim.Optimizer.update, variable, bug),
    )
    with pytest.raises(AssertionError):
        check_whole_run(backend, _dtype64(backend), name, 48, epochs=6)
