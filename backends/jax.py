"""JAX: the training run compiled once (a ``lax.fori_loop`` under ``jax.jit``) and run in
chunks of about CHUNK_SECONDS, CPU or GPU.
Arrays on one CUDA GPU, where cupy is installed, train with the cupy backend's fused step
instead, reached through DLPack with no copies (``fused=False``: the compiled core);
verified on an H100 (BENCHMARKS.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import Backend
from nnbin.backprop import apply_update, loss_and_grads, value_and_grads
from nnbin.errors import BackendUnavailableError
from nnbin.model import Params
from nnbin.training import RunResult

from .cupy import DlpackFused, FusedThroughDlpack

X64_HINT = (
    "float64 on JAX needs 64-bit mode: set JAX_ENABLE_X64=1 before starting Python, or call "
    "jax.config.update('jax_enable_x64', True) first (new JAX arrays in this process then "
    "default to 64-bit); otherwise JAX would silently compute in float32"
)


class JaxBackend(FusedThroughDlpack, Backend):
    name = "jax"
    package = "jax"
    extra = "jax"
    memory_nh = 2.5
    default_dtype = "float32"
    loop = "jax.lax.fori_loop under jax.jit, in chunks"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self._jax = jax
        self.xp = jnp  # array_api_compat.array_namespace returns jax.numpy itself
        self._compiled: dict[tuple[Any, ...], Any] = {}
        #: XLA's temporary buffer size of the last compiled run (for the benchmark)
        self.last_temp_bytes: int | None = None
        # arrays on one CUDA GPU can reach the cupy backend's fused step through DLPack
        from nnbin.backend import is_installed

        self._dlpack = (DlpackFused(jnp.from_dlpack)
                        if is_installed("cupy") and self.gpu_devices() else None)
        self.has_fused = self._dlpack is not None

    @staticmethod
    def owns(x: object) -> bool:
        return bool(array_api_compat.is_jax_array(x))

    def version(self) -> str:
        return str(self._jax.__version__)

    def devices(self) -> list[str]:
        return [str(d) for d in self._jax.devices()]

    def enable_dtype(self, dtype: str) -> None:
        if dtype == "float64":
            self._jax.config.update("jax_enable_x64", True)

    # the command line's optional hook (nnbin/cli.py looks it up): it owns its process
    def use_persistent_cache(self, folder: str) -> None:
        """Keep compiled runs in ``folder`` (JAX's persistent compilation cache), so a second
        ``nnbin train --backend jax`` of the same shapes compiles nothing. Process-wide, so
        the API never calls it; every compile is kept, however quick."""
        config = self._jax.config
        config.update("jax_compilation_cache_dir", folder)
        config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    # the benchmark's optional hooks (nnbin/bench.py looks them up)
    @staticmethod
    def out_of_memory(exc: BaseException) -> bool:
        """XLA reports an allocation failure as RESOURCE_EXHAUSTED (XlaRuntimeError)."""
        return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)

    def release_memory(self) -> None:
        """JAX frees device buffers when no array refers to them: collect the cycles."""
        import gc

        gc.collect()

    def gpu_devices(self) -> list[str]:
        return [str(d) for d in self._jax.devices() if d.platform == "gpu"]

    def x64_enabled(self) -> bool:
        return bool(self._jax.config.read("jax_enable_x64"))

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        if dtype == "float64" and not self.x64_enabled():
            raise BackendUnavailableError(X64_HINT)
        return self._jax.device_put(np.asarray(a, dtype=dtype), device)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(self._jax.device_get(x))

    def distribute(self, params: Params, X: Any, y: Any, n_devices: int | None
                   ) -> tuple[Params, Any, Any]:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = self._jax.devices()
        k = len(devices) if n_devices is None else n_devices
        if not 1 <= k <= len(devices):
            raise BackendUnavailableError(
                f"data-parallel training on {k} devices asked for, but JAX sees "
                f"{len(devices)} ({', '.join(map(str, devices))})"
            )
        if X.shape[0] % k:
            raise ValueError(
                f"{X.shape[0]} samples do not split evenly over {k} devices: "
                f"use a sample count divisible by {k} or fewer devices"
            )
        mesh = Mesh(np.array(devices[:k]), ("batch",))
        rows = NamedSharding(mesh, PartitionSpec("batch", None))
        replicated = NamedSharding(mesh, PartitionSpec())
        put = self._jax.device_put
        return (Params(*(put(p, replicated) for p in params)), put(X, rows), put(y, rows))

    def synchronize(self, x: Any) -> None:
        self._jax.block_until_ready(x)

    def _on_gpu(self, X: Any) -> bool:
        devices = X.devices()
        return len(devices) == 1 and next(iter(devices)).platform == "gpu"

    def run(self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
            on_log: Callable[[int, float], None] | None = None,
            fused: bool | None = None) -> RunResult:
        if fused is not False:
            self.last_temp_bytes = None  # through cupy: no XLA buffers to report
        result = self._fused_run(params, X, y, lr=lr, steps=steps, log_every=log_every,
                                 on_log=on_log, fused=fused)
        if result is not None:
            return result
        if steps == 0:
            return RunResult(params, [], 0.0, last_finite=None)
        key = (X.shape, str(X.dtype), params.W1.shape, str(getattr(X, "sharding", "")))
        compile_seconds = 0.0
        xp = self.xp
        lr_arr = xp.asarray(lr, dtype=X.dtype)
        i32 = self._jax.numpy.int32

        def ints(*values: int) -> list[Any]:
            return [xp.asarray(v, dtype=i32) for v in values]

        good_step = xp.asarray(-1, dtype=i32)
        if key not in self._compiled:
            t0 = time.perf_counter()
            fn = self._jax.jit(_chunk)
            self._compiled[key] = fn.lower(params, params, good_step, X, y, lr_arr,
                                           *ints(0, 0, 0, 1)).compile()
            compile_seconds = time.perf_counter() - t0
        compiled = self._compiled[key]
        try:
            self.last_temp_bytes = int(compiled.memory_analysis().temp_size_in_bytes)
        except Exception:  # not every platform reports it
            self.last_temp_bytes = None
        # The run goes in chunks of about CHUNK_SECONDS, one call of the compiled function
        # each; how many steps a chunk holds is an argument (a while loop inside), so no
        # chunk size compiles anew. Between chunks Python runs: Ctrl-C stops the run within
        # about a chunk, and the losses reach on_log as they come.
        history: list[tuple[int, float]] = []
        good, s, per_step = params, 0, None
        while s < steps:
            budget = 1 if per_step is None else max(1, int(CHUNK_SECONDS / per_step))
            lead, count, seg = 0, 0, 1
            if log_every > 0 and s % log_every == 0:  # a logged step starts here
                seg = min(log_every, steps - s)
                if seg <= budget:  # whole segments (the last may be shorter) fit a chunk
                    whole = (steps - s) // log_every
                    count = max(1, min(whole, CHUNK_LOGS, budget // log_every))
                    if count * log_every > steps - s:  # only the short last segment
                        count = 1
                else:  # a long segment: its logged step now, its plain steps in chunks
                    count, seg = 1, 1
            else:
                stop = steps if log_every <= 0 else min(steps, s + log_every - s % log_every)
                lead = min(stop - s, budget)
            t0 = time.perf_counter()
            params, good, good_step, losses = compiled(
                params, good, good_step, X, y, lr_arr, *ints(s, lead, count, seg))
            self._jax.block_until_ready(params)  # the chunk's end: the one wait
            values = np.asarray(losses)[:count]
            ran = lead + count * seg
            per_step = (time.perf_counter() - t0) / ran
            for k, v in enumerate(values):
                at = s + lead + k * seg
                history.append((at, float(v)))
                if not np.isfinite(v):  # diverged: train() raises with the last finite
                    ran = steps - s
                    break
                if on_log is not None:
                    on_log(at, float(v))
            s += ran
        last = int(good_step)
        return RunResult(params, history, compile_seconds,
                         last_finite=(last, good) if last >= 0 else None)


#: seconds of work per compiled call of a run (Ctrl-C waits at most about this long)
CHUNK_SECONDS = 0.25
#: the most logged losses one call returns (the size of its loss buffer)
CHUNK_LOGS = 256


def _chunk(params: Params, good: Params, good_step: Any, X: Any, y: Any, lr: Any,
           first: Any, lead: Any, count: Any, seg: Any) -> tuple[Params, Params, Any, Any]:
    """From step ``first``: ``lead`` plain steps, then ``count`` segments of ``seg`` steps,
    each starting with a step whose loss is recorded (at most CHUNK_LOGS a call) and, where
    finite, remembered with its parameters as the last finite ones, at no host cost. Traced
    once by jax.jit: the counts are arguments, so every chunk runs the same compiled code.
    X and y are arguments, never closed over: closed-over arrays become compile-time
    constants (a 2e7-sample compile took 31 s that way).
    """
    import jax.numpy as jnp
    from jax import lax

    def plain(_: Any, p: Params) -> Params:
        _, g = value_and_grads(p, X, y, with_loss=False)
        return apply_update(p, g, lr)

    def segment(i: Any, carry: tuple[Params, Params, Any, Any]
                ) -> tuple[Params, Params, Any, Any]:
        p, good, good_step, losses = carry
        loss, g = loss_and_grads(p, X, y)
        ok = jnp.isfinite(loss)
        good = Params(*(jnp.where(ok, a, b) for a, b in zip(p, good)))
        good_step = jnp.where(ok, first + lead + i * seg, good_step)
        losses = losses.at[i].set(loss)
        p = lax.fori_loop(0, seg - 1, plain, apply_update(p, g, lr))
        return p, good, good_step, losses

    p = lax.fori_loop(0, lead, plain, params)
    losses = jnp.full((CHUNK_LOGS,), jnp.nan, dtype=X.dtype)
    return lax.fori_loop(0, count, segment, (p, good, good_step, losses))
