"""The fused-step CUDA source (backends/cuda_fused.py), checked without a GPU.

1. Its exact text is compiled as C++ and every kernel is run thread by thread on the CPU;
   the gradients, loss and updated parameters are compared with the conformance suite's
   independent reference, and a bug planted in the kernel text must make that fail.
2. nvcc (where installed) compiles it for an H100 (sm_90).
Whether it runs correctly and fast on a GPU is NOT shown here (issue 9).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from nnbin_backends import cuda_fused

from conformance import reference as ref
from conformance.tolerances import relative_error, rtol

HARNESS = """
extern "C" void run_partials(long long threads, const real* X, const real* y, const real* W1,
                             const real* b1, const real* W2, const real* b2, long long n,
                             int with_loss, real* partial) {
    nnbin_n_threads = threads;
    for (long long t = 0; t < threads; ++t) {
        nnbin_thread_id = t;
        nnbin_partials(X, y, W1, b1, W2, b2, n, with_loss, partial);
    }
}
extern "C" void run_reduce(long long launched, const real* partial, long long threads,
                           long long chunk, long long n_chunks, real* sums) {
    nnbin_n_threads = launched;
    for (long long t = 0; t < launched; ++t) {
        nnbin_thread_id = t;
        nnbin_reduce(partial, threads, chunk, n_chunks, sums);
    }
}
extern "C" void run_update(long long launched, const real* sums, long long n_chunks,
                           long long n, real lr, const real* W1, const real* b1,
                           const real* W2, const real* b2, real* W1o, real* b1o, real* W2o,
                           real* b2o, real* grad, real* loss) {
    nnbin_n_threads = launched;
    for (long long t = 0; t < launched; ++t) {
        nnbin_thread_id = t;
        nnbin_update(sums, n_chunks, n, lr, W1, b1, W2, b2, W1o, b1o, W2o, b2o, grad, loss);
    }
}
"""


def _compile_cpu(source: str, tmp_path) -> ctypes.CDLL:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed: cannot emulate the kernels on the CPU")
    src = tmp_path / "fused.cpp"
    src.write_text(source + HARNESS)
    lib = tmp_path / "fused.so"
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    assert a.flags.c_contiguous
    return ctypes.c_void_p(a.ctypes.data)


def fused_step(lib, w, X, y, dtype, *, lr, threads, chunk):
    """One step through the three kernels, as the cupy backend would launch them."""
    n, d = X.shape
    h = w["W1"].shape[1]
    P = cuda_fused.n_partials(d, h)
    c = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in w.items()}
    Xc, yc = np.ascontiguousarray(X, dtype), np.ascontiguousarray(y, dtype)
    partial = np.full((P, threads), np.nan, dtype)
    n_chunks = -(-threads // chunk)
    sums = np.full((P, n_chunks), np.nan, dtype)
    out = {k: np.full_like(v, np.nan) for k, v in c.items()}
    grad = np.full(P - 1, np.nan, dtype)
    loss = np.full(1, np.nan, dtype)
    real = ctypes.c_float if dtype == "float32" else ctypes.c_double
    ll = ctypes.c_longlong
    lib.run_partials(ll(threads), _ptr(Xc), _ptr(yc), _ptr(c["W1"]), _ptr(c["b1"]),
                     _ptr(c["W2"]), _ptr(c["b2"]), ll(n), ctypes.c_int(1), _ptr(partial))
    lib.run_reduce(ll(P * n_chunks), _ptr(partial), ll(threads), ll(chunk), ll(n_chunks),
                   _ptr(sums))
    lib.run_update(ll(P), _ptr(sums), ll(n_chunks), ll(n), real(lr), _ptr(c["W1"]),
                   _ptr(c["b1"]), _ptr(c["W2"]), _ptr(c["b2"]), _ptr(out["W1"]),
                   _ptr(out["b1"]), _ptr(out["W2"]), _ptr(out["b2"]), _ptr(grad), _ptr(loss))
    dh = d * h
    grads = {"W1": grad[:dh].reshape(d, h), "b1": grad[dh:dh + h],
             "W2": grad[dh + h:dh + 2 * h].reshape(h, 1), "b2": grad[dh + 2 * h:]}
    return float(loss[0]), grads, out


CASES = [(2000, 1, 32, 37, 8), (101, 3, 5, 16, 5), (64, 8, 17, 64, 64), (7, 2, 3, 13, 4)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n,d,h,threads,chunk", CASES)
def test_kernels_match_the_reference(tmp_path, dtype, n, d, h, threads, chunk):
    lib = _compile_cpu(cuda_fused.kernel_source(d, h, dtype), tmp_path)
    rng = np.random.default_rng(n + d + h)
    X = rng.normal(0, 2, (n, d)).astype(dtype).astype(np.float64)
    y = (rng.random((n, 1)) < 0.5).astype(np.float64)
    w = {"W1": rng.normal(0, 1, (d, h)), "b1": rng.normal(0, 1, h),
         "W2": rng.normal(0, 1, (h, 1)), "b2": rng.normal(0, 1, 1)}
    w = {k: v.astype(dtype).astype(np.float64) for k, v in w.items()}
    loss, grads, new = fused_step(lib, w, X, y, dtype, lr=0.5, threads=threads, chunk=chunk)
    tol = rtol(dtype, "op")
    assert abs(loss - ref.loss(w, X, y)) <= tol * ref.loss(w, X, y)
    expected = ref.gradients(w, X, y)
    stepped = ref.step(w, X, y, 0.5)
    for k in ("W1", "b1", "W2", "b2"):
        assert relative_error(grads[k], expected[k]) <= tol, k
        assert relative_error(new[k], stepped[k]) <= tol, k
    again = fused_step(lib, w, X, y, dtype, lr=0.5, threads=threads, chunk=chunk)
    for k in new:  # fixed-order sums: bit-identical run after run
        assert again[2][k].tobytes() == new[k].tobytes()


@pytest.mark.parametrize("old,new", [
    ("((real)1 - h[j])", "((real)1)"),                 # drop the sigmoid's derivative
    ("g *= W2[k % H_];", ""),                           # drop the W2 scale of dW1
    ("g = g / (real)n;", ""),                           # forget 1/N
])
def test_a_planted_kernel_bug_fails_the_check(tmp_path, old, new):
    source = cuda_fused.kernel_source(3, 5, "float64")
    assert source.count(old) == 1
    lib = _compile_cpu(source.replace(old, new), tmp_path)
    rng = np.random.default_rng(1)
    X = rng.normal(0, 2, (50, 3))
    y = (rng.random((50, 1)) < 0.5).astype(np.float64)
    w = {"W1": rng.normal(0, 1, (3, 5)), "b1": rng.normal(0, 1, 5),
         "W2": rng.normal(0, 1, (5, 1)), "b2": rng.normal(0, 1, 1)}
    _, grads, _ = fused_step(lib, w, X, y, "float64", lr=0.5, threads=8, chunk=3)
    expected = ref.gradients(w, X, y)
    assert max(relative_error(grads[k], expected[k]) for k in expected) > 1e-3


@pytest.mark.parametrize("d,h,dtype", [(1, 32, "float32"), (1, 32, "float64"),
                                       (64, 256, "float32"), (3, 7, "float64")])
def test_nvcc_compiles_the_kernels_for_an_h100(tmp_path, d, h, dtype):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed: the CUDA source is not compile-checked")
    src = tmp_path / "fused.cu"
    src.write_text(cuda_fused.kernel_source(d, h, dtype))
    out = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "f.cubin"),
                          str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_limits():
    assert cuda_fused.supported(1, 32, "float32") and cuda_fused.supported(64, 256, "float64")
    assert not cuda_fused.supported(65, 32, "float32")
    assert not cuda_fused.supported(1, 257, "float32")
    assert not cuda_fused.supported(1, 32, "float16")
    with pytest.raises(ValueError, match="no fused step"):
        cuda_fused.kernel_source(1, 300, "float32")
