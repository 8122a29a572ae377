"""Run the fused step's CUDA kernels on the CPU, from their exact source text.

The kernel source (backends/cuda/kernels.py) is the text NVRTC compiles, with no branch for
this emulator: a prelude put before it here spells what CUDA provides — ``threadIdx``,
``blockIdx``, ``__global__``, ``__launch_bounds__``, ``__shared__``, ``__syncthreads`` and
``__shfl_down_sync`` (emulated through a shared buffer between two barriers; the kernels
call it with the same control flow in every thread). Every CUDA thread of a block is a
coroutine (ucontext):
the threads of a block run one after another up to their next ``__syncthreads``, then all
go on — the barrier's meaning, with no data race possible. A barrier that some threads of a
block never reach (divergent ``__syncthreads``) is reported as an error, not hidden. Blocks
run one after another, as a GPU is free to run them.

What this shows: the kernels' arithmetic, indexing, reductions and barriers. What it cannot
show: anything about GPU memory ordering beyond the barriers, or speed.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PRELUDE = r"""// CUDA's built-ins, for the CPU (tests/cuda_emulation.py)
#include <math.h>
#define __global__
#define __launch_bounds__(...)
#define __shared__ static
struct nnbin_dim3 { unsigned x; };
static nnbin_dim3 threadIdx, blockIdx, blockDim, gridDim;
static void __syncthreads(void);
static double nnbin_lanes[1024];  // float and double values both round-trip exactly
template <typename T> static T __shfl_down_sync(unsigned mask, T v, int offset) {
    (void)mask;
    nnbin_lanes[threadIdx.x] = (double)v;
    __syncthreads();
    const T r = threadIdx.x % 32 + offset < 32 ? (T)nnbin_lanes[threadIdx.x + offset] : v;
    __syncthreads();
    return r;
}
"""

SCHEDULER = r"""
#include <ucontext.h>
#include <stdlib.h>
#include <functional>
#include <vector>

namespace nnbin_emu {
static ucontext_t scheduler;
static std::vector<ucontext_t> fibers(BLOCK_);
static std::vector<char*> stacks(BLOCK_, nullptr);
static int state[BLOCK_];  // 0: can run, 1: waiting at __syncthreads, 2: returned
static unsigned current;
static std::function<void()> body;
static const size_t STACK = 1 << 20;

static void entry() { body(); state[current] = 2; }

// Runs grid x BLOCK_ threads of f; 0 if every barrier was reached by the whole block,
// else the 1-based index of the first block where it was not.
static long long launch(long long grid, long long block, std::function<void()> f) {
    if (block != BLOCK_) return -1;
    body = f;
    gridDim.x = (unsigned)grid;
    blockDim.x = BLOCK_;
    for (int t = 0; t < BLOCK_; ++t)
        if (!stacks[t]) stacks[t] = (char*)malloc(STACK);
    for (long long b = 0; b < grid; ++b) {
        blockIdx.x = (unsigned)b;
        for (int t = 0; t < BLOCK_; ++t) {
            getcontext(&fibers[t]);
            fibers[t].uc_stack.ss_sp = stacks[t];
            fibers[t].uc_stack.ss_size = STACK;
            fibers[t].uc_link = &scheduler;
            makecontext(&fibers[t], entry, 0);
            state[t] = 0;
        }
        for (;;) {
            for (int t = 0; t < BLOCK_; ++t) {
                if (state[t] != 0) continue;
                current = (unsigned)t;
                threadIdx.x = (unsigned)t;
                swapcontext(&scheduler, &fibers[t]);
            }
            int waiting = 0, done = 0;
            for (int t = 0; t < BLOCK_; ++t) { waiting += state[t] == 1; done += state[t] == 2; }
            if (done == BLOCK_) break;
            if (waiting != BLOCK_) return b + 1;  // a barrier not every thread reached
            for (int t = 0; t < BLOCK_; ++t) state[t] = 0;
        }
    }
    return 0;
}
}  // namespace nnbin_emu

static void __syncthreads(void) {
    nnbin_emu::state[nnbin_emu::current] = 1;
    swapcontext(&nnbin_emu::fibers[nnbin_emu::current], &nnbin_emu::scheduler);
}

