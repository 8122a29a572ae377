"""JAX: the core's steps compiled once (``lax.fori_loop``s under ``jax.jit``) and run in
the one loop (:mod:`nnbin.loop`): one compiled call a call of the loop, CPU or GPU.
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

from nnbin import lbfgs
from nnbin.backend import About, Backend, Runners, Tools
from nnbin.errors import BackendUnavailableError, InvalidInputError
from nnbin.loop import MAX_LOGS, Advanced, OnRun, Run, finite_prefix
from nnbin.model import ACTIVATION_FNS, Params, accuracy, like, value_and_grads
from nnbin.options import FUSED_ONLY, Config
from nnbin.rules import stop_update

from .cuda import dlpack

X64_HINT = (
    "float64 on JAX needs 64-bit mode: set JAX_ENABLE_X64=1 before starting Python, or call "
    "jax.config.update('jax_enable_x64', True) first (new JAX arrays in this process then "
    "default to 64-bit); otherwise JAX would silently compute in float32"
)


class JaxRunners(Runners):
    """The compiled runner (:class:`Compiled`), the full-batch evaluations compiled, the
    data-parallel placement, and cupy's fused step through DLPack (a CUDA GPU and cupy)."""

    be: JaxBackend

    def __init__(self, be: JaxBackend) -> None:
        super().__init__(be)
        gpu = bool(be.tools.gpu_devices())
        self.fused = dlpack.reach(be, be.xp.from_dlpack, _on_gpu, gpu)
        self.no_fused = dlpack.needs(be.name)

    def compiled(self, run: Run) -> Compiled:
        return Compiled(run)

    def distribute(
        self, params: Params, X: Any, y: Any, n_devices: int | None
    ) -> tuple[Params, Any, Any]:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        jax = self.be._jax
        devices = jax.devices()
        k = len(devices) if n_devices is None else n_devices
        if not 1 <= k <= len(devices):
            raise BackendUnavailableError(
                f"data-parallel training on {k} devices asked for, but JAX sees "
                f"{len(devices)} ({', '.join(map(str, devices))})"
            )
        if X.shape[0] % k:
            raise InvalidInputError(
                f"{X.shape[0]} samples do not split evenly over {k} devices: "
                f"use a sample count divisible by {k} or fewer devices"
            )
        mesh = Mesh(np.array(devices[:k]), ("batch",))
        rows = NamedSharding(mesh, PartitionSpec("batch", None))
        replicated = NamedSharding(mesh, PartitionSpec())
        put = jax.device_put
        return (like(params, (put(p, replicated) for p in params)), put(X, rows), put(y, rows))

    def loss(self, params: Any, X: Any, y: Any, alpha: Any, weights: Any, rows: Any) -> Any:
        """:meth:`nnbin.backend.Runners.loss` under ``jax.jit`` on the padded rows: a fold a
        few rows from the last compiles nothing (run eagerly, each new shape compiled each
        operation anew: 1.1 s a fit on 163 x 64 rows)."""

        def at(core: Any, p: Any, *data: Any) -> Any:
            return core(p, *data)[0]

        return self._full_batch("loss", at, X, y, alpha, weights, rows)(params)

    def evaluator(self, X: Any, y: Any, alpha: Any, weights: Any, rows: int | None) -> Any:
        """L-BFGS's evaluation (:func:`nnbin.lbfgs.evaluate`, the core's loss and gradient)
        under ``jax.jit``: X, y, the weights and the step its arguments, never closed over."""

        def at(core: Any, p: Any, d: Any, t: Any, *data: Any) -> Any:
            return lbfgs.evaluate(lambda q: core(q, *data), p, d, t)

        evaluate = self._full_batch("lbfgs", at, X, y, alpha, weights, rows)
        return lambda p, d, t: evaluate(p, d, self.be.xp.asarray(t, dtype=X.dtype))

    def _full_batch(
        self, name: str, at: Any, X: Any, y: Any, alpha: Any, w: Any, block_rows: int | None
    ) -> Any:
        """``at(core, *args, X, y, w, alpha)`` compiled once per network and options, with
        ``core(params, X, y, w, alpha)`` the core's :func:`~nnbin.model.value_and_grads`;
        returned with the data bound: (X, y, w) padded (:meth:`JaxBackend.padded`) and the L2
        penalty an argument (a grid over ``alpha`` compiles once; only whether there is one
        is traced in). The data are arguments, never closed over."""
        be = self.be
        penalised = bool(alpha)
        key = (name, penalised, block_rows)  # the activation: the parameters' type, traced
        if key not in be._evaluators:
            kw: dict[str, Any] = {"block_rows": block_rows}

            def core(q: Any, X: Any, y: Any, w: Any, alpha: Any) -> Any:
                a = alpha if penalised else 0.0
                return value_and_grads(q, X, y, weights=w, alpha=a, **kw)

            be._evaluators[key] = be._jax.jit(functools.partial(at, core))
        jitted = be._evaluators[key]
        X, y, w = be.padded(X, y, w)
        alpha = be.xp.asarray(alpha, dtype=X.dtype)
        return lambda *args: jitted(*args, X, y, w, alpha)


