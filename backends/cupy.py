"""CuPy: the array-API core on NVIDIA GPUs, and the fused CUDA step (``backends/cuda/``).

Verified on one NVIDIA H100 (2026-11-28: the conformance suite, the seed job, the
benchmark; BENCHMARKS.md); on CPU-only machines the kernels run under a SIMT emulator and
the driver against a CuPy stand-in. Training takes the fused step (``cuda/fused.py``: two
kernels a step, no (N, H) array) where it applies, unless ``fused=False``; else the core,
and ``TrainResult.loop`` says why. With ``cuda_graphs=True`` the core's epochs replay as
CUDA graphs (``cuda/graphs.py``, products by the capture-safe kernels of ``cuda/gemm.py``;
not yet run on a GPU)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import About, Backend, Runners, Tools
from nnbin.errors import BackendUnavailableError

from .cuda.fused import CupyFused, forbid_cupy_sync, on_device
from .cuda.graphs import CupyGraphs, GraphRunner


class CupyRunners(Runners):
    """The fused step (:class:`~nnbin_backends.cuda.fused.CupyFused`) and the core's
    epochs as CUDA graphs."""

    be: CupyBackend
    core_loop = "python loop (array-API core)"

    def __init__(self, be: CupyBackend) -> None:
        super().__init__(be)
        self.fused = be._fused
        if self.fused is None:  # a ROCm build of cupy
            self.no_fused = "this GPU is not an NVIDIA one (the kernels assume 32-thread warps)"

    def graphs(self, X: Any) -> Any:
        """The core's epochs as CUDA-graph replays (:mod:`nnbin_backends.cuda.graphs`) with
        the CUDA-graph library of the data's device (a stream and a memory pool), the
        products computed by capture-safe kernels (:mod:`nnbin_backends.cuda.gemm`), the
        samples whole."""
        be = self.be
        if getattr(be._cupy.cuda.runtime, "is_hip", False):
            return "CuPy is built for ROCm here (the graph path is written for CUDA)"

        def runner(run: Any) -> GraphRunner:
            device = int(run.X.device.id)
            if device not in be._graphs:
                be._graphs[device] = CupyGraphs(be._cupy, be.xp, device)
            graphs = be._graphs[device]
            run.block_rows, run.core_xp = None, graphs.core_xp
            return GraphRunner(run, graphs, be.graph_workspaces)

        return runner


class CupyTools(Tools):
    be: CupyBackend

    def devices(self) -> list[str]:
        rt = self.be._cupy.cuda.runtime
        out = []
        for i in range(rt.getDeviceCount()):
            name = rt.getDeviceProperties(i)["name"]
            out.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return out

    def gpu_devices(self) -> list[str]:
        return self.devices()

    def full_precision(self) -> None:
        """CuPy reads CUPY_TF32 at import: the suite must not run with TF32 matmuls."""
        if os.environ.get("CUPY_TF32", "0") == "1":
            raise BackendUnavailableError("unset CUPY_TF32 for full-precision float32 matmuls")

    def out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, self.be._cupy.cuda.memory.OutOfMemoryError)

    def release_memory(self) -> None:
        """Give the memory pool's free blocks back to the device (between benchmark cells),
        and drop the fused step's workspaces and the core's graphs."""
        be = self.be
        if be._fused is not None:
            be._fused._workspaces.clear()
        be.graph_workspaces.clear()
        be._graphs.clear()
        be._cupy.get_default_memory_pool().free_all_blocks()
        be._cupy.get_default_pinned_memory_pool().free_all_blocks()

    def step_peak_bytes(self, run_one_step: Callable[[], object]) -> int | None:
        """Growth of CuPy's memory pool over one step (the blocks the step kept)."""
        cp = self.be._cupy
        pool = cp.get_default_memory_pool()
        cp.cuda.Device().synchronize()
        pool.free_all_blocks()
        base = pool.total_bytes()
        run_one_step()
        cp.cuda.Device().synchronize()
        return int(pool.total_bytes() - base)

    def forbid_host_sync(self, x: Any) -> Any:
        return forbid_cupy_sync()


class CupyBackend(Backend, runners=CupyRunners, tools=CupyTools):
    name = "cupy"
    is_array = staticmethod(array_api_compat.is_cupy_array)
    about = About(loop="fused CUDA step where it applies, else python loop", memory_nh=4.0)
    default_dtype = "float32"

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
        hip = getattr(cupy.cuda.runtime, "is_hip", False)
        self._fused: CupyFused | None = None if hip else CupyFused(cupy)
        #: the CUDA-graph path of the core (cuda_graphs=True): a CupyGraphs per device, and
        #: the workspaces (graphs and static buffers) later runs on the same data reuse
        self._graphs: dict[int, CupyGraphs] = {}
        self.graph_workspaces: OrderedDict[Any, Any] = OrderedDict()

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

    def step_context(self, X: Any) -> Any:
        """A context that makes ``X``'s GPU the current one (kernels launch there)."""
        return on_device(self._cupy, X)