"""

#: the fused step's kernels as the tests call them (see :class:`Kernel`)
FUSED = r"""
extern "C" long long run_partials(long long grid, long long block, const real* X,
                                  const real* y, const real* W1, const real* b1,
                                  const real* W2, const real* b2, long long n, int with_loss,
                                  real* partial) {
    return nnbin_emu::launch(grid, block, [=] {
        nnbin_partials(X, y, W1, b1, W2, b2, n, with_loss, partial); });
}

extern "C" long long run_update(long long grid, long long block, const real* partial,
                                long long blocks, long long n, real lr, const real* W1,
                                const real* b1, const real* W2, const real* b2, real* W1o,
                                real* b1o, real* W2o, real* b2o, real* grad, real* loss) {
    return nnbin_emu::launch(grid, block, [=] {
        nnbin_update(partial, blocks, n, lr, W1, b1, W2, b2, W1o, b1o, W2o, b2o, grad, loss);
    });
}
"""


#: the capture-safe matrix product's kernels (backends/cuda/gemm.cu)
GEMM = r"""
extern "C" long long run_gemm(long long grid, long long block, const real* A, long long sam,
                              long long sak, const real* B, long long sbk, long long sbn,
                              real* P, long long ps, long long pm, long long pn, long long M,
                              long long N, long long K, long long kchunk, long long splits) {
    return nnbin_emu::launch(grid, block, [=] {
        nnbin_gemm(A, sam, sak, B, sbk, sbn, P, ps, pm, pn, M, N, K, kchunk, splits); });
}

extern "C" long long run_gemm_sum(long long grid, long long block, const real* P,
                                  long long splits, long long M, long long N, real* C,
                                  long long scm, long long scn) {
    return nnbin_emu::launch(grid, block, [=] { nnbin_gemm_sum(P, splits, M, N, C, scm, scn); });
}
"""


def compile_kernels(
    source: str, folder: Path, options: tuple[str, ...] = (), wrappers: str = FUSED
) -> ctypes.CDLL:
    """The kernel source plus the emulator, compiled as C++ (skips without g++); the -D
    ``options`` go to g++ as they go to NVRTC; ``wrappers``: the C entry points the tests
    launch (the fused step's, or :data:`GEMM`)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed: cannot emulate the kernels on the CPU")
    defines = [o for o in options if o.startswith("-D")]
    key = (source, wrappers, *defines)
    if key not in _COMPILED:
        _COMPILED[key] = _compile(source + SCHEDULER + wrappers, folder, defines)
    return _COMPILED[key]


#: the libraries this process compiled, by source and defines: a test that launches the same
#: kernels as an earlier one loads them once (a compile takes about half a second)
_COMPILED: dict[tuple[str, ...], ctypes.CDLL] = {}


def _compile(source: str, folder: Path, defines: list[str]) -> ctypes.CDLL:
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "fused.cpp"
    src.write_text(PRELUDE + source)
    lib = folder / f"fused{abs(hash((source, *defines))) % 10**8}.so"
    out = subprocess.run(
        ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", *defines, "-o", str(lib), str(src)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return ctypes.CDLL(str(lib))


class Kernel:
    """A kernel called the way CuPy calls a RawKernel: ``k(grid, block, args)``, with
    arrays for device pointers and NumPy scalars for the typed scalar arguments."""

    def __init__(self, lib: ctypes.CDLL, name: str, strided: bool = False) -> None:
        self.name = name
        self.fn = getattr(lib, name.replace("nnbin_", "run_"))
        self.fn.restype = ctypes.c_longlong
        self.strided = strided  # arrays may be views with any strides (the GEMM's)
        self.launches = 0

    def __call__(
        self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...], **_: Any
    ) -> None:
        converted: list[Any] = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert self.strided or a.flags.c_contiguous, f"{self.name}: a non-contiguous array"
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
                raise TypeError(f"{self.name}: a CUDA kernel cannot take {type(a).__name__}")
        assert len(grid) == 1 and len(block) == 1
        bad = self.fn(ctypes.c_longlong(grid[0]), ctypes.c_longlong(block[0]), *converted)
        if bad == -1:
            raise AssertionError(
                f"{self.name}: launched with {block[0]} threads per block, "
                "not the block size it was generated for"
            )
        if bad:
            raise AssertionError(
                f"{self.name}: a __syncthreads not reached by every thread of block {bad - 1}"
            )
        self.launches += 1