class JaxTools(Tools):
    be: JaxBackend

    def devices(self) -> list[str]:
        return [str(d) for d in self.be._jax.devices()]

    def enable_dtype(self, dtype: str) -> None:
        if dtype == "float64":
            self.be._jax.config.update("jax_enable_x64", True)

    def use_persistent_cache(self, folder: str) -> None:
        """Keep compiled runs in ``folder`` (JAX's persistent compilation cache), so a second
        ``nnbin train --backend jax`` of the same shapes compiles nothing. Process-wide, so
        the API never calls it; every compile is kept, however quick."""
        config = self.be._jax.config
        config.update("jax_compilation_cache_dir", folder)
        config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    def full_precision(self) -> None:
        """float64 available and float32 matmuls at full precision, process-wide."""
        self.be._jax.config.update("jax_enable_x64", True)
        self.be._jax.config.update("jax_default_matmul_precision", "highest")

    def out_of_memory(self, exc: BaseException) -> bool:
        """XLA reports an allocation failure as RESOURCE_EXHAUSTED (XlaRuntimeError)."""
        return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)

    def release_memory(self) -> None:
        """JAX frees device buffers when no array refers to them: collect the cycles."""
        import gc

        gc.collect()

    def gpu_devices(self) -> list[str]:
        return [str(d) for d in self.be._jax.devices() if d.platform == "gpu"]


class JaxBackend(Backend, runners=JaxRunners, tools=JaxTools):
    name = "jax"
    is_array = staticmethod(array_api_compat.is_jax_array)
    about = About(
        loop="jax.lax.fori_loop under jax.jit, in chunks", memory_nh=2.5, has_persistent_cache=True
    )
    default_dtype = "float32"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self._jax = jax
        self.xp = jnp  # array_api_compat.array_namespace returns jax.numpy itself
        self._compiled: dict[tuple[Any, ...], Any] = {}
        self._evaluators: dict[tuple[Any, ...], Any] = {}  # L-BFGS's, compiled

    def x64_enabled(self) -> bool:
        return bool(self._jax.config.read("jax_enable_x64"))

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        if dtype == "float64" and not self.x64_enabled():
            raise BackendUnavailableError(X64_HINT)
        return self._jax.device_put(np.asarray(a, dtype=dtype), device)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(self._jax.device_get(x))

    def synchronize(self, x: Any) -> None:
        self._jax.block_until_ready(x)

    def padded(self, X: Any, y: Any, w: Any, batch: int | None = None) -> tuple[Any, Any, Any]:
        """(X, y, w) padded with rows of weight 0 to :func:`bucket` rows, so that data sets a
        few rows apart (cross-validation's folds, a stream's batches) share one compiled run;
        w becomes the weights with 0 on the padding (1 on every sample when None). The
        weighted mean over a batch is then the mean over its samples: the padding changes
        no number."""
        xp, n = self.xp, int(X.shape[0])
        devices, sharding = X.devices(), X.sharding
        rows = bucket(n, batch, len(devices))
        weights = xp.ones((n, 1), dtype=X.dtype) if w is None else w
        if rows > n:
            X, y, weights = (
                xp.concatenate([a, xp.zeros((rows - n, *a.shape[1:]), dtype=a.dtype)])
                for a in (X, y, weights)
            )
        if len(devices) > 1:  # data-parallel: the rows split over the devices as X's were
            X, y, weights = (self._jax.device_put(a, sharding) for a in (X, y, weights))
        return X, y, weights


def _on_gpu(X: Any) -> bool:
    return [d.platform for d in X.devices()] == ["gpu"]


