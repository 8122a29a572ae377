"""`nnbin.train`'s bad input: one clear error each (message, exception type), no file
changed; divergence keeps the last finite parameters. The README's "Bad input" table lists
these cases (`API_CASES`)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nnbin
from nnbin.validate import InvalidInputError

X0, Y0 = nnbin.two_gaussians(n_per_class=20, seed=0)


API_CASES = {
    "X is 1-D": (lambda: nnbin.train(X0[:, 0], Y0), InvalidInputError, "reshape(-1, 1)"),
    "X is 3-D": (lambda: nnbin.train(X0[:, :, None], Y0), InvalidInputError, "must be 2-D"),
    "X is a list": (lambda: nnbin.train(X0.tolist(), Y0), InvalidInputError, "numpy.asarray"),
    "X has no rows": (
        lambda: nnbin.train(X0[:0], Y0[:0]),
        InvalidInputError,
        "at least one sample",
    ),
    "y has the wrong number of rows": (
        lambda: nnbin.train(X0, Y0[:-1]),
        InvalidInputError,
        "40 rows but y has 39",
    ),
    "y has two columns": (
        lambda: nnbin.train(X0, np.hstack([Y0, Y0])),
        InvalidInputError,
        "shape (N,) or (N, 1)",
    ),
    "y holds labels other than 0/1": (
        lambda: nnbin.train(X0, Y0 * 2),
        InvalidInputError,
        "only the labels 0 and 1",
    ),
    "y has one class only": (
        lambda: nnbin.train(X0, np.zeros_like(Y0)),
        InvalidInputError,
        "both classes",
    ),
    "X contains NaN": (
        lambda: nnbin.train(np.where(Y0 > 0, np.nan, X0), Y0),
        InvalidInputError,
        "NaN or infinite",
    ),
    "X contains infinity": (
        lambda: nnbin.train(np.where(Y0 > 0, np.inf, X0), Y0),
        InvalidInputError,
        "NaN or infinite",
    ),
    "X is complex": (
        lambda: nnbin.train(X0.astype(complex), Y0),
        InvalidInputError,
        "real numbers",
    ),
    "hidden is 0": (
        lambda: nnbin.train(X0, Y0, hidden=0),
        InvalidInputError,
        "hidden must be >= 1",
    ),
    "hidden is not whole": (
        lambda: nnbin.train(X0, Y0, hidden=2.5),
        InvalidInputError,
        "whole number",
    ),
    "lr is 0": (lambda: nnbin.train(X0, Y0, lr=0), InvalidInputError, "finite number > 0"),
    "lr is NaN": (
        lambda: nnbin.train(X0, Y0, lr=float("nan")),
        InvalidInputError,
        "finite number > 0",
    ),
    "steps is negative": (
        lambda: nnbin.train(X0, Y0, steps=-1),
        InvalidInputError,
        "steps must be >= 0",
    ),
    "dtype unsupported": (
        lambda: nnbin.train(X0, Y0, dtype="float16"),
        ValueError,
        "dtype must be one of float32, float64",
    ),
    "unknown backend": (
        lambda: nnbin.train(X0, Y0, backend="nope"),
        nnbin.UnknownBackendError,
        "choose one of",
    ),
    "data-parallel on numpy": (
        lambda: nnbin.train(X0, Y0, data_parallel=2),
        nnbin.BackendUnavailableError,
        "no data-parallel",
    ),
    "diverging learning rate": (
        lambda: nnbin.train(X0, Y0, steps=3, log_every=1, lr=1e308),
        nnbin.TrainingDivergedError,
        "not finite at step 1",
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", list(API_CASES))
def test_api_bad_input(case, workdir):
    _, snapshot = workdir
    before = snapshot()
    call, exc_type, needle = API_CASES[case]
    with pytest.raises(exc_type) as info:
        call()
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert snapshot() == before


def test_mixed_libraries_name_both():
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(
        nnbin.MixedArraysError,
        match=r"X is a numpy.ndarray but y is a "
        r"array_api_strict",
    ):
        nnbin.train(X0, xp.asarray(Y0))


def test_integer_data_is_converted_with_a_note():
    with pytest.warns(UserWarning, match="converting it to float64"):
        result = nnbin.train(np.round(X0).astype(np.int64), Y0.astype(np.int64), steps=2)
    assert result.dtype == "float64"


def test_divergence_keeps_the_last_finite_parameters():
    with pytest.raises(nnbin.TrainingDivergedError) as info, np.errstate(all="ignore"):
        nnbin.train(X0, Y0, steps=5, log_every=1, lr=1e308)
    err = info.value
    assert err.step == 1 and err.lr == 1e308 and err.last_finite_step == 0
    assert all(np.all(np.isfinite(p)) for p in err.params)
    np.testing.assert_array_equal(err.params.W1, nnbin.init_params(1, 32, 0).W1)


def test_divergence_says_what_fits_its_cause():
    """A loss that is not finite before any update (uniformly huge sample weights: their sum
    overflows; the step size is not the cause) is not told to lower the step size; nor is
    L-BFGS, which takes none (both were, "at step 0" too)."""
    huge = np.full(X0.shape[0], 1e308)
    for optimizer in ("gd", "lbfgs"):
        kw = {"lr": 0.1} if optimizer == "gd" else {}
        with pytest.raises(nnbin.TrainingDivergedError) as info, np.errstate(all="ignore"):
            nnbin.train(X0, Y0, steps=3, log_every=1, sample_weight=huge, optimizer=optimizer, **kw)
        said = str(info.value)
        assert "step 0, before any update" in said and "learning rate" not in said, said
        assert "sample weights" in said and info.value.step == 0
    from nnbin.loop import diverged

    params = nnbin.init_params(1, 4, 0)
    said = str(diverged(3, 1.0, None, params, own_steps=True))
    assert "L-BFGS chooses its own step sizes" in said and "learning rate" not in said
    assert "try a smaller learning rate" in str(diverged(3, 1.0, None, params))


def test_divergence_on_jax_keeps_the_last_finite_parameters():
    jax = pytest.importorskip("jax")
    Xj, yj = jax.numpy.asarray(X0, "float32"), jax.numpy.asarray(Y0, "float32")
    with pytest.raises(nnbin.TrainingDivergedError) as info:
        nnbin.train(Xj, yj, steps=6, log_every=2, lr=1e38)
    err = info.value
    assert err.step == 2 and err.last_finite_step == 0
    assert all(bool(jax.numpy.all(jax.numpy.isfinite(p))) for p in err.params)


def test_hyperparameters_take_numpy_integers_and_refuse_bools_alike(tmp_path):
    result = nnbin.train(
        X0,
        Y0,
        hidden=np.int64(3),
        steps=np.int32(5),
        seed=np.int64(3),
        log_every=np.uint8(2),
        lr=np.float32(0.5),
    )
    assert result.params.W1.shape == (1, 3) and result.settings["seed"] == 3
    assert type(result.settings["seed"]) is int
    nnbin.save(tmp_path / "m.safetensors", result)  # saveable: plain Python numbers
    assert nnbin.load(tmp_path / "m.safetensors").settings["seed"] == 3
    for name in ("hidden", "steps", "log_every", "seed"):
        for bad in (True, np.bool_(True), 2.0, "3", None, np.float64(2.0)):
            with pytest.raises(nnbin.InvalidInputError, match=f"{name} must be a whole"):
                nnbin.train(X0, Y0, **{name: bad})
    with pytest.raises(nnbin.InvalidInputError, match="seed must be >= 0"):
        nnbin.train(X0, Y0, seed=-1)
    for bad in (True, np.bool_(True), "0.5"):
        with pytest.raises(nnbin.InvalidInputError, match="lr must be"):
            nnbin.train(X0, Y0, lr=bad)


def test_steps_beyond_32_bit_counters_are_refused_by_the_api():
    with pytest.raises(nnbin.InvalidInputError, match=r"<= 2,147,483,647"):
        nnbin.train(X0, Y0, steps=2**32)


@pytest.mark.parametrize("where", ["numpy", "torch"])
def test_finite_data_beyond_float32_is_reported_as_such(where):
    X = X0.copy()
    X[3, 0] = 1e39
    if where == "torch":
        torch = pytest.importorskip("torch")
        X, y = torch.from_numpy(X), torch.from_numpy(Y0)
    else:
        y = Y0
    with pytest.raises(nnbin.InvalidInputError, match="beyond float32's range"):
        nnbin.train(X, y, dtype="float32", steps=2)


def test_a_successful_run_prints_no_runtime_warning(workdir, capsys):
    """exp(-a) overflows to inf for very negative a and gives sigmoid = 0 exactly: neither
    the API nor the command line warns about it."""
    import warnings

    X, y = X0 * 200, Y0  # hidden pre-activations in the thousands
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = nnbin.train(X, y, hidden=4, steps=30)
        nnbin.predict_proba(result.params, X)
        nnbin.loss(result.params, X, y)
        assert nnbin.accuracy(result.params, X, y) == 1.0
    np.savetxt("big.csv", np.column_stack([X, y]), delimiter=",", header="x,label", comments="")
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnbin",
            "train",
            "--data",
            "big.csv",
            "--steps",
            "30",
            "--hidden",
            "4",
            "--save",
            "big.safetensors",
            "--plot",
            "big.png",
        ],
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0 and "Warning" not in code.stderr, code.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnbin",
            "predict",
            "--model",
            "big.safetensors",
            "--data",
            "big.csv",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr


@pytest.mark.parametrize("backend", ["numpy", "strict", "torch"])
def test_a_network_that_cannot_fit_is_refused_before_allocating(backend):
    pytest.importorskip({"strict": "array_api_strict"}.get(backend, backend))
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(nnbin.InvalidInputError, match=r"would need about [\d.]+ GiB"):
            nnbin.train(X0, Y0, hidden=10**10, steps=1, backend=backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_arrays_of_one_library_with_another_backend_named_are_refused():
    xp = pytest.importorskip("array_api_strict")
    X, y = xp.asarray(X0), xp.asarray(Y0)
    with pytest.raises(nnbin.MixedArraysError, match="backend='numpy' was asked for"):
        nnbin.train(X, y, steps=1, backend="numpy")


# --- continuing a run: the starting parameters and the optimizer state are checked first ---


def _run(**kw):
    return nnbin.train(X0, Y0, steps=3, log_every=0, batch_size=8, **kw)


def test_an_optimizer_state_that_does_not_fit_is_refused_before_the_run():
    adam_3 = _run(hidden=3, optimizer="adam")
    adam_5 = _run(hidden=5, optimizer="adam")
    momentum_3 = _run(hidden=3, optimizer="momentum")
    p3 = adam_3.params
    cases = [
        # (optimizer, state, what the message says)
        ("adam", adam_5.optimizer_state, "m[0] has shape (1, 5)"),  # another architecture
        ("momentum", adam_3.optimizer_state, "momentum's state (velocity,)"),
        ("adam", momentum_3.optimizer_state, "adam's state (t, m, v)"),
        ("adam", adam_3.optimizer_state[:2], "got a 2-tuple"),
        ("adam", list(adam_3.optimizer_state), "got list"),
        ("gd", adam_3.optimizer_state, "gd's state ()"),
        ("adam", (1.0, *adam_3.optimizer_state[1:]), "t must be a 0-d array"),
        ("adam", (*adam_3.optimizer_state[:2], adam_3.optimizer_state[2][:3]), "v must hold"),
        (
            "momentum",
            (tuple(v.astype(np.float32) for v in momentum_3.optimizer_state[0]),),
            "dtype float32",
        ),
    ]
    for optimizer, state, needle in cases:
        with pytest.raises(nnbin.InvalidInputError) as info:
            _run(hidden=3, optimizer=optimizer, params=p3, optimizer_state=state)
        message = str(info.value)
        assert needle in message and "\n" not in message, (optimizer, needle, message)
    # the state that fits continues the run
    again = _run(hidden=3, optimizer="adam", params=p3, optimizer_state=adam_3.optimizer_state)
    assert float(again.optimizer_state[0]) == 2 * float(adam_3.optimizer_state[0])


def test_a_state_of_another_library_is_refused():
    xp = pytest.importorskip("array_api_strict")
    momentum = _run(hidden=3, optimizer="momentum")
    Xs, ys = xp.asarray(X0), xp.asarray(Y0)
    params = type(momentum.params)(*(xp.asarray(p) for p in momentum.params))
    with pytest.raises(nnbin.MixedArraysError):
        nnbin.train(
            Xs, ys, hidden=3, steps=1, optimizer="momentum", params=params,
            optimizer_state=momentum.optimizer_state,
        )  # fmt: skip


@pytest.mark.parametrize("where, bad", [("W1", np.nan), ("b2", np.inf), ("W2", -np.inf)])
def test_starting_parameters_that_are_not_finite_are_named_not_called_a_divergence(where, bad):
    p = nnbin.init_params(1, 3, seed=0)
    p = p._replace(**{where: np.full_like(getattr(p, where), bad)})
    with pytest.raises(nnbin.InvalidInputError, match="params hold NaN or infinite values") as e:
        nnbin.train(X0, Y0, hidden=3, steps=5, params=p)
    assert not isinstance(e.value, nnbin.TrainingDivergedError)


def test_no_epoch_run_has_no_best_validation_score():
    result = nnbin.train(X0, Y0, steps=0, early_stopping=True, batch_size=8, optimizer="adam")
    assert result.validation_scores == [] and result.best_validation_score is None
    ran = nnbin.train(X0, Y0, steps=2, early_stopping=True, batch_size=8, optimizer="adam")
    assert len(ran.validation_scores) == 2
    assert ran.best_validation_score == max(ran.validation_scores)


def test_a_continued_run_may_see_one_class_a_fresh_one_may_not():
    first = nnbin.train(X0, Y0, hidden=3, steps=5)
    zeros = Y0[:, 0] == 0
    more = nnbin.train(X0[zeros], Y0[zeros], hidden=3, steps=5, params=first.params)
    assert more.params.W1.shape == (1, 3) and len(more.history) >= 1
    with pytest.raises(nnbin.InvalidInputError, match="training needs samples of both classes"):
        nnbin.train(X0[zeros], Y0[zeros], hidden=3, steps=5)


@pytest.mark.parametrize(
    "weights, error, needle",
    [
        (np.ones(39), "InvalidInputError", "has shape (39,); X has 40 rows"),
        (-np.ones(40), "InvalidInputError", "sample_weight sums to -40, not > 0"),
        (np.r_[np.ones(20), -np.ones(20)], "InvalidInputError", "sums to 0, not > 0"),
        (np.r_[np.nan, np.ones(39)], "InvalidInputError", "NaN or infinite"),
        (np.zeros(40), "InvalidInputError", "0 for every sample"),
        (["a"] * 40, "InvalidInputError", "must be numbers"),
        (np.ones((40, 2)), "InvalidInputError", "has shape (40, 2)"),
    ],
    ids=["short", "negative", "sum-zero", "nan", "all-zero", "text", "two-columns"],
)
def test_bad_sample_weights_are_one_error(weights, error, needle):
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    with pytest.raises(getattr(nnbin, error)) as info:
        nnbin.train(X, y, sample_weight=weights, steps=1)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_sample_weights_of_another_library_are_refused_not_copied():
    torch = pytest.importorskip("torch")
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    with pytest.raises(nnbin.MixedArraysError):
        nnbin.train(torch.asarray(X), torch.asarray(y), sample_weight=np.ones(40), steps=1)
    r = nnbin.train(torch.asarray(X), torch.asarray(y), sample_weight=torch.ones(40), steps=2)
    plain = nnbin.train(torch.asarray(X), torch.asarray(y), steps=2)
    assert r.final_loss == pytest.approx(plain.final_loss, rel=1e-12)  # weights of 1: no change
    # the other way round: NumPy data with another library's weights were copied to NumPy
    # without a word; refused, naming the weights (not y)
    with pytest.raises(nnbin.MixedArraysError, match=r"^X is a numpy.ndarray but sample_weight"):
        nnbin.train(X, y, sample_weight=torch.ones(40), steps=1)
    da = pytest.importorskip("dask.array")
    with pytest.raises(nnbin.MixedArraysError, match="sample_weight is a dask"):
        nnbin.train(X, y, sample_weight=da.ones(40), steps=1)
    assert np.isfinite(nnbin.train(X, y, sample_weight=[1.0] * 40, steps=1).final_loss)


def _sparse_x(values: np.ndarray):
    sparse = pytest.importorskip("scipy.sparse")
    return sparse.csr_matrix(values)


def test_sparse_x_is_checked_as_dense_data_are():
    """A SciPy sparse X: its stored values checked once (NaN, dtype), its labels NumPy's, its
    integers converted with the same note as dense integers; the API's functions that take
    dense arrays say so in one line."""
    X = np.zeros((6, 3))
    X[:, 0] = [1.0, -1.0, 2.0, -2.0, 3.0, -3.0]
    y = (X[:, :1] > 0).astype(float)
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        nnbin.train(_sparse_x(bad), y, steps=1)
    torch = pytest.importorskip("torch")
    with pytest.raises(nnbin.MixedArraysError, match=r"sparse.*NumPy array"):
        nnbin.train(_sparse_x(X), torch.asarray(y), steps=1)
    with pytest.warns(UserWarning, match="converting it to float64"):
        result = nnbin.train(_sparse_x(X.astype(np.int64)), y, steps=2, hidden=3)
    assert result.dtype == "float64"
    with pytest.raises(InvalidInputError, match=r"sparse.*torch backend.*X\.toarray\(\)"):
        nnbin.train(_sparse_x(X), y, steps=1, backend="torch")
    with pytest.raises(InvalidInputError, match=r"sparse.*X\.toarray\(\)"):
        nnbin.accuracy(result.params, _sparse_x(X), y)


def test_sparse_x_with_float32_trains_in_float32_and_refuses_what_float32_cannot_hold():
    X = np.zeros((6, 2))
    X[:, 0] = [1.0, -1.0, 2.0, -2.0, 3.0, -3.0]
    y = (X[:, :1] > 0).astype(float)
    result = nnbin.train(_sparse_x(X.astype(np.float32)), y.astype(np.float32), steps=2)
    assert result.dtype == "float32" and result.params[0].dtype == np.float32
    X[1, 1] = 1e39
    with pytest.raises(InvalidInputError, match="float32's range"):
        nnbin.train(_sparse_x(X), y, steps=1, dtype="float32")
