"""Matrix products a CuPy CUDA graph can capture (issue #28).

CuPy's stream capture refuses cuBLAS ("calling cuBLAS API during stream capture is currently
unsupported", CuPy 14.2), and every step of the array-API core has three to a few dozen
products. So the cupy backend's CUDA-graph path hands the core (through
``value_and_grads(xp=...)``) a :class:`CaptureSafe` namespace: CuPy's own, except that
``matmul`` and ``tensordot(axes=1)`` of 2-D arrays run :class:`Gemm`, two small kernels of
``gemm.cu`` launched like any CuPy kernel (so captured like one). The core's text is the
same for every library; only the namespace it is handed differs.

The kernels are the simplest that are right for every shape: a thread an output, and where
the sum is long (the gradients' sums over N) a thread a piece of it, the pieces added by a
second kernel. The core's products are thin — (N, D) @ (D, H) with D and H in the tens, and
sums over N of (N, H) columns — so the operands a warp shares come from the caches; a
tiled kernel (operands staged in shared memory) would read less at wide layers: how much
that matters is for a GPU run to say. Why not capture through PyTorch (whose capture
allows cuBLAS) over DLPack: a CuPy user need not have PyTorch. Each output is summed in a
fixed order: the same inputs give the same bits.

:class:`Gemm` takes how to compile (``cupy.RawModule``) and how to allocate, so the tests
run it with the kernels' exact text compiled as C++ under the SIMT emulator. Not yet run
on a GPU (the GPU check's CUDA-graph jobs).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: threads a block of both kernels
BLOCK = 256
#: the terms of a sum one thread adds: a longer sum (over N) is cut into pieces of this
#: many, each a thread's, added by ``nnbin_gemm_sum``
KCHUNK = 256
DTYPES = ("float32", "float64")
SOURCE_FILE = Path(__file__).with_name("gemm.cu")


@functools.cache
def source() -> str:
    """The text of ``gemm.cu`` (read once)."""
    return SOURCE_FILE.read_text(encoding="utf-8")


def defines(dtype: str, block: int = BLOCK) -> tuple[str, ...]:
    """The compiler's -D options for one dtype and ``block`` threads a block."""
    if dtype not in DTYPES:
        raise ValueError(f"no capture-safe matmul for {dtype}")
    return (f"-DNNBIN_BLOCK={block}", f"-DNNBIN_DOUBLE={int(dtype == 'float64')}")


def plan(k: int) -> tuple[int, int]:
    """(splits, kchunk) for a sum of ``k`` terms: one piece of all of them up to
    :data:`KCHUNK`, else pieces of KCHUNK."""
    if k <= KCHUNK:
        return 1, max(k, 1)
    return math.ceil(k / KCHUNK), KCHUNK


class Gemm:
    """``a @ b`` for 2-D arrays of one float dtype by the kernels of ``gemm.cu``.

    ``raw_module(code=..., options=...)`` compiles them (``cupy.RawModule``);
    ``empty(shape, dtype)`` allocates on the current device (``cupy.empty``). The kernels
    run on the current stream: inside a capture, the capturing one."""

    def __init__(
        self, raw_module: Callable[..., Any], empty: Callable[..., Any], block: int = BLOCK
    ) -> None:
        self.raw_module, self.empty, self.block = raw_module, empty, block
        self._kernels: dict[str, tuple[Any, Any]] = {}

    def kernels(self, dtype: str) -> tuple[Any, Any]:
        if dtype not in self._kernels:
            module = self.raw_module(code=source(), options=defines(dtype, self.block))
            self._kernels[dtype] = (
                module.get_function("nnbin_gemm"),
                module.get_function("nnbin_gemm_sum"),
            )
        return self._kernels[dtype]

    def applies(self, a: Any, b: Any) -> bool:
        """2-D operands of one dtype it has kernels for, with strides it can follow."""
        return (
            a.ndim == 2
            and b.ndim == 2
            and a.dtype == b.dtype
            and str(a.dtype) in DTYPES
            and a.shape[1] == b.shape[0]
            and all(s >= 0 and s % a.itemsize == 0 for s in (*a.strides, *b.strides))
        )

    def __call__(self, a: Any, b: Any) -> Any:
        (m, k), n = a.shape, int(b.shape[1])
        dtype, item = str(a.dtype), a.itemsize
        c = self.empty((m, n), dtype)
        if m * n == 0:
            return c
        gemm, gemm_sum = self.kernels(dtype)
        splits, kchunk = plan(k)
        if splits == 1:  # each output one thread's whole sum, written to c
            p, strides = c, (0, n, 1)
        else:  # (splits, m, n) pieces, added up in split order into c
            p, strides = self.empty((splits, m, n), dtype), (m * n, n, 1)
        i64 = np.int64
        args = (
            a, i64(a.strides[0] // item), i64(a.strides[1] // item),
            b, i64(b.strides[0] // item), i64(b.strides[1] // item),
            p, *(i64(s) for s in strides),
            i64(m), i64(n), i64(k), i64(kchunk), i64(splits),
        )  # fmt: skip
        gemm((math.ceil(m * n * splits / self.block),), (self.block,), args)
        if splits > 1:
            gemm_sum(
                (math.ceil(m * n / self.block),),
                (self.block,),
                (p, i64(splits), i64(m), i64(n), c, i64(n), i64(1)),
            )
        return c


class CaptureSafe:
    """The array namespace ``base`` with ``matmul`` and ``tensordot(axes=1)`` of the 2-D
    arrays :class:`Gemm` takes by ``gemm`` (anything else: ``base``'s own)."""

    def __init__(self, base: Any, gemm: Gemm) -> None:
        self._base, self._gemm = base, gemm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def matmul(self, a: Any, b: Any, /) -> Any:
        return self._gemm(a, b) if self._gemm.applies(a, b) else self._base.matmul(a, b)

    def tensordot(self, a: Any, b: Any, /, *, axes: Any = 2) -> Any:
        if axes == 1 and self._gemm.applies(a, b):
            return self._gemm(a, b)
        return self._base.tensordot(a, b, axes=axes)