def bucket(n: int, batch: int | None = None, devices: int = 1) -> int:
    """The rows a run on ``n`` samples is padded to: ``n`` rounded up to a sixteenth of its
    power of two (at most about 6% more rows), to whole mini-batches of ``batch`` and to a
    multiple of the ``devices`` the rows are split over."""
    unit = max(1, 1 << max(n.bit_length() - 5, 0))
    if batch is not None:
        unit = batch * -(-unit // batch)
    unit = math.lcm(unit, devices)
    return unit * -(-n // unit)


class Compiled(OnRun):
    """The core's epochs compiled, a runner beside the loop: one call of :meth:`advance` is
    one call of one compiled function (:func:`_advance`: the epochs a ``lax.fori_loop``, each
    epoch's mini-batches another over ``lax.dynamic_slice``s, the losses recorded inside,
    the last finite parameters and the stopping rule (:func:`nnbin.rules.stop_update`, the
    same function the eager loop calls) in its carry). It compiles once a run: the counts,
    the sample count, the step size and the call's shuffled orders (drawn on the host by the
    run, as on every backend, in a fixed (rows, N) argument) are arguments; X and y too,
    never closed over (closed-over arrays become compile-time constants: a 2e7-sample
    compile took 31 s that way). The samples are padded to :func:`bucket` rows of weight 0
    (:meth:`JaxBackend.padded`), so runs a few samples apart (cross-validation folds) share
    one compiled function."""

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.be: JaxBackend = run.backend
        self.loop = JaxBackend.about.loop
        config, xp = run.config, self.be.xp
        run.X, run.y, run.w = self.be.padded(run.X, run.y, run.w, config.batch_size)
        if run.validation is not None:
            Xv, yv, run.wv = self.be.padded(*run.validation, run.wv)
            run.validation = (Xv, yv)
        self.be.tools.last_temp_bytes = None  # set again when this run compiles
        # the step size, the L2 penalty and the sample count arguments: one compile for every
        # lr, alpha and fold a few rows apart
        self.lr = xp.asarray(run.opt.lr, dtype=run.X.dtype)
        self.alpha = xp.asarray(config.alpha, dtype=run.X.dtype)
        self.m = xp.asarray(run.n, dtype=xp.int32)
        self.shuffles = config.batch_size is not None and config.shuffle
        if self.shuffles:
            # a call's shuffled orders in one (rows, N) int32 argument of a fixed number of
            # rows (a power of two, about 64 MiB at most), so the run compiles once
            self.rows = min(MAX_LOGS, 1 << max((1 << 24) // max(run.n, 1), 1).bit_length() - 1)
            self.max_steps_per_call = self.rows
        if not config.plain_descent:
            rule = ", the stopping rule inside" if run.rule else ""
            how = run.loop.partition("step")[2]
            self.loop = f"jax.jit, one compiled call a chunk of epochs{rule}{how}"

    def set_lr(self, lr: float) -> None:
        super().set_lr(lr)
        self.lr = self.be.xp.asarray(lr, dtype=self.run.X.dtype)  # an argument: no new compile

    def _orders(self, n: int) -> Any:
        """The next ``n`` epochs' shuffled orders as one (rows, padded N) int32 argument (the
        padding rows after the samples, in place)."""
        run = self.run
        host = np.zeros((self.rows, int(run.X.shape[0])), dtype=np.int32)
        host[:, run.n :] = np.arange(run.n, host.shape[1], dtype=np.int32)
        for e in range(n):
            order = run.order()
            assert order is not None  # shuffles is set
            host[e, : run.n] = order
        return self.be.xp.asarray(host)

    def _compile(self, args: tuple[Any, ...]) -> Any:
        run = self.run
        cfg, X, opt = run.config, run.X, run.opt
        perms, held = args[3], args[8]  # _advance's: the orders, the held-out (Xv, yv, wv)
        key = (
            X.shape,  # besides the settings: the shapes, dtype and sharding
            str(X.dtype),
            tuple(p.shape for p in run.params),
            type(run.params),  # the architecture: the activation
            str(X.sharding),
            # the seed is in the orders, the schedule's step size and the L2 penalty
            # arguments: not here (only whether there is a penalty)
            cfg.replace(seed=0, samples_seen=0, alpha=float(bool(cfg.alpha)), **FUSED_ONLY),
            opt.at(1.0),  # the step size is an argument
            # the functions traced: a patched update or derivative must compile anew
            type(opt).update,
            ACTIVATION_FNS[run.params.activation],
            perms is None,  # no shuffle
            held[0].shape,  # the validation rows
        )
        if key not in self.be._compiled:
            t0 = time.perf_counter()
            fn = functools.partial(_advance, config=cfg, opt=opt)
            compiled = self.be._jax.jit(fn).lower(*args).compile()
            self.compile_seconds += time.perf_counter() - t0
            try:  # XLA's temporary buffers, for the benchmark (12 ms a call: once a compile)
                temp: int | None = int(compiled.memory_analysis().temp_size_in_bytes)
            except Exception:  # not every platform reports it
                temp = None
            self.be._compiled[key] = (compiled, temp)
        compiled, self.be.tools.last_temp_bytes = self.be._compiled[key]
        return compiled

    def advance(self, n: int, every: int) -> Advanced:
        run, xp = self.run, self.be.xp
        rule = run.rule
        rule_in = None if rule is None else rule.carry(xp, run.X.dtype, run.params)
        Xv, yv = run.validation if run.validation is not None else (run.X, run.y)
        perms = self._orders(n) if self.shuffles else None
        counts = (xp.asarray(n, dtype=xp.int32), xp.asarray(every, dtype=xp.int32))
        wv = run.wv if run.validation is not None else run.w
        data, held = (run.X, run.y, run.w, self.m), (Xv, yv, wv)
        args = (run.params, run.state, data, perms, self.lr, self.alpha, *counts, held, rule_in)
        params, state, good, losses, scores, ran, stopped, rule_out = self._compile(args)(*args)
        ran = int(ran)  # waits for the call: its one wait
        values = [float(v) for v in np.asarray(losses)[:ran]]
        self.be._jax.block_until_ready(params)
        run.params, run.state = params, state
        if rule is not None:
            rule.take(rule_out, [float(v) for v in np.asarray(scores)[:ran]])
        ok = finite_prefix(values)
        return Advanced(values, good if ok else None, bool(stopped))


def _advance(
    params: Any,
    state: Any,
    data: tuple[Any, Any, Any, Any],
    perms: Any,
    lr: Any,
    alpha: Any,
    n: Any,
    every: Any,
    held: tuple[Any, Any, Any],
    rule: tuple[Any, Any, Any, Any] | None,
    *,
    config: Config,
    opt: Any,
) -> tuple[Any, ...]:
    """:meth:`nnbin.loop.Runner.advance` traced: ``n`` steps (epochs, with mini-batches),
    epoch e in the order ``perms[e]`` (None: the data's own); with ``every`` > 0 the first
    and every ``every``-th after it logged (at most MAX_LOGS), each segment's plain steps
    after its logged one. With the stopping ``rule`` ((count, best loss, best score, best
    parameters) before the call; ``every`` is then 1) each epoch is read by
    :func:`nnbin.rules.stop_update` (on the held-out (Xv, yv) accuracy with early stopping),
    and once it says stop, or a loss is not finite, the remaining epochs do nothing.
    Returns the parameters, the optimizer state, the parameters before the last finite
    logged step (with only finite ones before it), the losses and scores, how many logged
    steps ran, whether the rule stopped, and the rule's new state. ``data`` is (X, y, w, m),
    ``held`` (Xv, yv, wv): w and wv the sample weights, (N, 1) columns, 0 on the padding
    rows after the ``m`` samples of X (:meth:`JaxBackend.padded`); ``lr`` and ``alpha``, the
    step size and the L2 penalty, 0-d arrays (``config.alpha`` says only whether there is a
    penalty)."""
    import jax.numpy as jnp
    from jax import lax

    opt = opt.at(lr)  # the traced step size, and the traced L2 penalty:
    config = config.replace(alpha=alpha if config.alpha else 0.0)
    early, tol = config.early_stopping, config.tol
    X, Xv, yv, wv = data[0], *held
    losses = jnp.full((MAX_LOGS,), jnp.nan, dtype=X.dtype)
    scores = jnp.full((MAX_LOGS,), jnp.nan, dtype=X.dtype)

    def where(c: Any, a: Any, b: Any) -> Any:
        return like(a, (jnp.where(c, u, v) for u, v in zip(a, b)))

    def epoch(e: Any, p: Any, s: Any, with_loss: bool) -> tuple[Any, Any, Any]:
        idx = None if perms is None else perms[e]
        return _epoch(p, s, data, idx, config=config, opt=opt, with_loss=with_loss)

    def plain(e: Any, carry: tuple[Any, Any]) -> tuple[Any, Any]:
        p, s, _ = epoch(e, *carry, False)
        return p, s

    def segment(i: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        p, s, good, alive, losses, scores, ran, stopped, rule = carry
        first = i * every
        p2, s2, loss = epoch(first, p, s, True)
        finite = jnp.isfinite(loss)
        alive = alive & finite
        good = where(alive, p, good)
        losses = losses.at[i].set(loss)
        if rule is None:
            p2, s2 = lax.fori_loop(first + 1, jnp.minimum(first + every, n), plain, (p2, s2))
        else:
            count, best_loss, best_score, best = rule
            score: Any = -jnp.inf
            if early:
                score = accuracy(p2, Xv, yv, None, wv)
                scores = scores.at[i].set(score)
            count2, best_loss2, best_score2, improved, stop = stop_update(
                jnp, count, best_loss, best_score, loss, score,
                early=early, tol=tol, patience=config.patience,
            )  # fmt: skip
            if early:
                best = where(finite & improved, p2, best)
            rule = (
                jnp.where(finite, count2, count),
                jnp.where(finite, best_loss2, best_loss),
                jnp.where(finite, best_score2, best_score),
                best,
            )
            stopped = finite & stop
        return p2, s2, good, alive, losses, scores, ran + 1, stopped, rule

    def body(i: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        if rule is None:
            return segment(i, carry)
        done = carry[7] | ~carry[3]  # the rule stopped, or a loss was not finite
        return lax.cond(done, lambda c: c, lambda c: segment(i, c), carry)

    lead = jnp.where(every == 0, n, 0)
    count = jnp.where(every == 0, 0, (n + every - 1) // jnp.maximum(every, 1))
    p, s = lax.fori_loop(0, lead, plain, (params, state))
    start: tuple[Any, ...] = (p, s, p, jnp.asarray(True), losses, scores)
    start += (jnp.asarray(0, jnp.int32), jnp.asarray(False), rule)
    p, s, good, _, losses, scores, ran, stopped, rule = lax.fori_loop(0, count, body, start)
    return p, s, good, losses, scores, ran, stopped, rule


def _epoch(
    params: Any, state: Any, data: Any, idx: Any, *, config: Config, opt: Any, with_loss: bool
) -> tuple[Any, Any, Any]:
    """One step (an epoch, with mini-batches) as :func:`nnbin.loop.epoch` takes it, written
    again to be traced (a ``fori_loop`` over the batches, the last one under ``lax.cond``):
    ``data`` = (X, y, w, m), arguments (never closed over), X and y padded after their ``m``
    samples (a traced count) to whole batches of rows whose weights ``w`` are 0; ``idx`` the
    epoch's order (None: the data's own). The batches are the core's: ``m // size`` full
    ones and, where ``m % size`` samples are left, a last one of those (its padding weighs
    nothing)."""
    import jax.numpy as jnp
    from jax import lax

    X, y, w, m = data
    kw: dict[str, Any] = {"alpha": config.alpha}
    if config.batch_size is None:
        loss, g = value_and_grads(params, X, y, with_loss=with_loss, weights=w, **kw)
        params, state = opt.update(params, g, state)
        return params, state, loss
    Xs, ys, ws = (X, y, w) if idx is None else (X[idx], y[idx], w[idx])
    size = min(int(config.batch_size), int(X.shape[0]))  # the padded rows: whole batches
    full, tail = m // size, m % size

    def batch(i: Any, carry: Any) -> Any:
        p, s, total = carry
        start = i * size
        xb = lax.dynamic_slice_in_dim(Xs, start, size, axis=0)
        yb = lax.dynamic_slice_in_dim(ys, start, size, axis=0)
        wb = lax.dynamic_slice_in_dim(ws, start, size, axis=0)
        loss, g = value_and_grads(p, xb, yb, with_loss=with_loss, weights=wb, **kw)
        p, s = opt.update(p, g, s)
        if loss is not None:  # the epoch's loss: each batch's mean by its sample count
            total = total + loss * jnp.minimum(m - start, size).astype(X.dtype)
        return p, s, total

    zero = jnp.zeros((), dtype=X.dtype)
    carry = lax.fori_loop(0, full, batch, (params, state, zero))
    carry = lax.cond(tail > 0, lambda c: batch(full, c), lambda c: c, carry)
    params, state, total = carry
    return params, state, (total / m.astype(X.dtype) if with_loss else None)
