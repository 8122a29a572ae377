"""The fused CUDA step as a plug-in beside the loop (:attr:`nnbin.backend.Runners.fused`):
the cupy backend's, and through DLPack any other library's CUDA arrays (torch, jax).

:class:`CupyFused` holds the kernels (``kernels.py``, compiled per shape, dtype and device),
the workspaces the driver (``driver.py``) reuses across runs, and says where the fused step
applies: float32/float64, D <= 64, H <= 256, C-contiguous data, one sigmoid hidden layer
trained by full-batch gradient descent with no penalty (``kernels.scope_refusal``), a kernel
whose sums stay in registers (at most :data:`LOCAL_LIMIT` bytes of local memory a thread,
and that for every resident thread within a quarter of the free memory).

Two options (declared in :data:`nnbin.options.OPTIONS`, their defaults settable by
environment variables) switch how it runs: ``fused_graphs=False`` (``NNBIN_CUDA_GRAPHS=0``)
launches every fused step instead of replaying the steps between logged ones as CUDA
graphs; ``fast_math=True`` (``NNBIN_CUDA_FAST_MATH=1``) compiles the float32 kernels with
``--use_fast_math`` (approximate exp and division: 3.1x faster kernels on an H100, where
those bound the step; less exact).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from nnbin.loop import OnLog, RunResult
from nnbin.model import Params
from nnbin.options import SEED, Config

from . import driver as cuda_driver
from . import kernels as cuda_fused

FUSED_LOOP = "fused CUDA step (2 kernels, no (N, H) arrays)"
#: the most local memory a thread of the fused kernel may use (beyond it: the core runs)
LOCAL_LIMIT = 4096


class CupyFused:
    """The fused step on cupy arrays: ``refusal``, ``run`` and ``loss_and_grads``, the
    plug-in contract; the kernels, workspaces and switches the driver reads."""

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy
        self._modules: dict[tuple[Any, ...], Any] = {}
        #: buffers and instantiated CUDA graphs reused by later runs on the same data
        self._workspaces = cuda_driver.WorkspaceCache()
        #: threads per block of both fused kernels
        self.block = cuda_fused.BLOCK
        #: the most steps one captured graph holds (longer runs replay it again)
        self.graph_steps = 500

    def refusal(self, params: Params, X: Any, config: Config = SEED) -> str | None:
        """Why the fused step does not apply to this run (None: it does): outside its
        scope (the network, the optimizer), or these data and this GPU."""
        why = cuda_fused.scope_refusal(params, config)
        if why is not None:
            return why
        d, h = (int(v) for v in params[0].shape)
        dtype = str(X.dtype)
        if not cuda_fused.supported(d, h, dtype):
            return (
                f"it covers float32/float64, D <= {cuda_fused.MAX_D}, "
                f"H <= {cuda_fused.MAX_H}, not D={d}, H={h}, {dtype}"
            )
        if not X.flags.c_contiguous or X.shape[0] == 0:
            return "X must be C-contiguous with at least one row"
        fast = config.fast_math and dtype == "float32"
        return self._local_memory_refusal(self._kernels(d, h, dtype, fast)[0])

    def _local_memory_refusal(self, kernel: Any) -> str | None:
        """Past 255 registers a thread's sums spill to local memory: off-chip, and reserved
        by CUDA for every thread the GPU holds (D = 64, H = 256, float64: ~135 KiB a thread,
        ~37 GB on an H100). The fused step runs only with at most LOCAL_LIMIT bytes of it a
        thread (the seed network uses none: 242 registers on an H100) and when that, for
        every resident thread, takes at most a quarter of the free device memory."""
        local = int(getattr(kernel, "local_size_bytes", 0) or 0)
        if local == 0:
            return None
        if local > LOCAL_LIMIT:
            return (
                f"its kernel would keep {local:,} bytes a thread in local memory (more "
                f"than {LOCAL_LIMIT:,}: the sums no longer fit in registers)"
            )
        attrs = self._cupy.cuda.Device().attributes
        need = local * attrs["MaxThreadsPerMultiProcessor"] * attrs["MultiProcessorCount"]
        free = self._cupy.cuda.runtime.memGetInfo()[0]
        if need > free // 4:
            return (
                f"its local memory for every resident thread ({need / 2**30:.1f} GiB) "
                f"exceeds a quarter of the free device memory ({free / 2**30:.1f} GiB)"
            )
        return None

    @staticmethod
    def _compile_options(fast: bool) -> tuple[str, ...]:
        """nvrtc's options (``fast``: ``--use_fast_math``, float32 only)."""
        return ("--std=c++14", *(("--use_fast_math",) if fast else ()))

    def _kernels(self, d: int, h: int, dtype: str, fast: bool = False) -> tuple[Any, Any]:
        options = self._compile_options(fast)
        key = (d, h, dtype, self.block, options, self._cupy.cuda.runtime.getDevice())
        if key not in self._modules:
            module = self._cupy.RawModule(
                code=cuda_fused.source(),
                options=(*options, *cuda_fused.defines(d, h, dtype, block=self.block)),
            )
            self._modules[key] = tuple(
                module.get_function(f"nnbin_{k}") for k in ("partials", "update")
            )
        kernels: tuple[Any, Any] = self._modules[key]
        return kernels

    def _max_blocks(self, kernel: Any) -> int:
        """Blocks of nnbin_partials the GPU holds at once (one wave): its SM count times
        the blocks an SM fits by registers (2 where the kernel does not say)."""
        attrs = self._cupy.cuda.Device().attributes
        regs = int(getattr(kernel, "num_regs", 0) or 0)
        per_sm = 2
        if regs:
            by_threads = attrs["MaxThreadsPerMultiProcessor"] // self.block
            by_registers = attrs["MaxRegistersPerMultiprocessor"] // (regs * self.block)
            per_sm = max(1, min(by_threads, by_registers))
        return int(attrs["MultiProcessorCount"]) * per_sm

    def loss_and_grads(
        self, params: Params, X: Any, y: Any, config: Config | None = None
    ) -> tuple[Any, Params]:
        """Loss and gradients as the fused step computes them (for the conformance suite),
        its kernels as ``config`` says (default: the options' defaults now, so
        ``NNBIN_CUDA_FAST_MATH=1`` checks the fast-math kernels)."""
        fast = (config or Config()).fast_math and str(X.dtype) == "float32"
        with on_device(self._cupy, X):
            _, out = cuda_driver.fused_steps(
                self, params, X, y, 0.0, 1, 1, None, want_grads=True, fast=fast
            )
        loss_and_grads: tuple[Any, Params] = out
        return loss_and_grads

    def run(
        self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
        on_log: OnLog | None, config: Config = SEED,
    ) -> RunResult:  # fmt: skip
        """The run as fused steps (where :meth:`refusal` is None), on X's GPU; ``config``'s
        ``fused_graphs`` and ``fast_math`` say how they run."""
        fast = config.fast_math and str(X.dtype) == "float32"
        graphs = config.fused_graphs
        with on_device(self._cupy, X):
            result, _ = cuda_driver.fused_steps(
                self, params, X, y, lr, steps, log_every, on_log, graphs=graphs, fast=fast
            )
        result.loop = (
            FUSED_LOOP
            + ("; CUDA-graph replay between logging steps" if graphs else "")
            + ("; --use_fast_math" if fast else "")
        )
        return result


def on_device(cupy: Any, x: Any) -> Any:
    """A context that makes ``x``'s GPU the current one (kernels launch there)."""
    index = getattr(getattr(x, "device", None), "id", None)
    return contextlib.nullcontext() if index is None else cupy.cuda.Device(index)


def forbid_cupy_sync() -> Any:
    """cupyx.allow_synchronize(False) (deprecated by CuPy, still there in 14): a sync
    through CuPy raises cupyx.DeviceSynchronized. None if this CuPy has dropped it."""
    import cupyx

    allow = getattr(cupyx, "allow_synchronize", None)
    if allow is None:
        return None

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation warning, not ours
            with allow(False):
                yield

    return guard()
