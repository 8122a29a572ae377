"""Any array-API library with no backend of its own (issue #42): ``backend_of`` binds the
arrays of a library no registered backend owns with the defaults (``ArrayApiBackend``), so
``nnbin.train`` and the estimator run on them and give back arrays of that library.

Two libraries: array-api-strict with its registration hidden (the ``strict`` backend taken
out of the registry for the test), and cubed (lazy: every step's graph is recomputed at each
read, so its runs here are a few steps on small data)."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import nnbin
from nnbin import backend as backend_mod
from nnbin.backend import ArrayApiBackend

LIBRARIES = ["array_api_strict", "cubed"]


@pytest.fixture(params=LIBRARIES)
def xp(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The library's namespace, no registered backend owning its arrays, a fresh cache."""
    name = request.param
    lib = pytest.importorskip(name, reason=f"{name} is not installed")
    table = {k: v for k, v in backend_mod._registered().items() if k != "strict"}
    monkeypatch.setattr(backend_mod, "_registered", lambda: table)
    monkeypatch.setattr(backend_mod, "_cache", {})  # restored after the test
    return array_api_compat.array_namespace(lib.asarray(np.zeros(1)))


def test_arrays_of_an_unregistered_library_get_the_generic_binding(xp):
    a = xp.asarray(np.zeros((2, 1)))
    assert not any(backend_mod.backend_class(n).owns(a) for n in backend_mod._registered())
    be = nnbin.backend_of(a)
    assert isinstance(be, ArrayApiBackend) and be.xp is xp
    assert be.name == f"array-api:{xp.__name__}"
    assert nnbin.backend_of(xp.asarray(np.ones(3))) is be  # one binding per namespace
    assert nnbin.get_backend(be.name) is be
    assert be.dtypes == ("float32", "float64") and be.default_dtype == "float64"
    assert be.owns(a) and not be.owns(np.zeros(2)) and not be.owns([1.0])
    placed = be.asarray(np.arange(3.0), "float32")
    assert be.owns(placed) and placed.dtype == xp.float32
    host = be.to_host(placed)
    assert isinstance(host, np.ndarray) and host.tolist() == [0.0, 1.0, 2.0]


def test_train_returns_the_librarys_arrays_equal_to_numpys(xp):
    """The seed job (float64): strict's run equals NumPy's bit for bit (the same NumPy
    operations underneath, one block of rows); cubed's to rounding (its matmul and sums
    order the additions otherwise), on fewer steps (see the module's note)."""
    strict = xp.__name__ == "array_api_strict"
    steps = 20 if strict else 3
    X, y = nnbin.two_gaussians(n_per_class=200, seed=0)
    got = nnbin.train(xp.asarray(X), xp.asarray(y), steps=steps, log_every=5, seed=1)
    want = nnbin.train(X, y, steps=steps, log_every=5, seed=1)
    assert got.backend == f"array-api:{xp.__name__}" and got.dtype == "float64"
    be = nnbin.backend_of(got.params[0])
    assert isinstance(be, ArrayApiBackend)
    for p, q in zip(got.params, want.params, strict=True):
        assert array_api_compat.array_namespace(p) is xp and p.dtype == xp.float64
        if strict:
            np.testing.assert_array_equal(be.to_host(p), q)
        else:
            np.testing.assert_allclose(be.to_host(p), q, rtol=1e-13, atol=1e-15)
    assert [s for s, _ in got.history] == [s for s, _ in want.history]
    np.testing.assert_allclose(
        [v for _, v in got.history], [v for _, v in want.history], rtol=0 if strict else 1e-13
    )
    np.testing.assert_allclose(got.final_loss, want.final_loss, rtol=0 if strict else 1e-13)


def test_estimator_fits_and_predicts_with_the_librarys_arrays(xp):
    sklearn = pytest.importorskip("sklearn")
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    labels = np.where(y[:, 0] == 1.0, 5.0, 3.0)  # labels of its own: classes_ mapped back
    kw = {"max_iter": 1, "solver": "sgd", "hidden_layer_sizes": (4,), "random_state": 0}
    Xa, ya = xp.asarray(X), xp.asarray(labels)
    with sklearn.config_context(array_api_dispatch=True), pytest.warns(Warning):
        clf = nnbin.BinaryMLPClassifier(**kw).fit(Xa, ya)
        proba, predicted = clf.predict_proba(Xa), clf.predict(Xa)
    for a in (proba, predicted, clf.params_[0]):
        assert array_api_compat.array_namespace(a) is xp
    be = nnbin.backend_of(proba)
    assert isinstance(be, ArrayApiBackend) and be.name == f"array-api:{xp.__name__}"
    assert proba.shape == (40, 2) and predicted.shape == (40,)
    with pytest.warns(Warning):
        ref = nnbin.BinaryMLPClassifier(**kw).fit(X, labels)
    np.testing.assert_allclose(be.to_host(proba), ref.predict_proba(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(be.to_host(predicted), ref.predict(X))


class _NotAnArray:
    """Shape and dtype, but no __array_namespace__: no library nnbin can use."""

    shape, ndim, dtype = (2, 1), 2, np.dtype("float64")


@pytest.mark.parametrize("thing", [[[1.0], [2.0]], _NotAnArray()], ids=["list", "no-namespace"])
def test_what_is_not_an_array_api_array_is_one_clear_error(thing):
    kind = f"{type(thing).__module__}.{type(thing).__qualname__}"
    with pytest.raises(nnbin.InvalidInputError, match="does not know arrays of type") as e:
        nnbin.backend_of(thing)
    message = str(e.value)
    assert "\n" not in message and kind in message and "__array_namespace__" in message
    with pytest.raises(nnbin.NnbinError, match=r"numpy\.asarray"):
        backend_mod.backend_and_dtype(thing, None, None)
