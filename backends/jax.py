"""JAX: the training run compiled once (a ``lax.fori_loop`` under ``jax.jit``) and run on
the shared schedule (:mod:`nnbin.loop`): one call of it a chunk, CPU or GPU.
Arrays on one CUDA GPU, where cupy is installed, train with the cupy backend's fused step
instead, reached through DLPack with no copies (``fused=False``: the compiled core);
verified on an H100 (BENCHMARKS.md)."""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backprop import apply_update, loss_and_grads, value_and_grads
from nnbin.config import SEED, Config
from nnbin.errors import BackendUnavailableError
from nnbin.loop import CHUNK_LOGS, EpochSteps, RunResult, Steps
from nnbin.model import ACTIVATION_FNS, Params, like

from .dlpack_fused import DlpackFused, FusedThroughDlpack

X64_HINT = (
    "float64 on JAX needs 64-bit mode: set JAX_ENABLE_X64=1 before starting Python, or call "
    "jax.config.update('jax_enable_x64', True) first (new JAX arrays in this process then "
    "default to 64-bit); otherwise JAX would silently compute in float32"
)


class JaxBackend(FusedThroughDlpack):
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

        self._dlpack = (
            DlpackFused(jnp.from_dlpack) if is_installed("cupy") and self.gpu_devices() else None
        )
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

    # the conformance suite's optional hook (conformance/helpers.py looks it up)
    def full_precision(self) -> None:
        """float64 available and float32 matmuls at full precision, process-wide."""
        self._jax.config.update("jax_enable_x64", True)
        self._jax.config.update("jax_default_matmul_precision", "highest")

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

    def distribute(
        self, params: Params, X: Any, y: Any, n_devices: int | None
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

    def run(self, params: Any, X: Any, y: Any, **options: Any) -> RunResult:
        """:meth:`nnbin.Backend.run` (the same arguments), after resetting the benchmark's
        hook: set again by a compiled run; a run through cupy's fused step has no XLA
        buffers to report."""
        self.last_temp_bytes = None
        return super().run(params, X, y, **options)

    def stepper(
        self,
        params: Any,
        X: Any,
        y: Any,
        lr: float,
        config: Config = SEED,
        validation: tuple[Any, Any] | None = None,
    ) -> Steps:
        if config.plain_descent:
            return _CompiledSteps(self, params, X, y, lr, config)
        return _CompiledEpochs(self, params, X, y, lr, config, validation)

    def _compiled_chunk(
        self, params: Any, X: Any, y: Any, lr: Any, config: Config = SEED
    ) -> tuple[Any, float]:
        """The compiled :func:`_chunk` for these shapes (compiled once per shapes, dtype,
        sharding, activation and penalty; the counts are arguments) and the seconds
        compiling took now."""
        key = (
            *_shapes(params, X),
            config.activation,
            config.alpha,
            ACTIVATION_FNS[config.activation],  # the functions traced (patched: compile anew)
        )
        seconds = 0.0
        if key not in self._compiled:
            t0 = time.perf_counter()
            i32 = self.xp.asarray(0, dtype=self.xp.int32)
            fn = functools.partial(_chunk, activation=config.activation, alpha=config.alpha)
            self._compiled[key] = self._jax.jit(fn).lower(params, X, y, lr, i32, i32, i32).compile()
            seconds = time.perf_counter() - t0
        compiled = self._compiled[key]
        try:
            self.last_temp_bytes = int(compiled.memory_analysis().temp_size_in_bytes)
        except Exception:  # not every platform reports it
            self.last_temp_bytes = None
        return compiled, seconds


def _shapes(params: Any, X: Any) -> tuple[Any, ...]:
    """What a compiled run depends on besides its settings: shapes, dtype, sharding."""
    return (X.shape, str(X.dtype), tuple(p.shape for p in params), str(getattr(X, "sharding", "")))


class _CompiledSteps(Steps):
    """A chunk of the shared schedule as one call of one compiled function (compiled on
    the first chunk): the losses are recorded inside it, the last finite parameters kept
    there too, at no host cost; the chunk's end is its one wait."""

    def __init__(
        self, be: JaxBackend, params: Any, X: Any, y: Any, lr: float, config: Config = SEED
    ) -> None:
        self.be, self.params, self.X, self.y, self.config = be, params, X, y, config
        self.lr = be.xp.asarray(lr, dtype=X.dtype)
        self._fn: Any = None

    def chunk(self, lead: int, count: int, seg: int) -> list[float]:
        if self._fn is None:
            self._fn, self.compile_seconds = self.be._compiled_chunk(
                self.params, self.X, self.y, self.lr, self.config
            )
        i32 = self.be.xp.int32
        ints = (self.be.xp.asarray(v, dtype=i32) for v in (lead, count, seg))
        self.params, self.good, losses = self._fn(self.params, self.X, self.y, self.lr, *ints)
        values = np.asarray(losses)[:count].tolist()  # waits for the chunk: the one wait
        self.be._jax.block_until_ready(self.params)
        return [float(v) for v in values]


def _chunk(
    params: Any,
    X: Any,
    y: Any,
    lr: Any,
    lead: Any,
    count: Any,
    seg: Any,
    *,
    activation: str = "sigmoid",
    alpha: float = 0.0,
) -> tuple[Any, Any, Any]:
    """``lead`` plain steps, then ``count`` segments of ``seg`` steps, each starting with a
    step whose loss is recorded (at most CHUNK_LOGS a call); also the parameters before the
    last logged step that is finite with only finite ones before it. Traced once by
    jax.jit: the counts are arguments, so every chunk runs the same compiled code. X and y
    are arguments, never closed over: closed-over arrays become compile-time constants (a
    2e7-sample compile took 31 s that way).
    """
    import jax.numpy as jnp
    from jax import lax

    kw: dict[str, Any] = {"activation": activation, "alpha": alpha}

    def plain(_: Any, p: Any) -> Any:
        _, g = value_and_grads(p, X, y, with_loss=False, **kw)
        return apply_update(p, g, lr)

    def segment(i: Any, carry: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        p, good, alive, losses = carry
        loss, g = loss_and_grads(p, X, y, **kw)
        alive = alive & jnp.isfinite(loss)
        good = like(p, (jnp.where(alive, a, b) for a, b in zip(p, good)))
        losses = losses.at[i].set(loss)
        p = lax.fori_loop(0, seg - 1, plain, apply_update(p, g, lr))
        return p, good, alive, losses

    p = lax.fori_loop(0, lead, plain, params)
    losses = jnp.full((CHUNK_LOGS,), jnp.nan, dtype=X.dtype)
    p, good, _, losses = lax.fori_loop(0, count, segment, (p, p, jnp.asarray(True), losses))
    return p, good, losses


class _CompiledEpochs(EpochSteps):
    """The general loop (:class:`nnbin.loop.EpochSteps`) compiled: a chunk of the shared
    schedule is one call of one compiled function (:func:`_epochs`: its epochs in a
    ``lax.fori_loop``, each epoch's full mini-batches in another over
    ``lax.dynamic_slice``s, the short last batch after it, the losses recorded inside), with
    the chunk's shuffled orders (drawn on the host, as on every backend) an argument of a
    fixed power-of-two number of rows, so a run compiles once. With a stopping rule the
    chunk is :func:`_stopping_epochs`: every epoch recorded and read by the rule inside the
    compiled loop, the rule's state carried from chunk to chunk."""

    def __init__(
        self,
        be: JaxBackend,
        params: Any,
        X: Any,
        y: Any,
        lr: float,
        config: Config,
        validation: tuple[Any, Any] | None,
    ) -> None:
        super().__init__(
            params,
            X,
            y,
            lr,
            config,
            validation=validation,
            indices=lambda host: be.xp.asarray(host.astype(np.int32)),
        )
        self.be = be
        rule = ", the stopping rule inside" if self.stop else ""
        self.loop = (
            f"jax.jit, one compiled call a chunk of epochs{rule}" + self.loop.partition("step")[2]
        )
        # the shuffled orders of a chunk go in one (rows, N) argument of a fixed number of
        # rows (a power of two, about 64 MiB of int32 at most), so the run compiles once
        self.rows = min(CHUNK_LOGS, 1 << max((1 << 24) // max(self.n, 1), 1).bit_length() - 1)
        self.max_chunk = self.rows

    def _key(self, *extra: Any) -> tuple[Any, ...]:
        return (
            *_shapes(self.params, self.X),
            self.config,
            self.opt,
            # the functions traced: a patched update or derivative must compile anew
            type(self.opt).update,
            ACTIVATION_FNS[self.config.activation],
            *extra,
        )

    def _orders(self, total: int) -> Any:
        """The next ``total`` epochs' shuffled orders as one (rows, N) int32 argument (None
        when the epochs take the data's own order)."""
        assert total <= self.rows, f"a chunk of {total} epochs > {self.rows}"
        host = np.zeros((self.rows, self.n), dtype=np.int32)
        for e in range(total):
            order = self.order()
            if order is None:  # no shuffle: every epoch in the data's order
                return None
            host[e] = order
        return self.be.xp.asarray(host)

    def _compiled(self, fn: Any, args: tuple[Any, ...], *key: Any, **static: Any) -> Any:
        full = self._key(fn.__name__, *key)
        compiled = self.be._compiled.get(full)
        if compiled is None:
            t0 = time.perf_counter()
            jitted = self.be._jax.jit(functools.partial(fn, **static))
            compiled = self.be._compiled[full] = jitted.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - t0
        return compiled

    def chunk(self, lead: int, count: int, seg: int) -> list[float]:
        if self.stop is not None:
            return self._stopping_chunk(lead, count, seg)
        total = lead + count * seg
        perms = self._orders(total)
        i32 = self.be.xp.int32
        counts = tuple(self.be.xp.asarray(v, dtype=i32) for v in (lead, count, seg))
        args = (self.params, self.state, self.X, self.y, perms, *counts)
        fn = self._compiled(_epochs, args, perms is None, config=self.config, opt=self.opt)
        self.params, self.state, self.good, losses = fn(*args)
        values = np.asarray(losses)[:count].tolist()  # waits for the chunk: the one wait
        self.be._jax.block_until_ready(self.params)
        return [float(v) for v in values]

    def _stopping_chunk(self, lead: int, count: int, seg: int) -> list[float]:
        """``count`` epochs, each recorded and read by the stopping rule inside the compiled
        call (:func:`_stopping_epochs`); the rule's state goes in and comes back, so a run
        stops at the epoch the host rule would, and the chunk's later epochs do nothing."""
        assert lead == 0 and seg == 1, "a stopping rule records every epoch"
        rule, xp, cfg = self.stop, self.be.xp, self.config
        assert rule is not None
        f = self.X.dtype
        rule_in = (
            xp.asarray(rule.count, dtype=xp.int32),
            xp.asarray(rule.best_loss, dtype=f),
            xp.asarray(rule.best_score, dtype=f),
            rule.best_params if rule.best_params is not None else self.params,
        )
        Xv, yv = self.validation if self.validation is not None else (self.X, self.y)
        perms = self._orders(count)
        args = (
            self.params,
            self.state,
            self.X,
            self.y,
            perms,
            xp.asarray(count, dtype=xp.int32),
            Xv,
            yv,
            rule_in,
        )
        fn = self._compiled(
            _stopping_epochs,
            args,
            perms is None,
            Xv.shape,
            config=cfg,
            opt=self.opt,
            patience=cfg.patience,
        )
        self.params, self.state, self.good, losses, scores, ran, stopped, rule_out = fn(*args)
        ran = int(ran)
        values = [float(v) for v in np.asarray(losses)[:ran]]
        rule.count = int(rule_out[0])
        rule.best_loss = float(rule_out[1])
        rule.best_score = float(rule_out[2])
        if cfg.early_stopping and rule.best_score > -math.inf:
            rule.best_params = rule_out[3]
            rule.scores += [float(v) for v in np.asarray(scores)[:ran]]
        self.stopped = bool(stopped)
        return values


def _epochs(
    params: Any,
    state: Any,
    X: Any,
    y: Any,
    perms: Any,
    lead: Any,
    count: Any,
    seg: Any,
    *,
    config: Config,
    opt: Any,
) -> tuple[Any, Any, Any, Any]:
    """A chunk of epochs (``lead`` plain ones, then ``count`` segments of ``seg``, each
    starting with an epoch whose loss is recorded, at most CHUNK_LOGS a call), epoch e in
    the order ``perms[e]`` (None: the data's own); also the parameters before the last
    recorded epoch that is finite with only finite ones before it (as :func:`_chunk`)."""
    import jax.numpy as jnp
    from jax import lax

    def run(e: Any, p: Any, s: Any, with_loss: bool) -> tuple[Any, Any, Any]:
        idx = None if perms is None else perms[e]
        return _epoch(p, s, X, y, idx, config=config, opt=opt, with_loss=with_loss)

    def plain(e: Any, carry: tuple[Any, Any]) -> tuple[Any, Any]:
        p, s, _ = run(e, *carry, False)
        return p, s

    def segment(i: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        p, s, good, alive, losses = carry
        first = lead + i * seg
        p_next, s_next, loss = run(first, p, s, True)
        alive = alive & jnp.isfinite(loss)
        good = like(p, (jnp.where(alive, a, b) for a, b in zip(p, good)))
        losses = losses.at[i].set(loss)
        p_next, s_next = lax.fori_loop(first + 1, first + seg, plain, (p_next, s_next))
        return p_next, s_next, good, alive, losses

    p, s = lax.fori_loop(0, lead, plain, (params, state))
    losses = jnp.full((CHUNK_LOGS,), jnp.nan, dtype=X.dtype)
    carry = (p, s, p, jnp.asarray(True), losses)
    p, s, good, _, losses = lax.fori_loop(0, count, segment, carry)
    return p, s, good, losses


def _stopping_epochs(
    params: Any,
    state: Any,
    X: Any,
    y: Any,
    perms: Any,
    count: Any,
    Xv: Any,
    yv: Any,
    rule: tuple[Any, Any, Any, Any],
    *,
    config: Config,
    opt: Any,
    patience: int,
) -> tuple[Any, ...]:
    """Up to ``count`` epochs, each one's loss recorded and read by the stopping rule of
    :class:`nnbin.loop.StopRule` (on the held-out (Xv, yv) accuracy with early stopping,
    else on the training loss), in the compiled loop: once the rule says stop, or a loss is
    not finite, the remaining epochs do nothing. ``rule`` is (count, best loss, best score,
    best parameters) before the chunk; returns the parameters, the optimizer state, the
    last finite parameters (as :func:`_chunk`), the losses and scores, how many epochs
    ran, whether the rule stopped, and the rule's new state."""
    import jax.numpy as jnp
    from jax import lax

    from nnbin.model import forward

    early, tol = config.early_stopping, config.tol
    losses = jnp.full((CHUNK_LOGS,), jnp.nan, dtype=X.dtype)
    scores = jnp.full((CHUNK_LOGS,), jnp.nan, dtype=X.dtype)

    def body(i: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        def run(c: tuple[Any, ...]) -> tuple[Any, ...]:
            (
                p,
                s,
                good,
                losses,
                scores,
                ran,
                stopped,
                _halted,
                (stale, best_loss, best_score, best),
            ) = c
            idx = None if perms is None else perms[i]
            p2, s2, loss = _epoch(p, s, X, y, idx, config=config, opt=opt, with_loss=True)
            finite = jnp.isfinite(loss)
            good = like(p, (jnp.where(finite, a, b) for a, b in zip(p, good)))
            losses = losses.at[i].set(loss)
            if early:
                z = forward(p2, Xv, config.activation)
                score = jnp.mean(((z >= 0.0) == (yv == 1.0)).astype(X.dtype))
                scores = scores.at[i].set(score)
                stale2 = jnp.where(score < best_score + tol, stale + 1, 0)
                improved = score > best_score
                best_score = jnp.where(improved, score, best_score)
                best = like(best, (jnp.where(improved, a, b) for a, b in zip(p2, best)))
            else:
                stale2 = jnp.where(loss > best_loss - tol, stale + 1, 0)
            stale = jnp.where(finite, stale2, stale)
            best_loss = jnp.where(finite, jnp.minimum(best_loss, loss), best_loss)
            stopped = finite & (stale > patience)
            rule = (stale, best_loss, best_score, best)
            return p2, s2, good, losses, scores, ran + 1, stopped, ~finite, rule

        done = carry[6] | carry[7]
        return lax.cond(done, lambda c: c, run, carry)

    start = (
        params,
        state,
        params,
        losses,
        scores,
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
        jnp.asarray(False),
        rule,
    )
    p, s, good, losses, scores, ran, stopped, _, rule = lax.fori_loop(0, count, body, start)
    return p, s, good, losses, scores, ran, stopped, rule


def _epoch(
    params: Any, state: Any, X: Any, y: Any, idx: Any, *, config: Config, opt: Any, with_loss: bool
) -> tuple[Any, Any, Any]:
    """One epoch of :class:`nnbin.loop.EpochSteps`, traced by jax.jit: X and y are
    arguments (never closed over), ``idx`` the epoch's order (None: the data's own)."""
    import jax.numpy as jnp
    from jax import lax

    kw: dict[str, Any] = {"activation": config.activation, "alpha": config.alpha}
    n = int(X.shape[0])
    if config.batch_size is None:
        loss, g = value_and_grads(params, X, y, with_loss=with_loss, **kw)
        params, state = opt.update(params, g, state)
        return params, state, loss
    Xs, ys = (X, y) if idx is None else (X[idx], y[idx])
    size = min(int(config.batch_size), n)
    full, tail = divmod(n, size)

    def batch(start: Any, rows: int, carry: Any) -> Any:
        p, s, total = carry
        xb = lax.dynamic_slice_in_dim(Xs, start, rows, axis=0)
        yb = lax.dynamic_slice_in_dim(ys, start, rows, axis=0)
        loss, g = value_and_grads(p, xb, yb, with_loss=with_loss, **kw)
        p, s = opt.update(p, g, s)
        if loss is not None:
            total = total + loss * float(rows)
        return p, s, total

    zero = jnp.zeros((), dtype=X.dtype)
    carry = lax.fori_loop(0, full, lambda i, c: batch(i * size, size, c), (params, state, zero))
    if tail:
        carry = batch(full * size, tail, carry)
    params, state, total = carry
    return params, state, (total / float(n) if with_loss else None)
