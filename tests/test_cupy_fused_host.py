"""The cupy backend's fused-step driver (buffers, launch shapes, scalar types, logging,
divergence), run on the CPU: a stand-in for cupy whose RawModule compiles the same kernel
text as C++ and runs each launch thread by thread (see test_fused_kernels.py), with NumPy
arrays as device memory. What only a GPU can show (CUDA semantics, speed) is not shown."""

from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest
from test_fused_kernels import _compile_cpu

import nnbin
from nnbin.training import python_loop


class _Kernel:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, grid, block, args):
        converted = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous
                converted.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.int64):
                converted.append(ctypes.c_longlong(int(a)))
            elif isinstance(a, np.int32):
                converted.append(ctypes.c_int(int(a)))
            elif isinstance(a, np.float32):
                converted.append(ctypes.c_float(float(a)))
            elif isinstance(a, np.float64):
                converted.append(ctypes.c_double(float(a)))
            else:
                raise TypeError(f"a CUDA kernel cannot take {type(a)}")
        self.fn(ctypes.c_longlong(grid[0] * block[0]), *converted)


def fake_cupy(tmp_path):
    def raw_module(code, options=()):
        lib = _compile_cpu(code, tmp_path)
        return types.SimpleNamespace(
            get_function=lambda name: _Kernel(getattr(lib, name.replace("nnbin_", "run_"))))

    return types.SimpleNamespace(
        RawModule=raw_module, empty=np.empty, empty_like=np.empty_like,
        ascontiguousarray=np.ascontiguousarray,
        array=lambda a, copy=True, order="C": np.array(a, copy=copy, order=order))


@pytest.fixture
def backend(tmp_path):
    from nnbin_backends.cupy import CupyBackend

    be = object.__new__(CupyBackend)  # no GPU here: skip __init__'s device check
    be._cupy = fake_cupy(tmp_path)
    be._modules = {}
    be.xp = nnbin.get_backend("numpy").xp
    return be


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_matches_the_core(backend, dtype):
    X, y = nnbin.two_gaussians(n_per_class=300, seed=0)
    X, y = X.astype(dtype), y.astype(dtype)
    p0 = nnbin.init_params(1, 8, seed=2, dtype=dtype)
    before = [p.copy() for p in p0]
    fused = backend.run(p0, X, y, lr=1.0, steps=25, log_every=10)
    core = python_loop(p0, X, y, lr=1.0, steps=25, log_every=10)
    assert fused.loop.startswith("fused CUDA step")
    assert [s for s, _ in fused.history] == [0, 10, 20]
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose([v for _, v in fused.history], [v for _, v in core.history],
                               rtol=tol)
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    for a, b in zip(p0, before):  # the caller's parameters are never written
        np.testing.assert_array_equal(a, b)
    again = backend.run(p0, X, y, lr=1.0, steps=25, log_every=10)
    for a, b in zip(fused.params, again.params):
        assert a.tobytes() == b.tobytes()


def test_fused_false_runs_the_core_and_limits_fall_back(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    assert backend.run(p0, X, y, lr=1.0, steps=2, log_every=1, fused=False).loop \
        .startswith("python loop")
    wide = nnbin.init_params(1, 300, seed=0)
    assert backend.run(wide, X, y, lr=1.0, steps=1, log_every=1).loop.startswith("python")
    with pytest.raises(nnbin.BackendUnavailableError, match="no fused step"):
        backend.run(wide, X, y, lr=1.0, steps=1, log_every=1, fused=True)


def test_fused_divergence_keeps_a_copy_of_the_last_finite_parameters(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    with pytest.raises(nnbin.TrainingDivergedError) as info, np.errstate(all="ignore"):
        backend.run(p0, X, y, lr=1e308, steps=6, log_every=1)
    err = info.value
    assert err.step == 1 and err.last_finite_step == 0
    for a, b in zip(err.params, p0):
        np.testing.assert_array_equal(a, b)


def test_fused_loss_and_grads_match_the_core(backend):
    X, y = nnbin.two_gaussians(n_per_class=40, seed=1, n_features=3)
    p0 = nnbin.init_params(3, 5, seed=1)
    loss, grads = backend.fused_loss_and_grads(p0, X, y)
    want_loss, want = nnbin.loss_and_grads(p0, X, y)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-12)
    for a, b in zip(grads, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
