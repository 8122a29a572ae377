// nnbin's fused training step: two kernels a step, no (N, H) array. What it computes,
// and why it is laid out so, is told in backends/cuda/kernels.py, which compiles this file
// through cupy.RawModule with these defines (all compile-time constants, so the per-thread
// sums can live in registers):
//   -DNNBIN_D=<features>  -DNNBIN_H=<hidden units>  -DNNBIN_BLOCK=<threads a block>
//   -DNNBIN_DOUBLE=<1: double, 0: float>  -DNNBIN_UNROLL=<1: unroll the loops, 0: do not>
#define D_ NNBIN_D
#define H_ NNBIN_H
#define NP_ (D_ * H_ + 2 * H_ + 2)
#define BLOCK_ NNBIN_BLOCK
#define WARPS_ (BLOCK_ / 32)
#if NNBIN_DOUBLE
typedef double real;
#define EXP(v) exp(v)
#define LOG1P(v) log1p(v)
#else
typedef float real;
#define EXP(v) expf(v)
#define LOG1P(v) log1pf(v)
#endif
// Unrolled loops let the per-thread sums live in registers; past UNROLL_ROWS gradient rows
// (kernels.py) they cannot anyway (255 registers a thread), and unrolling would only
// make compiling slow.
#if NNBIN_UNROLL
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("unroll 1")
#endif
#define KERNEL extern "C" __global__ void __launch_bounds__(BLOCK_)
#define SHFL_DOWN(v, offset) __shfl_down_sync(0xffffffffu, (v), (offset))

// v summed over the warp in a fixed order (a shuffle tree); lane 0 gets the sum. Every
// thread of the block calls it with the same control flow.
#define WARP_SUM(v) \
    for (int offset = 16; offset > 0; offset /= 2) v += SHFL_DOWN(v, offset)

KERNEL nnbin_partials(const real* __restrict__ X, const real* __restrict__ y,
                      const real* __restrict__ W1, const real* __restrict__ b1,
                      const real* __restrict__ W2, const real* __restrict__ b2,
                      long long n, int with_loss, real* __restrict__ partial)
{
    const long long threads = (long long)gridDim.x * BLOCK_;
    const long long tid = (long long)blockIdx.x * BLOCK_ + threadIdx.x;
    // rows: dW1[d, j] at d*H + j, db1[j], dW2[j], db2, then the loss (layout of `partial`)
    real acc[NP_];
    UNROLL
    for (int k = 0; k < NP_; ++k) acc[k] = 0;
    for (long long i = tid; i < n; i += threads) {
        real x[D_], h[H_];
        UNROLL
        for (int d = 0; d < D_; ++d) x[d] = X[i * D_ + d];
        real z = b2[0];
        UNROLL
        for (int j = 0; j < H_; ++j) {
            real a = b1[j];
            UNROLL
            for (int d = 0; d < D_; ++d) a += x[d] * W1[d * H_ + j];
            h[j] = (real)1 / ((real)1 + EXP(-a));
            z += h[j] * W2[j];
        }
        const real yi = y[i];
        const real dz = (real)1 / ((real)1 + EXP(-z)) - yi;       // N dL/dz
        if (with_loss) {          // softplus(z) - y z, as max(z, 0) - y z + log1p(e^-|z|)
            const real az = z > 0 ? z : -z;                       // (no cancellation)
            acc[NP_ - 1] += ((z > 0 ? z : (real)0) - yi * z) + LOG1P(EXP(-az));
        }
        acc[NP_ - 2] += dz;
        UNROLL
        for (int j = 0; j < H_; ++j) {
            acc[D_ * H_ + H_ + j] += h[j] * dz;
            const real s = dz * h[j] * ((real)1 - h[j]);            // W2[j] applied later
            acc[D_ * H_ + j] += s;
            UNROLL
            for (int d = 0; d < D_; ++d) acc[d * H_ + j] += x[d] * s;
        }
    }
    // The block's sum of every row, 32 rows at a time: each warp reduces a row with
    // shuffles, lane 0 keeps it, then thread r < 32 adds row r's warp sums in order.
    __shared__ real warp_sums[32][WARPS_];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    UNROLL
    for (int k0 = 0; k0 < NP_; k0 += 32) {
        UNROLL
        for (int r = 0; r < 32; ++r) {
            if (k0 + r < NP_) {                        // the same for every thread
                real v = acc[k0 + r];
                WARP_SUM(v);
                if (lane == 0) warp_sums[r][warp] = v;
            }
        }
        __syncthreads();
        if (threadIdx.x < 32 && k0 + (int)threadIdx.x < NP_) {
            real s = 0;
            for (int w = 0; w < WARPS_; ++w) s += warp_sums[threadIdx.x][w];
            partial[(long long)(k0 + threadIdx.x) * gridDim.x + blockIdx.x] = s;
        }
        __syncthreads();                               // warp_sums is reused
    }
}

KERNEL nnbin_update(const real* __restrict__ partial, long long blocks, long long n,
                    real lr,
                    const real* __restrict__ W1, const real* __restrict__ b1,
                    const real* __restrict__ W2, const real* __restrict__ b2,
                    real* __restrict__ W1o, real* __restrict__ b1o,
                    real* __restrict__ W2o, real* __restrict__ b2o,
                    real* __restrict__ grad, real* __restrict__ loss_out)
{
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
    if (k < D_ * H_) {                                       // W1[d, j]
        g *= W2[k % H_];
        grad[k] = g;
        W1o[k] = W1[k] - lr * g;
    } else if (k < D_ * H_ + H_) {                           // b1[j]
        const int j = (int)(k - D_ * H_);
        g *= W2[j];
        grad[k] = g;
        b1o[j] = b1[j] - lr * g;
    } else if (k < D_ * H_ + 2 * H_) {                       // W2[j]
        const int j = (int)(k - D_ * H_ - H_);
        grad[k] = g;
        W2o[j] = W2[j] - lr * g;
    } else if (k == NP_ - 2) {                               // b2
        grad[k] = g;
        b2o[0] = b2[0] - lr * g;
    } else {                                                 // the mean loss
        loss_out[0] = g;
    }
}
