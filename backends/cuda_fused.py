"""CUDA source of a fused training step, for the cupy backend.

STATUS: run on one NVIDIA H100 (2026-11-28): the conformance suite passes, reruns are
bit-identical; 30 / 199 / 1,946 µs a step at N = 2e4 / 2e6 / 2e7 in float32 (BENCHMARKS.md;
``backends/cuda_profile.py`` says where the time goes: the exact ``expf`` and division of the
sigmoid). On CPU machines the exact source text is compiled as C++ and run by a SIMT
emulator (tests/cuda_emulation.py: every CUDA thread a coroutine, ``__syncthreads`` a
barrier, warp shuffles emulated through shared memory, all in the emulator's own prelude:
the text below has no branch for it) against the independent reference,
and compiled by nvcc for sm_90 where nvcc is present.

One step is two kernels, neither of which allocates an (N, H) array:

1. ``nnbin_partials`` (grid: ``blocks`` x BLOCK threads): each thread walks its samples
   (a grid-stride loop, so loads are coalesced) and keeps, in registers, the forward pass
   (hidden activations), N dL/dz, the loss term (on logging steps only) and its running
   sums of the four gradients. Each block then adds its threads' sums row by row in a
   fixed order — a shuffle tree inside each warp, then the warps in index order — and
   writes one column of a (P, blocks) array (P = D*H + H + H + 1 gradient rows and 1 loss
   row).
2. ``nnbin_update`` (grid: P blocks x BLOCK threads): block k adds row k of that array in
   the same fixed order, divides by N, applies W2's column scale to the hidden-layer
   gradients (see nnbin/backprop.py), and writes ``out = in - lr * gradient`` to separate
   buffers (no thread reads what another writes), the gradient, and the mean loss.

No floating-point atomics: the same inputs and launch shape give bit-identical results.
"""

from __future__ import annotations

import math

MAX_D = 64
MAX_H = 256
BLOCK = 256  # threads per block in both kernels (a multiple of the warp size, 32)
# the fewest samples a thread of nnbin_partials is given: 1 (on an H100 at N = 2e4, 79
# blocks of one sample a thread took 7.9 µs where 20 blocks of four took 16.2 µs); the grid
# never exceeds one wave, which past ~34,000 samples is the same grid as before
SAMPLES_PER_THREAD = 1
UNROLL_ROWS = 256  # beyond this many gradient rows the kernels' loops are not unrolled
DTYPES = {"float32": "float", "float64": "double"}


def supported(n_features: int, hidden: int, dtype: str) -> bool:
    """Whether the fused step is generated for this shape and dtype (else the core runs)."""
    return 1 <= n_features <= MAX_D and 1 <= hidden <= MAX_H and dtype in DTYPES


def n_partials(n_features: int, hidden: int) -> int:
    """Rows of the per-block sums: every parameter's gradient, then the loss."""
    return n_features * hidden + 2 * hidden + 2


def partials_blocks(n: int, max_blocks: int, block: int = BLOCK) -> int:
    """Blocks of ``nnbin_partials`` for N samples: enough that each thread has at least
    SAMPLES_PER_THREAD samples, at most ``max_blocks`` (what the GPU holds at once)."""
    return max(1, min(math.ceil(n / (SAMPLES_PER_THREAD * block)), max_blocks))


