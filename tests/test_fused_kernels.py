"""The fused-step CUDA source (backends/cuda/kernels.py), checked without a GPU.

1. Its exact text is compiled as C++ and both kernels run on the CPU under a SIMT emulator
   (tests/cuda_emulation.py: threads as coroutines, real barriers, emulated shuffles); the
   gradients, loss and updated parameters are compared with the conformance suite's
   independent reference, and a bug planted in the kernel text must make that fail.
2. nvcc (where installed) compiles it for an H100 (sm_90).
Whether it runs correctly and fast on a GPU is NOT shown here (issue 9).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from cuda_emulation import Kernel, compile_kernels
from nnbin_backends.cuda import kernels as cuda_fused

from conformance import reference as ref
from conformance.tolerances import relative_error, rtol


def fused_step(source, folder, w, X, y, dtype, *, lr, blocks, block):
    """One step through the two kernels, launched as the cupy backend launches them."""
    lib = compile_kernels(source, folder)
    partials, update = Kernel(lib, "nnbin_partials"), Kernel(lib, "nnbin_update")
    n, d = X.shape
    h = w["W1"].shape[1]
    P = cuda_fused.n_partials(d, h)
    c = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in w.items()}
    Xc, yc = np.ascontiguousarray(X, dtype), np.ascontiguousarray(y, dtype)
    partial = np.full((P, blocks), np.nan, dtype)
    out = {k: np.full_like(v, np.nan) for k, v in c.items()}
    grad = np.full(P - 1, np.nan, dtype)
    loss = np.full(1, np.nan, dtype)
    real = np.dtype(dtype).type
    partials(
        (blocks,),
        (block,),
        (Xc, yc, c["W1"], c["b1"], c["W2"], c["b2"], np.int64(n), np.int32(1), partial),
    )
    update(
        (P,),
        (block,),
        (
            partial,
            np.int64(blocks),
            np.int64(n),
            real(lr),
            c["W1"],
            c["b1"],
            c["W2"],
            c["b2"],
            out["W1"],
            out["b1"],
            out["W2"],
            out["b2"],
            grad,
            loss,
        ),
    )
    dh = d * h
    grads = {
        "W1": grad[:dh].reshape(d, h),
        "b1": grad[dh : dh + h],
        "W2": grad[dh + h : dh + 2 * h].reshape(h, 1),
        "b2": grad[dh + 2 * h :],
    }
    return float(loss[0]), grads, out


# (N, D, H, blocks, threads per block): one or several blocks and warps, N not a multiple
# of anything, fewer samples than threads, more blocks than needed
CASES = [
    (2000, 1, 32, 5, 64),
    (101, 3, 5, 2, 96),
    (64, 8, 17, 1, 32),
    (7, 2, 3, 3, 64),
    (50, 1, 40, 1, 32),
    (3001, 2, 4, 40, 32),
]


def _problem(n, d, h, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 2, (n, d)).astype(dtype).astype(np.float64)
    y = (rng.random((n, 1)) < 0.5).astype(np.float64)
    w = {
        "W1": rng.normal(0, 1, (d, h)),
        "b1": rng.normal(0, 1, h),
        "W2": rng.normal(0, 1, (h, 1)),
        "b2": rng.normal(0, 1, 1),
    }
    return X, y, {k: v.astype(dtype).astype(np.float64) for k, v in w.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n,d,h,blocks,block", CASES)
def test_kernels_match_the_reference(tmp_path, dtype, n, d, h, blocks, block):
    source = cuda_fused.kernel_source(d, h, dtype, block=block)
    X, y, w = _problem(n, d, h, dtype, n + d + h)
    loss, grads, new = fused_step(
        source, tmp_path, w, X, y, dtype, lr=0.5, blocks=blocks, block=block
    )
    tol = rtol(dtype, "op")
    assert abs(loss - ref.loss(w, X, y)) <= tol * ref.loss(w, X, y)
    expected = ref.gradients(w, X, y)
    stepped = ref.step(w, X, y, 0.5)
    for k in ("W1", "b1", "W2", "b2"):
        assert relative_error(grads[k], expected[k]) <= tol, k
        assert relative_error(new[k], stepped[k]) <= tol, k
    again = fused_step(source, tmp_path, w, X, y, dtype, lr=0.5, blocks=blocks, block=block)
    for k in new:  # fixed-order sums: bit-identical run after run
        assert again[2][k].tobytes() == new[k].tobytes()


@pytest.mark.parametrize(
    "old,new",
    [
        ("((real)1 - h[j])", "((real)1)"),  # drop the sigmoid's derivative
        ("g *= W2[k % H_];", ""),  # drop the W2 scale of dW1
        ("g = g / (real)n;", ""),  # forget 1/N
        ("offset > 0; offset /= 2", "offset > 1; offset /= 2"),  # a shuffle tree one level short
        ("w < WARPS_; ++w) s +=", "w < 1; ++w) s +="),  # only the first warp's sums
        ("b += BLOCK_) v +=", "b += 2 * BLOCK_) v +="),  # skip every other block's column
    ],
)
def test_a_planted_kernel_bug_fails_the_check(tmp_path, old, new):
    source = cuda_fused.kernel_source(3, 5, "float64", block=64)
    assert source.count(old) == 1, old
    X, y, w = _problem(6000, 3, 5, "float64", 1)  # 70 blocks (> 64 threads), all used
    _, grads, _ = fused_step(
        source.replace(old, new), tmp_path, w, X, y, "float64", lr=0.5, blocks=70, block=64
    )
    expected = ref.gradients(w, X, y)
    assert max(relative_error(grads[k], expected[k]) for k in expected) > 1e-3


def test_the_emulator_reports_a_barrier_some_threads_skip(tmp_path):
    source = cuda_fused.kernel_source(1, 2, "float64", block=32)
    broken = source.replace(
        "__syncthreads();                               // warp_sums",
        "if (threadIdx.x) __syncthreads();  // warp_sums",
    )
    assert broken != source
    X, y, w = _problem(40, 1, 2, "float64", 2)
    with pytest.raises(AssertionError, match="__syncthreads not reached"):
        fused_step(broken, tmp_path, w, X, y, "float64", lr=0.5, blocks=2, block=32)


def test_launch_shapes():
    assert cuda_fused.partials_blocks(1, 264) == 1
    assert cuda_fused.partials_blocks(20_000, 264) == 79  # one sample a thread (H100 run)
    assert cuda_fused.partials_blocks(20_000_000, 264) == 264
    with pytest.raises(ValueError, match="multiple of 32"):
        cuda_fused.kernel_source(1, 4, "float32", block=48)


@pytest.mark.parametrize(
    "d,h,dtype", [(1, 32, "float32"), (1, 32, "float64"), (64, 256, "float32"), (3, 7, "float64")]
)
def test_nvcc_compiles_the_kernels_for_an_h100(tmp_path, d, h, dtype):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed: the CUDA source is not compile-checked")
    src = tmp_path / "fused.cu"
    src.write_text(cuda_fused.kernel_source(d, h, dtype))
    out = subprocess.run(
        [
            "nvcc",
            "-arch=sm_90",
            "-cubin",
            "-Xptxas",
            "-v",
            "-o",
            str(tmp_path / "f.cubin"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    if (d, h, dtype) == (1, 32, "float32"):  # the seed network: every sum in a register
        report = out.stdout + out.stderr
        partials = report[report.index("Function properties for nnbin_partials") :]
        assert " 0 bytes spill stores" in partials.splitlines()[1], report


def test_limits():
    assert cuda_fused.supported(1, 32, "float32") and cuda_fused.supported(64, 256, "float64")
    assert not cuda_fused.supported(65, 32, "float32")
    assert not cuda_fused.supported(1, 257, "float32")
    assert not cuda_fused.supported(1, 32, "float16")
    with pytest.raises(ValueError, match="no fused step"):
        cuda_fused.kernel_source(1, 300, "float32")
