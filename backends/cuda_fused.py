"""CUDA source of a fused training step, for the cupy backend (issue 9: in progress).

STATUS: the kernels are generated here and checked on CPU machines only: compiled by nvcc
for sm_90 when nvcc is present, and their exact source text is compiled as C++ and run
thread by thread against the independent reference (tests/test_fused_kernels.py). They
have not run on a GPU yet, are not wired into training, and make no speed claim.

One step is three kernels, none of which allocates an (N, H) array:

1. ``nnbin_partials``: each thread walks its samples (a grid-stride loop) and keeps the
   forward pass (hidden activations in registers), dL/dz, the loss term (on logging steps)
   and its running sums of the four gradients; it writes its sums once, to its own column
   of a (P, threads) scratch array (P = D*H + H + H + 1 + 1 parameters and the loss).
2. ``nnbin_reduce``: thread (k, c) adds chunk c of row k in a fixed order.
3. ``nnbin_update``: thread k adds the chunk sums in a fixed order, divides by N, applies
   the W2 column scale to the hidden-layer gradients (see nnbin/backprop.py), and writes
   params_out = params_in - lr * gradient (separate buffers: no thread reads what another
   writes).

No floating-point atomics: the same inputs and launch shape give bit-identical results.
"""

from __future__ import annotations

MAX_D = 64
MAX_H = 256
DTYPES = {"float32": "float", "float64": "double"}


def supported(n_features: int, hidden: int, dtype: str) -> bool:
    """Whether the fused step is generated for this shape and dtype (else the core runs)."""
    return 1 <= n_features <= MAX_D and 1 <= hidden <= MAX_H and dtype in DTYPES


def n_partials(n_features: int, hidden: int) -> int:
    """Rows of the scratch array: every parameter's gradient, then the loss."""
    return n_features * hidden + 2 * hidden + 2


def kernel_source(n_features: int, hidden: int, dtype: str) -> str:
    """CUDA C++ for D = n_features, H = hidden and one dtype (specialised at compile time)."""
    if not supported(n_features, hidden, dtype):
        raise ValueError(f"no fused step for D={n_features}, H={hidden}, {dtype}")
    t = DTYPES[dtype]
    suffix = "f" if t == "float" else ""
    return f"""// nnbin fused step, generated for D={n_features}, H={hidden}, {dtype}
#define D_ {n_features}
#define H_ {hidden}
#define NP_ (D_ * H_ + 2 * H_ + 2)
typedef {t} real;
#define EXP(v) exp{suffix}(v)
#define LOG1P(v) log1p{suffix}(v)
#ifdef __CUDACC__
#define KERNEL extern "C" __global__
#define THREAD_ID ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define N_THREADS ((long long)gridDim.x * blockDim.x)
#else
#include <math.h>
#define KERNEL extern "C"
#define __restrict__
static long long nnbin_thread_id, nnbin_n_threads;
#define THREAD_ID nnbin_thread_id
#define N_THREADS nnbin_n_threads
#endif

KERNEL void nnbin_partials(const real* __restrict__ X, const real* __restrict__ y,
                           const real* __restrict__ W1, const real* __restrict__ b1,
                           const real* __restrict__ W2, const real* __restrict__ b2,
                           long long n, int with_loss, real* __restrict__ partial)
{{
    const long long tid = THREAD_ID, threads = N_THREADS;
    if (tid >= threads) return;
    real gW1[D_ * H_], gb1[H_], gW2[H_], gb2 = 0, loss = 0;
    for (int k = 0; k < D_ * H_; ++k) gW1[k] = 0;
    for (int j = 0; j < H_; ++j) {{ gb1[j] = 0; gW2[j] = 0; }}
    for (long long i = tid; i < n; i += threads) {{
        real x[D_], h[H_];
        for (int d = 0; d < D_; ++d) x[d] = X[i * D_ + d];
        real z = b2[0];
        for (int j = 0; j < H_; ++j) {{
            real a = b1[j];
            for (int d = 0; d < D_; ++d) a += x[d] * W1[d * H_ + j];
            h[j] = (real)1 / ((real)1 + EXP(-a));
            z += h[j] * W2[j];
        }}
        const real yi = y[i];
        const real dz = (real)1 / ((real)1 + EXP(-z)) - yi;       // N dL/dz
        if (with_loss) {{                                          // softplus(z) - y z
            const real sp = z > 0 ? z + LOG1P(EXP(-z)) : LOG1P(EXP(z));
            loss += sp - yi * z;
        }}
        gb2 += dz;
        for (int j = 0; j < H_; ++j) {{
            gW2[j] += h[j] * dz;
            const real s = dz * h[j] * ((real)1 - h[j]);            // W2[j] applied later
            gb1[j] += s;
            for (int d = 0; d < D_; ++d) gW1[d * H_ + j] += x[d] * s;
        }}
    }}
    // column tid of the (NP_, threads) scratch: coalesced across threads
    for (int k = 0; k < D_ * H_; ++k) partial[k * threads + tid] = gW1[k];
    for (int j = 0; j < H_; ++j) partial[(D_ * H_ + j) * threads + tid] = gb1[j];
    for (int j = 0; j < H_; ++j) partial[(D_ * H_ + H_ + j) * threads + tid] = gW2[j];
    partial[(NP_ - 2) * threads + tid] = gb2;
    partial[(NP_ - 1) * threads + tid] = loss;
}}

KERNEL void nnbin_reduce(const real* __restrict__ partial, long long threads,
                         long long chunk, long long n_chunks, real* __restrict__ sums)
{{
    const long long tid = THREAD_ID;
    if (tid >= (long long)NP_ * n_chunks) return;
    const long long k = tid / n_chunks, c = tid % n_chunks;
    const long long start = c * chunk;
    const long long stop = start + chunk < threads ? start + chunk : threads;
    real acc = 0;
    for (long long t = start; t < stop; ++t) acc += partial[k * threads + t];
    sums[k * n_chunks + c] = acc;
}}

KERNEL void nnbin_update(const real* __restrict__ sums, long long n_chunks, long long n,
                         real lr,
                         const real* __restrict__ W1, const real* __restrict__ b1,
                         const real* __restrict__ W2, const real* __restrict__ b2,
                         real* __restrict__ W1o, real* __restrict__ b1o,
                         real* __restrict__ W2o, real* __restrict__ b2o,
                         real* __restrict__ grad, real* __restrict__ loss_out)
{{
    const long long k = THREAD_ID;
    if (k >= NP_) return;
    real g = 0;
    for (long long c = 0; c < n_chunks; ++c) g += sums[k * n_chunks + c];
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
