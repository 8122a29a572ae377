// nnbin's matrix product for CUDA-graph capture: C = A @ B with no cuBLAS call (CuPy's
// stream capture refuses cuBLAS). What it is for, and how it is launched, is told in
// backends/cuda/gemm.py, which compiles this file through cupy.RawModule with
//   -DNNBIN_BLOCK=<threads a block>  -DNNBIN_DOUBLE=<1: double, 0: float>
// Strides are in elements, any sign of transposition: the core's .T is a stride, not a copy.
#define BLOCK_ NNBIN_BLOCK
#if NNBIN_DOUBLE
typedef double real;
#else
typedef float real;
#endif
#define KERNEL extern "C" __global__ void __launch_bounds__(BLOCK_)

// One thread a (split, m, n): the sum over k in [split * kchunk, (split + 1) * kchunk) of
// A[m, k] B[k, n], in k's order, written to P[split * ps + m * pm + n * pn]. Threads next to
// each other take n next to each other (B's rows read together; A's element shared).
// splits == 1: P is C itself (its strides); else a (splits, M, N) workspace that
// nnbin_gemm_sum adds up. No atomics: the same inputs and shape give the same bits.
KERNEL nnbin_gemm(const real* __restrict__ A, long long sam, long long sak,
                  const real* __restrict__ B, long long sbk, long long sbn,
                  real* __restrict__ P, long long ps, long long pm, long long pn,
                  long long M, long long N, long long K, long long kchunk, long long splits)
{
    const long long outputs = M * N;
    const long long i = (long long)blockIdx.x * BLOCK_ + threadIdx.x;
    if (i >= outputs * splits) return;
    const long long split = i / outputs;
    const long long o = i - split * outputs;
    const long long m = o / N;
    const long long n = o - m * N;
    const long long k0 = split * kchunk;
    const long long k1 = k0 + kchunk < K ? k0 + kchunk : K;
    real acc = 0;
    for (long long k = k0; k < k1; ++k) acc += A[m * sam + k * sak] * B[k * sbk + n * sbn];
    P[split * ps + m * pm + n * pn] = acc;
}

// One thread an output: the splits' partial sums of nnbin_gemm added in split order.
KERNEL nnbin_gemm_sum(const real* __restrict__ P, long long splits, long long M, long long N,
                      real* __restrict__ C, long long scm, long long scn)
{
    const long long outputs = M * N;
    const long long o = (long long)blockIdx.x * BLOCK_ + threadIdx.x;
    if (o >= outputs) return;
    real acc = 0;
    for (long long s = 0; s < splits; ++s) acc += P[s * outputs + o];
    const long long m = o / N;
    C[m * scm + (o - m * N) * scn] = acc;
}
