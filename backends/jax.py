"""JAX: the whole training run compiled once (``lax.scan`` under ``jax.jit``), CPU or GPU.
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
    loop = "jax.lax.scan under jax.jit"

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
        key = (steps, log_every, X.shape, str(X.dtype), params.W1.shape,
               str(getattr(X, "sharding", "")))
        compile_seconds = 0.0
        lr_arr = self.xp.asarray(lr, dtype=X.dtype)
        if key not in self._compiled:
            t0 = time.perf_counter()
            fn = self._jax.jit(_compiled_run, static_argnames=("steps", "log_every"))
            self._compiled[key] = fn.lower(params, X, y, lr_arr, steps=steps,
                                           log_every=log_every).compile()
            compile_seconds = time.perf_counter() - t0
        compiled = self._compiled[key]
        try:
            self.last_temp_bytes = int(compiled.memory_analysis().temp_size_in_bytes)
        except Exception:  # not every platform reports it
            self.last_temp_bytes = None
        params, losses, good, good_step = compiled(params, X, y, lr_arr)
        self._jax.block_until_ready(params)
        logged = range(0, steps, log_every) if log_every > 0 else range(0)
        history = [(s, float(v)) for s, v in zip(logged, np.asarray(losses))]
        if on_log is not None:
            for s, v in history:
                if not np.isfinite(v):
                    break
                on_log(s, v)
        last = int(good_step)
        return RunResult(params, history, compile_seconds,
                         last_finite=(last, good) if last >= 0 else None)


def _compiled_run(params: Params, X: Any, y: Any, lr: Any, *, steps: int, log_every: int
                  ) -> tuple[Params, Any, Params, Any]:
    """``steps`` steps with the loss before every ``log_every``-th; traced once by jax.jit.

    Returns the final parameters, the logged losses, and the last parameters whose logged
    loss was finite with their step (-1 if none), kept inside the loop at no host cost.
    X and y are arguments, never closed over: closed-over arrays become compile-time
    constants (a 2e7-sample compile took 31 s that way).
    """
    import jax.numpy as jnp
    from jax import lax

    def plain(_: Any, p: Params) -> Params:
        _, g = value_and_grads(p, X, y, with_loss=False)
        return apply_update(p, g, lr)

    def logged(carry: tuple[Params, Params, Any], step: Any
               ) -> tuple[tuple[Params, Params, Any], Any]:
        p, good, good_step = carry
        loss, g = loss_and_grads(p, X, y)
        ok = jnp.isfinite(loss)
        good = Params(*(jnp.where(ok, a, b) for a, b in zip(p, good)))
        good_step = jnp.where(ok, step, good_step)
        return (apply_update(p, g, lr), good, good_step), loss

    start = (params, params, jnp.asarray(-1, jnp.int32))
    if log_every <= 0:
        return lax.fori_loop(0, steps, plain, params), jnp.zeros((0,), X.dtype), params, start[2]

    def segment(carry: tuple[Params, Params, Any], step: Any
                ) -> tuple[tuple[Params, Params, Any], Any]:
        (p, good, good_step), loss = logged(carry, step)
        return (lax.fori_loop(0, log_every - 1, plain, p), good, good_step), loss

    n_full, rest = divmod(steps, log_every)
    marks = jnp.arange(n_full, dtype=jnp.int32) * log_every
    carry, losses = lax.scan(segment, start, marks)
    if rest:
        carry, loss = logged(carry, jnp.asarray(n_full * log_every, jnp.int32))
        p, good, good_step = carry
        carry = (lax.fori_loop(0, rest - 1, plain, p), good, good_step)
        losses = jnp.concatenate([losses, loss[None]])
    p, good, good_step = carry
    return p, losses, good, good_step
