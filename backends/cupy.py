"""CuPy: the array-API core on NVIDIA GPUs, and a fused CUDA training step.

Verified on one NVIDIA H100 (2026-11-28: the conformance suite, the seed job, the
benchmark; BENCHMARKS.md). On CPU-only machines its errors, registration and skips are
tested, the fused kernels' source runs as C++ under a SIMT emulator and the driver against a
CuPy stand-in.
Host data are moved to the GPU once; the loss reaches the host only on logging steps.

Training uses the fused step (backends/cuda/kernels.py: two kernels a step, no (N, H)
array) where it applies — float32/float64, D <= 64, H <= 256, C-contiguous data, a kernel
whose sums stay in registers (at most LOCAL_LIMIT bytes of local memory a thread, and that
for every resident thread within a quarter of the free memory) — unless ``fused=False`` is
asked for (``nnbin.train(..., fused=False)``, ``nnbin train --no-fused``); otherwise the
array-API core runs. ``TrainResult.loop`` says which ran and, for the core, why.

The driver (backends/cuda/driver.py) runs the fused steps on a stream of their own, ordered
by events. Logging steps are launched one by one (their loss goes to the host); the steps
between them are replayed as CUDA graphs (at most ``graph_steps`` steps; no cuBLAS inside,
so capture is allowed), kept with the run's buffers in a workspace that later runs on the
same data reuse, so a small problem is bound neither by launch latency nor by capturing.
``NNBIN_CUDA_GRAPHS=0`` launches every step instead. ``NNBIN_CUDA_FAST_MATH=1`` compiles the
float32 kernels with ``--use_fast_math`` (approximate exp and division: 3.1x faster kernels
on an H100, where those bound the step; less exact).

The torch and jax backends hand their CUDA arrays to the same fused step through DLPack, with
no copies either way (``backends/cuda/dlpack.py``).

With ``cuda_graphs=True`` the array-API core's steps (every network, optimizer and batch
size the fused step does not cover, or ``fused=False``) replay as CUDA graphs
(``backends/cuda/graphs.py``), their matrix products computed by kernels a capture allows
(``backends/cuda/gemm.py``: CuPy's capture refuses cuBLAS). Not yet run on a GPU: off
unless asked for (or NNBIN_CORE_GRAPHS=1).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import Backend
from nnbin.errors import BackendUnavailableError
from nnbin.loop import OnLog, RunResult
from nnbin.model import Params
from nnbin.options import SEED, Config

from .cuda import driver as cuda_driver
from .cuda import kernels as cuda_fused
from .cuda.graphs import CupyGraphs, GraphRunner

FUSED_LOOP = "fused CUDA step (2 kernels, no (N, H) arrays)"
#: the most local memory a thread of the fused kernel may use (beyond it: the core runs)
LOCAL_LIMIT = 4096


class CupyBackend(Backend):
    name = "cupy"
    is_array = staticmethod(array_api_compat.is_cupy_array)
    memory_nh = 4.0
    default_dtype = "float32"
    loop = "fused CUDA step where it applies, else python loop"
    core_loop = "python loop (array-API core)"
    has_fused = True

    def __init__(self) -> None:
        import cupy

        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
        except Exception:  # CUDA driver or runtime missing: cupy raises its own errors
            count = 0
        if count == 0:
            raise BackendUnavailableError(
                "cupy is installed but no CUDA device was found: run on a machine with an "
                "NVIDIA GPU, or choose another backend (NNBIN_BACKEND=numpy)"
            )
        self._cupy = cupy
        self.xp = array_api_compat.array_namespace(cupy.empty(0))
        # the kernels assume NVIDIA's 32-thread warps: none on a ROCm build of cupy
        self.has_fused = not getattr(cupy.cuda.runtime, "is_hip", False)
        self._modules: dict[tuple[Any, ...], Any] = {}
        #: buffers and instantiated CUDA graphs reused by later runs on the same data
        self._workspaces = cuda_driver.WorkspaceCache()
        #: threads per block of both fused kernels
        self.block = cuda_fused.BLOCK
        #: replay the steps between logging steps as CUDA graphs (NNBIN_CUDA_GRAPHS=0: off)
        self.cuda_graphs = os.environ.get("NNBIN_CUDA_GRAPHS", "1") != "0"
        #: the most steps one captured graph holds (longer runs replay it again)
        self.graph_steps = 500
        #: float32 kernels compiled with --use_fast_math (NNBIN_CUDA_FAST_MATH=1): approximate
        #: exp and division, denormals flushed to zero; off unless asked for
        self.fast_math = os.environ.get("NNBIN_CUDA_FAST_MATH", "0") == "1"
        #: the CUDA-graph path of the core (cuda_graphs=True): a CupyGraphs per device, and
        #: the workspaces (graphs and static buffers) later runs on the same data reuse
        self._graphs: dict[int, CupyGraphs] = {}
        self.graph_workspaces: OrderedDict[Any, Any] = OrderedDict()

    def devices(self) -> list[str]:
        rt = self._cupy.cuda.runtime
        out = []
        for i in range(rt.getDeviceCount()):
            name = rt.getDeviceProperties(i)["name"]
            out.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return out

    def gpu_devices(self) -> list[str]:
        return self.devices()

    @staticmethod
    def full_precision() -> None:
        """CuPy reads CUPY_TF32 at import: the suite must not run with TF32 matmuls."""
        if os.environ.get("CUPY_TF32", "0") == "1":
            raise BackendUnavailableError("unset CUPY_TF32 for full-precision float32 matmuls")

    def out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, self._cupy.cuda.memory.OutOfMemoryError)

    def release_memory(self) -> None:
        """Give the memory pool's free blocks back to the device (between benchmark cells),
        and drop the fused step's workspaces and the core's graphs."""
        self._workspaces.clear()
        self.graph_workspaces.clear()
        self._graphs.clear()
        self._cupy.get_default_memory_pool().free_all_blocks()
        self._cupy.get_default_pinned_memory_pool().free_all_blocks()

    def step_peak_bytes(self, run_one_step: Callable[[], object]) -> int | None:
        """Growth of CuPy's memory pool over one step (the blocks the step kept)."""
        pool = self._cupy.get_default_memory_pool()
        self._cupy.cuda.Device().synchronize()
        pool.free_all_blocks()
        base = pool.total_bytes()
        run_one_step()
        self._cupy.cuda.Device().synchronize()
        return int(pool.total_bytes() - base)

    def forbid_host_sync(self, x: Any) -> Any:
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

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        host = np.asarray(a, dtype=dtype)
        index = getattr(device, "id", device)
        with self._cupy.cuda.Device(
            index if index is not None else self._cupy.cuda.runtime.getDevice()
        ):
            return self._cupy.asarray(host)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(self._cupy.asnumpy(x))

    def synchronize(self, x: Any) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    # --- the fused step -------------------------------------------------------------------

    def fused_refusal(self, params: Params, X: Any, config: Config = SEED) -> str | None:
        """Why the fused step does not apply to this run (None: it does): outside its
        scope (the network, the optimizer), or these data and this GPU."""
        why = cuda_fused.scope_refusal(params, config)
        if why is not None:
            return why
        d, h = (int(v) for v in params[0].shape)
        dtype = str(X.dtype)
        if not self.has_fused:
            return "this GPU is not an NVIDIA one (the kernels assume 32-thread warps)"
        if not cuda_fused.supported(d, h, dtype):
            return (
                f"it covers float32/float64, D <= {cuda_fused.MAX_D}, "
                f"H <= {cuda_fused.MAX_H}, not D={d}, H={h}, {dtype}"
            )
        if not X.flags.c_contiguous or X.shape[0] == 0:
            return "X must be C-contiguous with at least one row"
        return self._local_memory_refusal(self._kernels(d, h, dtype)[0])

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

    def _compile_options(self, dtype: str) -> tuple[str, ...]:
        fast = self.fast_math and dtype == "float32"
        return ("--std=c++14", *(("--use_fast_math",) if fast else ()))

    def _kernels(self, d: int, h: int, dtype: str) -> tuple[Any, Any]:
        options = self._compile_options(dtype)
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
        per_sm = (
            2
            if regs == 0
            else max(
                1,
                min(
                    attrs["MaxThreadsPerMultiProcessor"] // self.block,
                    attrs["MaxRegistersPerMultiprocessor"] // (regs * self.block),
                ),
            )
        )
        return int(attrs["MultiProcessorCount"]) * per_sm

    def on_device(self, x: Any) -> Any:
        """A context that makes ``x``'s GPU the current one (kernels launch there)."""
        index = getattr(getattr(x, "device", None), "id", None)
        return contextlib.nullcontext() if index is None else self._cupy.cuda.Device(index)

    def fused_loss_and_grads(self, params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        """Loss and gradients as the fused step computes them (for the conformance suite)."""
        with self.on_device(X):
            _, out = cuda_driver.fused_steps(self, params, X, y, 0.0, 1, 1, None, want_grads=True)
        loss_and_grads: tuple[Any, Params] = out
        return loss_and_grads

    def fused_run(
        self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
        on_log: OnLog | None,
    ) -> RunResult:  # fmt: skip
        result, _ = cuda_driver.fused_steps(self, params, X, y, lr, steps, log_every, on_log)
        fast = "--use_fast_math" in self._compile_options(str(X.dtype))
        result.loop = (
            FUSED_LOOP
            + ("; CUDA-graph replay between logging steps" if self.cuda_graphs else "")
            + ("; --use_fast_math" if fast else "")
        )
        return result

    # --- the core's steps as CUDA graphs (cuda_graphs=True) ------------------------------

    def graph_refusal(self, X: Any) -> str | None:
        if getattr(self._cupy.cuda.runtime, "is_hip", False):
            return "CuPy is built for ROCm here (the graph path is written for CUDA)"
        return None

    def graph_runner(self, run: Any) -> GraphRunner:
        """The core's epochs as CUDA-graph replays (:mod:`nnbin_backends.cuda.graphs`) with
        the CUDA-graph library of the data's device (a stream and a memory pool), the
        products computed by capture-safe kernels (:mod:`nnbin_backends.cuda.gemm`), the
        samples whole."""
        device = int(run.X.device.id)
        if device not in self._graphs:
            self._graphs[device] = CupyGraphs(self._cupy, self.xp, device)
        graphs = self._graphs[device]
        run.block_rows, run.core_xp = None, graphs.core_xp
        return GraphRunner(run, graphs, self.graph_workspaces)
