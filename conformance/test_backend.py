"""Per backend and dtype: forward, loss, the four gradients, one step and a whole run,
against the independent NumPy reference, from identical initial weights."""

from __future__ import annotations

import numpy as np
import pytest

import nnbin
from nnbin.loop import run as run_loop
from nnbin.options import Config

from . import reference as ref
from .helpers import (
    NAMES,
    assert_close,
    check_gradients,
    forbid_host_sync,
    random_case,
    reference_seed_run,
    seed_case,
    seed_data,
)

# Dask schedules every step as a task graph (~60 ms a step at N = 2e4 here), so its whole
# run is checked over 300 steps instead of 1,000: still three logged losses and final
# parameters far from the start.
SEED_RUN_STEPS = {"dask": 300}
#: test_train_matches_reference's steps (300), fewer where its ~60 ms a step of graph
#: scheduling makes them slow: nnbin.train's own part (initialisation, placement) is the
#: same at any length, and test_seed_run runs the backend's loop the longer way
TRAIN_STEPS = {"dask": 100}

SHAPES = [  # (N, D, H): the seed network, several D and H, N not a multiple of any block
    (20_000, 1, 32),
    (37, 1, 1),
    (101, 3, 5),
    (64, 8, 17),
    (250, 2, 64),
]


def _case(backend, dtype, shape):
    if shape == (20_000, 1, 32):
        return seed_case(backend, dtype)
    n, d, h = shape
    return random_case(backend, dtype, n, d, h, seed=n + d + h)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-D{}-H{}".format(*s))
