"""PyTorch: the core on torch tensors, CPU or CUDA, eager, with autograd off (the backward
pass is nnbin's own). CUDA tensors, where cupy is installed, train with the cupy backend's
fused step instead, reached through DLPack with no copies (``fused=False``: the core);
verified on an H100 (BENCHMARKS.md). With ``cuda_graphs=True`` the core's epochs on CUDA
tensors replay as CUDA graphs (:mod:`nnbin_backends.cuda.graphs`; not yet verified on a
GPU)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import About, Backend, Runners, Tools, cache_block_rows

from .cuda import dlpack
from .cuda.fused import forbid_cupy_sync
from .cuda.graphs import GraphRunner, Graphs, TorchGraphs


class TorchRunners(Runners):
    """cupy's fused step through DLPack (CUDA tensors, cupy installed), and the core's
    epochs as CUDA graphs (one private memory pool; workspaces reused across runs)."""

    be: TorchBackend

    def __init__(self, be: TorchBackend) -> None:
        super().__init__(be)
        cuda = be._torch.cuda.is_available()
        self.fused = dlpack.reach(be, be._torch.from_dlpack, _on_gpu, cuda)
        self.no_fused = dlpack.needs(be.name)
        self._graphs: Graphs | None = None
        self.graph_workspaces: OrderedDict[Any, Any] = OrderedDict()

    def graphs(self, X: Any) -> Any:
        if not _on_gpu(X):
            return "the data are not on a CUDA device"

        def runner(run: Any) -> GraphRunner:
            if self._graphs is None:
                self._graphs = TorchGraphs(self.be._torch)
            return GraphRunner(run, self._graphs, self.graph_workspaces)

        return runner


class TorchTools(Tools):
    be: TorchBackend

    def devices(self) -> list[str]:
        cuda = self.be._torch.cuda
        n = cuda.device_count() if cuda.is_available() else 0
        return ["cpu", *(f"cuda:{i}" for i in range(n))]

    def gpu_devices(self) -> list[str]:
        return self.devices()[1:]

    def full_precision(self) -> None:
        """No TF32 in CUDA matmuls and convolutions, process-wide."""
        self.be._torch.backends.cuda.matmul.allow_tf32 = False
        self.be._torch.backends.cudnn.allow_tf32 = False

    def out_of_memory(self, exc: BaseException) -> bool:
        oom = getattr(self.be._torch.cuda, "OutOfMemoryError", None)
        return bool(
            (oom is not None and isinstance(exc, oom))
            or isinstance(exc, MemoryError)
            or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))
        )

    def release_memory(self) -> None:
        if self.be._torch.cuda.is_available():
            self.be._torch.cuda.empty_cache()

    def step_peak_bytes(self, run_one_step: Callable[[], object]) -> int | None:
        cuda = self.be._torch.cuda
        if not cuda.is_available():
            return None
        cuda.synchronize()
        base = cuda.memory_allocated()
        cuda.reset_peak_memory_stats()
        run_one_step()
        cuda.synchronize()
        return int(cuda.max_memory_allocated() - base)

    def forbid_host_sync(self, x: Any) -> Any:
        """torch's sync debug mode "error" for CUDA tensors, together with cupy's detector
        where training goes through cupy's fused step (None if cupy has none)."""
        if not _on_gpu(x):
            return None
        cupy_guard = None
        if self.be.runners.fused is not None and dlpack.cupy_fused() is not None:
            cupy_guard = forbid_cupy_sync()  # training goes through cupy's kernels
            if cupy_guard is None:
                return None
        torch = self.be._torch

        @contextlib.contextmanager
        def guard() -> Iterator[None]:
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")  # a synchronising call raises
            try:
                with cupy_guard or contextlib.nullcontext():
                    yield
            finally:
                torch.cuda.set_sync_debug_mode(previous)

        return guard()


class TorchBackend(Backend, runners=TorchRunners, tools=TorchTools):
    name = "torch"
    is_array = staticmethod(array_api_compat.is_torch_array)
    about = About(memory_nh=0.1)
    default_dtype = "float32"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self.xp = array_api_compat.array_namespace(torch.empty(0))

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        """Host data go to the first CUDA device when there is one, else stay on the CPU.
        A read-only array (pandas hands those out) is copied: a CPU tensor would share its
        memory, which PyTorch warns it cannot protect."""
        if device is None:
            device = "cuda" if self._torch.cuda.is_available() else "cpu"
        host = np.asarray(a, dtype=dtype)
        if not host.flags.writeable:
            host = host.copy()
        return self._torch.as_tensor(host, device=device)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x.detach().cpu().numpy())

    def synchronize(self, x: Any) -> None:
        leaves = x if isinstance(x, tuple | list) else (x,)
        for leaf in leaves:
            if getattr(leaf, "is_cuda", False):
                self._torch.cuda.synchronize(leaf.device)

    def step_context(self, X: Any) -> Any:
        """Autograd off: the backward pass is nnbin's, no graph is recorded."""
        return self._torch.no_grad()

    def block_rows(self, n_samples: int, hidden: int) -> int | None:
        # CPU tensors (CUDA ones run whole). Torch's per-operation overhead is
        # higher than NumPy's, so its best block is larger: 2,048-8,192 rows measured
        # 2.0 ms a step on the seed job (float32) against 6.1 ms at NumPy's 496 rows and
        # 2.3 ms unblocked.
        return 16 * cache_block_rows(hidden)


def _on_gpu(X: Any) -> bool:
    return bool(X.is_cuda)