def kernel_source(n_features: int, hidden: int, dtype: str, block: int = BLOCK) -> str:
    """CUDA C++ for D = n_features, H = hidden, one dtype and ``block`` threads per block
    (all compile-time constants, so the per-thread sums can live in registers)."""
    if not supported(n_features, hidden, dtype):
        raise ValueError(f"no fused step for D={n_features}, H={hidden}, {dtype}")
    if block % 32 or not 32 <= block <= 1024:
        raise ValueError(f"block must be a multiple of 32 in [32, 1024], not {block}")
    t = DTYPES[dtype]
    suffix = "f" if t == "float" else ""
    # Unrolled loops let the per-thread sums live in registers; past UNROLL_ROWS they cannot
    # anyway (255 registers a thread), and unrolling would only make compiling slow.
    unroll = "unroll" if n_partials(n_features, hidden) <= UNROLL_ROWS else "unroll 1"
    return f"""// nnbin fused step, generated for D={n_features}, H={hidden}, {dtype}
#define D_ {n_features}
#define H_ {hidden}
#define NP_ (D_ * H_ + 2 * H_ + 2)
#define BLOCK_ {block}
#define WARPS_ (BLOCK_ / 32)
typedef {t} real;
#define EXP(v) exp{suffix}(v)
#define LOG1P(v) log1p{suffix}(v)
#define KERNEL extern "C" __global__ void __launch_bounds__(BLOCK_)
#define SHFL_DOWN(v, offset) __shfl_down_sync(0xffffffffu, (v), (offset))

// v summed over the warp in a fixed order (a shuffle tree); lane 0 gets the sum. Every
// thread of the block calls it with the same control flow.
#define WARP_SUM(v) \\
    for (int offset = 16; offset > 0; offset /= 2) v += SHFL_DOWN(v, offset)

KERNEL nnbin_partials(const real* __restrict__ X, const real* __restrict__ y,
                      const real* __restrict__ W1, const real* __restrict__ b1,
                      const real* __restrict__ W2, const real* __restrict__ b2,
                      long long n, int with_loss, real* __restrict__ partial)
{{
    const long long threads = (long long)gridDim.x * BLOCK_;
    const long long tid = (long long)blockIdx.x * BLOCK_ + threadIdx.x;
    // rows: dW1[d, j] at d*H + j, db1[j], dW2[j], db2, then the loss (layout of `partial`)
    real acc[NP_];
#pragma {unroll}
    for (int k = 0; k < NP_; ++k) acc[k] = 0;
    for (long long i = tid; i < n; i += threads) {{
        real x[D_], h[H_];
#pragma {unroll}
        for (int d = 0; d < D_; ++d) x[d] = X[i * D_ + d];
        real z = b2[0];
#pragma {unroll}
        for (int j = 0; j < H_; ++j) {{
            real a = b1[j];
#pragma {unroll}
            for (int d = 0; d < D_; ++d) a += x[d] * W1[d * H_ + j];
            h[j] = (real)1 / ((real)1 + EXP(-a));
            z += h[j] * W2[j];
        }}
        const real yi = y[i];
        const real dz = (real)1 / ((real)1 + EXP(-z)) - yi;       // N dL/dz
        if (with_loss) {{                                          // softplus(z) - y z
            const real sp = z > 0 ? z + LOG1P(EXP(-z)) : LOG1P(EXP(z));
            acc[NP_ - 1] += sp - yi * z;
        }}
        acc[NP_ - 2] += dz;
#pragma {unroll}
        for (int j = 0; j < H_; ++j) {{
            acc[D_ * H_ + H_ + j] += h[j] * dz;
            const real s = dz * h[j] * ((real)1 - h[j]);            // W2[j] applied later
            acc[D_ * H_ + j] += s;
#pragma {unroll}
            for (int d = 0; d < D_; ++d) acc[d * H_ + j] += x[d] * s;
        }}
    }}
    // The block's sum of every row, 32 rows at a time: each warp reduces a row with
    // shuffles, lane 0 keeps it, then thread r < 32 adds row r's warp sums in order.
    __shared__ real warp_sums[32][WARPS_];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma {unroll}
    for (int k0 = 0; k0 < NP_; k0 += 32) {{
#pragma {unroll}
        for (int r = 0; r < 32; ++r) {{
            if (k0 + r < NP_) {{                        // the same for every thread
                real v = acc[k0 + r];
                WARP_SUM(v);
                if (lane == 0) warp_sums[r][warp] = v;
            }}
        }}
        __syncthreads();
        if (threadIdx.x < 32 && k0 + (int)threadIdx.x < NP_) {{
            real s = 0;
            for (int w = 0; w < WARPS_; ++w) s += warp_sums[threadIdx.x][w];
            partial[(long long)(k0 + threadIdx.x) * gridDim.x + blockIdx.x] = s;
        }}
        __syncthreads();                               // warp_sums is reused
    }}
}}

KERNEL nnbin_update(const real* __restrict__ partial, long long blocks, long long n,
                    real lr,
                    const real* __restrict__ W1, const real* __restrict__ b1,
                    const real* __restrict__ W2, const real* __restrict__ b2,
                    real* __restrict__ W1o, real* __restrict__ b1o,
                    real* __restrict__ W2o, real* __restrict__ b2o,
                    real* __restrict__ grad, real* __restrict__ loss_out)
{{
    const long long k = blockIdx.x;                     // this block's row
    real v = 0;
    for (long long b = threadIdx.x; b < blocks; b += BLOCK_) v += partial[k * blocks + b];
    __shared__ real warp_total[WARPS_];
    WARP_SUM(v);
    if (threadIdx.x % 32 == 0) warp_total[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x != 0) return;
    real g = 0;
    for (int w = 0; w < WARPS_; ++w) g += warp_total[w];
    g = g / (real)n;
    if (k < D_ * H_) {{                                       // W1[d, j]
        g *= W2[k % H_];
        grad[k] = g;
        W1o[k] = W1[k] - lr * g;
    }} else if (k < D_ * H_ + H_) {{                           // b1[j]
        const int j = (int)(k - D_ * H_);
        g *= W2[j];
        grad[k] = g;
        b1o[j] = b1[j] - lr * g;
    }} else if (k < D_ * H_ + 2 * H_) {{                       // W2[j]
        const int j = (int)(k - D_ * H_ - H_);
        grad[k] = g;
        W2o[j] = W2[j] - lr * g;
    }} else if (k == NP_ - 2) {{                               // b2
        grad[k] = g;
        b2o[0] = b2[0] - lr * g;
    }} else {{                                                 // the mean loss
        loss_out[0] = g;
    }}
}}
"""
