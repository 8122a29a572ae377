"""The fused training step of the cupy backend: its launch shape and how its CUDA source
(``backends/cuda/fused_step.cu``, compiled through ``cupy.RawModule`` with -D defines for the
shape) is compiled.

STATUS: run on one NVIDIA H100 (2026-11-28): the conformance suite passes, reruns are
bit-identical; 30 / 199 / 1,946 µs a step at N = 2e4 / 2e6 / 2e7 in float32 (BENCHMARKS.md;
``backends/cuda_profile.py`` says where the time goes: the exact ``expf`` and division of the
sigmoid). On CPU machines the exact source text is compiled as C++ and run by a SIMT
emulator (tests/cuda_emulation.py: every CUDA thread a coroutine, ``__syncthreads`` a
barrier, warp shuffles emulated through shared memory, all in the emulator's own prelude:
the .cu file has no branch for it) against the independent reference,
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
   gradients (see nnbin/model.py), and writes ``out = in - lr * gradient`` to separate
   buffers (no thread reads what another writes), the gradient, and the mean loss.

No floating-point atomics: the same inputs and launch shape give bit-identical results.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

MAX_D = 64
MAX_H = 256
BLOCK = 256  # threads per block in both kernels (a multiple of the warp size, 32)
# the fewest samples a thread of nnbin_partials is given: 1 (on an H100 at N = 2e4, 79
# blocks of one sample a thread took 7.9 µs where 20 blocks of four took 16.2 µs); the grid
# never exceeds one wave, which past ~34,000 samples is the same grid as before
SAMPLES_PER_THREAD = 1
UNROLL_ROWS = 256  # beyond this many gradient rows the kernels' loops are not unrolled
DTYPES = ("float32", "float64")


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


#: the kernels' CUDA C++, one text for every shape: the shape comes as -D defines
SOURCE_FILE = Path(__file__).with_name("fused_step.cu")


@functools.cache
def _read_source() -> str:
    return SOURCE_FILE.read_text(encoding="utf-8")


def source() -> str:
    """The text of ``fused_step.cu`` (read once)."""
    return _read_source()


def defines(n_features: int, hidden: int, dtype: str, block: int = BLOCK) -> tuple[str, ...]:
    """The compiler's -D options for D = n_features, H = hidden, one dtype and ``block``
    threads per block (all compile-time constants, so the per-thread sums can live in
    registers)."""
    if not supported(n_features, hidden, dtype):
        raise ValueError(f"no fused step for D={n_features}, H={hidden}, {dtype}")
    if block % 32 or not 32 <= block <= 1024:
        raise ValueError(f"block must be a multiple of 32 in [32, 1024], not {block}")
    unroll = n_partials(n_features, hidden) <= UNROLL_ROWS
    return (
        f"-DNNBIN_D={n_features}",
        f"-DNNBIN_H={hidden}",
        f"-DNNBIN_BLOCK={block}",
        f"-DNNBIN_DOUBLE={int(dtype == 'float64')}",
        f"-DNNBIN_UNROLL={int(unroll)}",
    )


def kernel_source(n_features: int, hidden: int, dtype: str, block: int = BLOCK) -> str:
    """:func:`source` with :func:`defines` written as ``#define`` lines in front: one
    self-contained text, for compilers given no options (nvcc in the tests, the profile)."""
    lines = []
    for option in defines(n_features, hidden, dtype, block):
        name, _, value = option[2:].partition("=")
        lines.append(f"#define {name} {value}\n")
    return "".join(lines) + source()


def scope_refusal(params: Any, config: Any) -> str | None:
    """Why the fused step's scope leaves out this network or run (None: it covers it). It
    covers the seed job's kind: one sigmoid hidden layer, full-batch gradient descent with
    no stopping rule and no L2 penalty."""
    if len(params) != 4:
        return f"it covers one hidden layer, not {len(params) // 2 - 1}"
    if config is None:
        return None
    activation = getattr(params, "activation", "")
    if activation != "sigmoid":
        return f"it covers sigmoid units, not {activation or 'parameters that do not say theirs'}"
    if not config.plain_descent:
        return "it covers full-batch gradient descent with no stopping rule"
    if config.alpha:
        return "it has no L2 penalty"
    return None