def test_forward(backend, dtype, shape):
    case = _case(backend, dtype, shape)
    _, z = ref.forward(case.w, case.X)
    assert_close(
        backend, nnbin.forward(case.params, case.Xd), z, dtype=dtype, what="op", label="logits"
    )
    p = ref.sigmoid(z)
    assert_close(
        backend,
        nnbin.predict_proba(case.params, case.Xd),
        p,
        dtype=dtype,
        what="op",
        label="probabilities",
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-D{}-H{}".format(*s))
def test_loss(backend, dtype, shape):
    case = _case(backend, dtype, shape)
    got = nnbin.loss(case.params, case.Xd, case.yd)
    assert_close(
        backend,
        got,
        np.asarray(ref.loss(case.w, case.X, case.y)),
        dtype=dtype,
        what="op",
        label="loss",
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-D{}-H{}".format(*s))
@pytest.mark.parametrize("blocks", ["whole", "backend", "7"])
def test_gradients(backend, dtype, shape, blocks):
    """Every execution path of the backward pass: one block, the backend's own block size
    (what training uses), and small blocks with a ragged last one."""
    if blocks == "7" and shape[0] > 1000:
        pytest.skip("7-row blocks are checked on the small shapes (the same code path)")
    case = _case(backend, dtype, shape)
    rows = {"whole": None, "backend": backend.block_rows(shape[0], shape[2]), "7": 7}[blocks]
    check_gradients(case, nnbin.loss_and_grads, block_rows=rows)


def _fused_case(backend, dtype, shape):
    """The case of ``shape``, or a skip where the backend has no fused step for it."""
    if backend.runners.fused is None:
        pytest.skip(f"{backend.name} has no fused step")
    case = _case(backend, dtype, shape)
    if backend.runners.fused.refusal(case.params, case.Xd) is not None:
        pytest.skip("outside the fused step's limits")
    return case


def _path_kwargs(backend, path):
    """``run``'s arguments for the "default" path, or the array-API "core" where a backend
    also has a fused step (a skip where it has only one path)."""
    if path == "default":
        return {}
    if backend.runners.fused is None:
        pytest.skip(f"{backend.name} has one path, run as 'default'")
    return {"fused": False}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-D{}-H{}".format(*s))
def test_fused_gradients(backend, dtype, shape):
    """A backend's fused step (cupy): its loss and four gradients, like the core's."""
    case = _fused_case(backend, dtype, shape)
    check_gradients(case, backend.runners.fused.loss_and_grads)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-D{}-H{}".format(*s))
def test_fused_steps(backend, dtype, shape):
    """The fused path's updates: one step, and five without logging (on cupy, one CUDA
    graph replay), against the reference's."""
    case = _fused_case(backend, dtype, shape)
    one = run_loop(backend, case.params, case.Xd, case.yd, lr=0.5, steps=1, log_every=0, fused=True)
    expected = ref.step(case.w, case.X, case.y, lr=0.5)
    for name, p in zip(NAMES, one.params):
        assert_close(backend, p, expected[name], dtype=dtype, what="op", label=name)
    five = run_loop(
        backend, case.params, case.Xd, case.yd, lr=0.5, steps=5, log_every=0, fused=True
    )
    expected = ref.train(case.w, case.X, case.y, lr=0.5, steps=5, log_every=5).final
    for name, p in zip(NAMES, five.params):
        assert_close(backend, p, expected[name], dtype=dtype, what="run", label=name)


def test_fused_runs_are_bit_identical(backend, dtype):
    """Fixed-order sums: the same run twice gives the same bits, and so does launching every
    step instead of replaying CUDA graphs (``fused_graphs=False``)."""
    case = _fused_case(backend, dtype, SHAPES[0])

    def bits(graphs):
        run = run_loop(
            backend, case.params, case.Xd, case.yd, lr=1.0, steps=60, log_every=25, fused=True,
            config=Config(fused_graphs=graphs),
        )  # fmt: skip
        return [backend.to_host(p).tobytes() for p in run.params], run.history

    first = bits(True)
    assert bits(True) == first
    assert bits(False) == first


@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: "N{}-D{}-H{}".format(*s))
def test_one_step(backend, dtype, shape):
    case = _case(backend, dtype, shape)
    new = nnbin.step(case.params, case.Xd, case.yd, lr=0.5)
    expected = ref.step(case.w, case.X, case.y, lr=0.5)
    for name, p in zip(NAMES, new):
        assert_close(backend, p, expected[name], dtype=dtype, what="op", label=name)


@pytest.mark.parametrize("path", ["default", "core"])
def test_seed_run(backend, dtype, path):
    """The backend's own training loop (the path nnbin.train takes): 1,000 steps of the
    seed job, the loss every 100 steps and the final parameters (fewer steps where a full
    run is slow: see SEED_RUN_STEPS). Backends with a fused step run both paths."""
    kwargs = _path_kwargs(backend, path)
    steps = SEED_RUN_STEPS.get(backend.name, 1000)
    case = seed_case(backend, dtype)
    run = run_loop(
        backend, case.params, case.Xd, case.yd, lr=1.0, steps=steps, log_every=100, **kwargs
    )
    expected = reference_seed_run(dtype, steps, 100)
    assert [s for s, _ in run.history] == [s for s, _ in expected.losses]
    got = np.array([float(v) for _, v in run.history])
    want = np.array([v for _, v in expected.losses])
    from .tolerances import relative_error, rtol

    for i, (g, w) in enumerate(zip(got, want)):
        err = relative_error(np.asarray(g), np.asarray(w))
        assert err <= rtol(dtype, "run"), f"loss at step {100 * i}: {g} vs {w} ({err:.3g})"
    for name, p in zip(NAMES, run.params):
        assert_close(backend, p, expected.final[name], dtype=dtype, what="run", label=name)


@pytest.mark.parametrize("path", ["default", "core"])
def test_no_host_synchronisation_between_logging_steps(backend, dtype, path):
    """Steps without logging never wait for the device: 30 of them run inside the backend's
    synchronisation detector (cupy: cupyx.allow_synchronize(False); torch on CUDA: sync
    debug mode "error"), and the detector does catch the loss read of a logging step."""
    case = seed_case(backend, dtype)
    if forbid_host_sync(backend, case.Xd) is None:
        pytest.skip(f"{backend.name} cannot detect host synchronisation here")
    kwargs = _path_kwargs(backend, path)
    run = run_loop(backend, case.params, case.Xd, case.yd, lr=1.0, steps=3, log_every=0, **kwargs)
    backend.synchronize(run.params)  # compilation, first-call work: outside the detector
    with forbid_host_sync(backend, case.Xd):
        run = run_loop(
            backend, case.params, case.Xd, case.yd, lr=1.0, steps=30, log_every=0, **kwargs
        )
    backend.synchronize(run.params)
    guard = forbid_host_sync(backend, case.Xd)  # cupyx.DeviceSynchronized, RuntimeError
    with pytest.raises(Exception, match=r"(?i)synchroniz"), guard:
        run_loop(backend, case.params, case.Xd, case.yd, lr=1.0, steps=30, log_every=10, **kwargs)


def test_train_matches_reference(backend, dtype):
    """nnbin.train end to end from a seed: its own initialisation and data transfer too."""
    X, y = seed_data()
    steps = TRAIN_STEPS.get(backend.name, 300)
    result = nnbin.train(
        rounded_host(X, dtype),
        y,
        steps=steps,
        log_every=100,
        seed=0,
        backend=backend.name,
        dtype=dtype,
    )
    expected = reference_seed_run(dtype, steps, 100)
    assert result.backend == backend.name and result.dtype == dtype
    got = np.array([v for _, v in result.history])
    want = np.array([v for _, v in expected.losses])
    np.testing.assert_array_equal([s for s, _ in result.history], list(range(0, steps, 100)))
    from .tolerances import relative_error, rtol

    assert relative_error(got, want) <= rtol(dtype, "run")
    assert abs(result.final_loss - expected.final_loss) <= rtol(dtype, "run") * expected.final_loss
    for name, p in zip(NAMES, result.params):
        assert_close(backend, p, expected.final[name], dtype=dtype, what="run", label=name)


def rounded_host(X, dtype):
    return np.asarray(X, dtype=dtype)


# exp(-a) overflowing to inf is how sigmoid reaches its exact value 0; NumPy says so.
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("path", ["core", "fused"])
def test_extreme_logits_are_finite(backend, dtype, path):
    """|z| up to 1e4: the loss is |z| per misclassified sample, gradients stay bounded."""
    loss_and_grads = nnbin.loss_and_grads
    if path == "fused":
        if backend.runners.fused is None:
            pytest.skip(f"{backend.name} has no fused step")
        loss_and_grads = backend.runners.fused.loss_and_grads
    rng = np.random.default_rng(7)
    n, h = 64, 8
    X = rng.normal(0, 1, (n, 1))
    y = (rng.random((n, 1)) < 0.5).astype(np.float64)
    # b2 = +-1e4 pushes every logit to about +-1e4: half the samples badly wrong
    for b2 in (1e4, -1e4, 1e3, -1e3):
        w = {
            "W1": rng.normal(0, 1, (1, h)),
            "b1": np.zeros(h),
            "W2": rng.normal(0, 1, (h, 1)),
            "b2": np.array([b2]),
        }
        params = nnbin.Params(*(backend.asarray(w[k], dtype) for k in NAMES), activation="sigmoid")
        loss, grads = loss_and_grads(params, backend.asarray(X, dtype), backend.asarray(y, dtype))
        _, z = ref.forward(w, X)
        # exact in this regime: softplus(z) - y z = max(z, 0) - y z (+ e^-|z| < 1e-400)
        want_loss = float(np.mean(np.maximum(z, 0.0) - y * z))
        got = float(backend.to_host(loss))
        assert np.isfinite(got) and abs(got - want_loss) <= 1e-6 * abs(want_loss)
        p_minus_y = np.where(z > 0, 1.0, 0.0) - y  # sigmoid(z) is exactly 0 or 1 here
        want_db2 = p_minus_y.mean(axis=0)
        host = [backend.to_host(g) for g in grads]
        assert all(np.all(np.isfinite(g)) for g in host)
        np.testing.assert_allclose(host[3], want_db2, rtol=1e-6, atol=1e-12)
