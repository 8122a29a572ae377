"""CuPy: the array-API core on NVIDIA GPUs, and a fused CUDA training step.

UNVERIFIED ON A GPU so far: written and tested on CPU-only machines (its errors, its
registration, its skips; the fused kernels' source is run as C++ on the CPU and compiled by
nvcc); see BENCHMARKS.md and the project's issues for what a GPU run must still show.
Host data are moved to the GPU once; the loss reaches the host only on logging steps.

Training uses the fused step (backends/cuda_fused.py: three kernels a step, no (N, H)
array) where it applies — float32/float64, D <= 64, H <= 256, C-contiguous data — unless
``fused=False`` is asked for (``nnbin.train(..., fused=False)``, ``nnbin train
--no-fused``); otherwise the array-API core runs. ``TrainResult.loop`` says which ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import Backend
from nnbin.errors import BackendUnavailableError
from nnbin.model import Params
from nnbin.training import RunResult, diverged

from . import cuda_fused

FUSED_LOOP = "fused CUDA step (3 kernels, no (N, H) arrays)"


class CupyBackend(Backend):
    name = "cupy"
    package = "cupy"
    extra = "cupy"
    memory_nh = 4.0
    default_dtype = "float32"
    loop = "fused CUDA step where it applies, else python loop"
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
        self._modules: dict[tuple[int, int, str], Any] = {}

    @staticmethod
    def owns(x: object) -> bool:
        return bool(array_api_compat.is_cupy_array(x))

    def version(self) -> str:
        return str(self._cupy.__version__)

    def devices(self) -> list[str]:
        rt = self._cupy.cuda.runtime
        out = []
        for i in range(rt.getDeviceCount()):
            name = rt.getDeviceProperties(i)["name"]
            out.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return out

    def gpu_devices(self) -> list[str]:
        return self.devices()

    def step_peak_bytes(self, run_one_step: Callable[[], object]) -> int | None:
        """Growth of CuPy's memory pool over one step (the blocks the step kept)."""
        pool = self._cupy.get_default_memory_pool()
        self._cupy.cuda.Device().synchronize()
        pool.free_all_blocks()
        base = pool.total_bytes()
        run_one_step()
        self._cupy.cuda.Device().synchronize()
        return int(pool.total_bytes() - base)

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        host = np.asarray(a, dtype=dtype)
        index = getattr(device, "id", device)
        with self._cupy.cuda.Device(index if index is not None else
                                    self._cupy.cuda.runtime.getDevice()):
            return self._cupy.asarray(host)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(self._cupy.asnumpy(x))

    def synchronize(self, x: Any) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    # --- the fused step -------------------------------------------------------------------

    def fused_applies(self, params: Params, X: Any) -> bool:
        d, h = params.W1.shape
        return bool(cuda_fused.supported(int(d), int(h), str(X.dtype))
                    and X.flags.c_contiguous and X.shape[0] > 0)

    def _kernels(self, d: int, h: int, dtype: str) -> tuple[Any, Any, Any]:
        key = (d, h, dtype)
        if key not in self._modules:
            module = self._cupy.RawModule(code=cuda_fused.kernel_source(d, h, dtype),
                                          options=("--std=c++14",))
            self._modules[key] = tuple(module.get_function(f"nnbin_{k}")
                                       for k in ("partials", "reduce", "update"))
        kernels: tuple[Any, Any, Any] = self._modules[key]
        return kernels

    def _fused_steps(self, params: Params, X: Any, y: Any, lr: float, steps: int,
                     log_every: int, on_log: Callable[[int, float], None] | None,
                     want_grads: bool = False) -> tuple[RunResult, Any]:
        cp = self._cupy
        n, d = (int(v) for v in X.shape)
        h = int(params.W1.shape[1])
        dtype = str(X.dtype)
        real = np.dtype(dtype).type
        partials, reduce, update = self._kernels(d, h, dtype)
        P = cuda_fused.n_partials(d, h)
        block = 256
        threads = min(max(block, math.ceil(n / 4)), 65536)
        threads = block * math.ceil(threads / block)
        chunk = 256
        n_chunks = math.ceil(threads / chunk)
        scratch = cp.empty((P, threads), dtype=dtype)
        sums = cp.empty((P, n_chunks), dtype=dtype)
        grad = cp.empty((P - 1,), dtype=dtype)
        loss = cp.empty((1,), dtype=dtype)
        y = cp.ascontiguousarray(y.reshape(-1))
        # Two buffers used in turn (no thread reads what another writes); copies, so the
        # caller's parameters are never written.
        cur = Params(*(cp.array(p, copy=True, order="C") for p in params))
        nxt = Params(*(cp.empty_like(p) for p in cur))
        initial, last_finite = cur, None
        history: list[tuple[int, float]] = []
        grid_p = (threads // block,)
        grid_r = (math.ceil(P * n_chunks / block),)
        grid_u = (math.ceil(P / block),)
        for s in range(steps):
            logging = log_every > 0 and s % log_every == 0
            partials(grid_p, (block,), (X, y, *cur, np.int64(n), np.int32(logging), scratch))
            reduce(grid_r, (block,), (scratch, np.int64(threads), np.int64(chunk),
                                      np.int64(n_chunks), sums))
            update(grid_u, (block,), (sums, np.int64(n_chunks), np.int64(n), real(lr), *cur,
                                      *nxt, grad, loss))
            if logging:
                value = float(loss[0])  # the one host transfer, on logging steps only
                if not math.isfinite(value):
                    raise diverged(s, lr, last_finite, initial)
                last_finite = (s, Params(*(p.copy() for p in cur)))  # cur is reused
                history.append((s, value))
                if on_log is not None:
                    on_log(s, value)
            cur, nxt = nxt, cur
        result = RunResult(cur, history, last_finite=last_finite)
        if not want_grads:
            return result, None
        dh = d * h
        g = Params(grad[:dh].reshape(d, h), grad[dh:dh + h], grad[dh + h:dh + 2 * h]
                   .reshape(h, 1), grad[dh + 2 * h:dh + 2 * h + 1])
        return result, (loss[0], g)

    def fused_loss_and_grads(self, params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        """Loss and gradients as the fused step computes them (for the conformance suite)."""
        _, out = self._fused_steps(params, X, y, 0.0, 1, 1, None, want_grads=True)
        loss_and_grads: tuple[Any, Params] = out
        return loss_and_grads

    def run(self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
            on_log: Callable[[int, float], None] | None = None,
            fused: bool | None = None) -> RunResult:
        if fused is not False and self.fused_applies(params, X):
            result, _ = self._fused_steps(params, X, y, lr, steps, log_every, on_log)
            result.loop = FUSED_LOOP
            return result
        if fused:
            raise BackendUnavailableError(
                f"no fused step for D={params.W1.shape[0]}, H={params.W1.shape[1]}, "
                f"{X.dtype}: it covers float32/float64, D <= {cuda_fused.MAX_D}, "
                f"H <= {cuda_fused.MAX_H}")
        result = super().run(params, X, y, lr=lr, steps=steps, log_every=log_every,
                             on_log=on_log)
        result.loop = "python loop (array-API core)"
        return result
