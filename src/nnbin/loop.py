"""The training loop, one for every backend: read it top to bottom.

    run(backend, params, X, y, ...)       the one place that decides what advances the
                                          run: the fused step, L-BFGS, CUDA graphs, a
                                          compiled runner, or the eager core (a Run)
    drive(runner, ...)                    the loop: calls of k epochs, each followed by
                                          its bookkeeping (history, on_log, the finite
                                          check and divergence error, the schedule's
                                          step size, the end the stopping rule called)
      segments(n, every, logged, plain,   the eager core's call: a logged epoch, then
               current, read)             plain ones; the stopping rule reads each loss;
                                          the last finite parameters kept
        epoch(run, with_loss)             THE TRAINING STEP: the batches of one epoch,
                                          each a forward and hand-written backward pass
                                          (nnbin.model.value_and_grads) and an update
                                          (nnbin.optim)

A call's first epoch is logged when its index is a multiple of ``every`` (the loss taken
before that epoch's updates), and so is every ``every``-th after it. The epochs a call
holds are ``steps_per_call`` (as Keras's ``steps_per_execution``) or, by default, sized from
the time the calls before took: a power of two that fits about ``CALL_SECONDS``, so Ctrl-C
stops any backend within about that long and a compiled backend sees few call lengths. With
a stopping rule every epoch is logged and the rule reads it.

A **runner** is a plug-in beside the loop that advances a call of epochs its own way, under
one contract (:class:`Runner`: ``advance(n, every)``, ``set_lr``, ``result``, ``close``):
the CUDA-graph replay of :func:`epoch` itself (``backends/cuda/graphs.py``), JAX's compiled
chunk (``backends/jax.py``: its own traced copy of the epoch, a ``fori_loop`` over the
batches, on the same ``value_and_grads``, optimizer update and stopping rule) and L-BFGS
(:class:`LbfgsRunner`, one iteration an epoch). The fused CUDA step is a plug-in of its own
kind (``refusal``, ``run``, ``loss_and_grads``: ``backends/cuda/fused.py``, reached from
torch and jax through ``cuda/dlpack.py``) that runs a whole run, in this same loop
(``cuda/driver.py`` drives its steps with :func:`drive`). A backend supplies these through
its ``runners``; it never subclasses the loop. Everything else a backend does is binding its
array library (:mod:`nnbin.backend`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import lbfgs
from .errors import BackendUnavailableError, TrainingDivergedError
from .model import (
    Array,
    Params,
    accuracy,
    block_width,
    is_sparse,
    max_width,
    namespace,
    on_host,
    take_rows,
    value_and_grads,
)  # fmt: skip
from .optim import Optimizer
from .options import OPTIONS, SEED, Config
from .rules import Schedule, StopRule

#: seconds of work a call holds by default (Ctrl-C waits at most about this long, on_log too)
CALL_SECONDS = 0.25
#: the most logged epochs one call holds (a compiled call records them in a buffer this long)
MAX_LOGS = 256
#: "1": the CUDA-graph path is the default (``cuda_graphs=None``) wherever it applies (the
#: GPU check runs the conformance suite so); unset, the default runs the steps eagerly
GRAPHS_VAR = OPTIONS["cuda_graphs"].env or ""

OnLog = Callable[[int, float], None]


# --- the run: what advances it, decided once; the loop; the training step -------------


def run(
    be: Any,
    params: Params,
    X: Any,
    y: Any,
    *,
    lr: float,
    steps: int,
    log_every: int,
    on_log: OnLog | None = None,
    fused: bool | None = None,
    config: Config | None = None,
    validation: tuple[Any, Any] | None = None,
    state: Any = None,
    steps_per_call: int | None = None,
    weights: Any = None,
    validation_weights: Any = None,
) -> RunResult:
    """Run ``steps`` epochs on the backend ``be`` (data already placed there); the loss is
    recorded every ``log_every`` epochs (every epoch with a stopping rule). Here, once, the
    choice of what advances the run: the fused step where it applies (``fused``: None takes
    it where the fused plug-in's ``refusal`` lets it, True requires it, False never),
    L-BFGS, the CUDA-graph replay (``config.cuda_graphs``), the backend's compiled runner
    (JAX), or the eager core: the backend's :attr:`~nnbin.backend.Backend.runners`.
    ``config``: the options (default: the seed job's); ``validation``: the held-out (X, y)
    early stopping scores; ``state``: the optimizer state to continue from; ``weights``,
    ``validation_weights``: (N, 1) columns of sample weights (no fused step takes them).
    ``result.loop`` says which path ran, and why not the fused one where the backend has
    one."""
    config = config or Config()  # the defaults now (an environment variable may set one)
    schedule = Schedule.of(config, lr, int(X.shape[0]), fresh=state is None)
    plugins = be.runners
    # what the epochs run in (torch: autograd off; cupy: X's GPU current): the set-up and
    # each call of the loop, never the caller's on_log
    context = functools.partial(be.step_context, X)
    with context():
        why = None
        if fused is not False:
            why = plugins.no_fused
            if plugins.fused is not None:
                why = plugins.fused.refusal(params, X, config)
            if why is None and weights is not None:
                why = "it takes no sample weights"
    if fused is not False and why is None:  # the fused step runs the whole run its own way
        return plugins.fused.run(
            params,
            X,
            y,
            lr=lr,
            steps=steps,
            log_every=log_every,
            on_log=on_log,
            config=config,
        )
    with context():
        if fused:
            raise BackendUnavailableError(
                f"no fused step for this run: {why}; fused=None (the default) runs "
                f"{be.name}'s own path (the array-API core) instead"
            )
        # host data in blocks where the backend says; a device's whole (torch's CUDA tensors)
        rows = be.block_rows(X.shape[0], block_width(max_width(params), X)) if on_host(X) else None
        if config.optimizer == "lbfgs":  # full batch: early stopping does not apply
            minimiser = lbfgs.Lbfgs(
                params,
                plugins.evaluator(X, y, config.alpha, weights, rows),
                read=lambda scalars: [float(v) for v in be.to_host(scalars)],
                settle=be.settle,
                tol=config.tol,
                max_fun=config.max_fun,
            )
            runner: Runner = LbfgsRunner(minimiser)
        else:
            if config.batch_size is not None and not is_sparse(X):
                rows = None  # a mini-batch is its own block (sparse: densified a block at a time)
            core = Run(
                params, X, y, lr, config, block_rows=rows, validation=validation, backend=be,
                state=state, weights=weights, validation_weights=validation_weights,
            )  # fmt: skip
            graphs, factory = config.cuda_graphs, plugins.graphs(X)
            refusal = factory if isinstance(factory, str) else None
            if graphs is None:  # eager, unless NNBIN_CORE_GRAPHS=1 where the graphs apply
                graphs = os.environ.get(GRAPHS_VAR, "").strip() == "1" and refusal is None
                if not graphs and refusal is None:
                    core.loop = (core.loop or plugins.core_loop) + (
                        "; CUDA graphs of it off until verified on a GPU (cuda_graphs=True)"
                    )
            if graphs and refusal is not None:
                raise BackendUnavailableError(
                    f"no CUDA graphs for this run: {refusal}; leave cuda_graphs unset to "
                    f"run {be.name}'s steps eagerly"
                )
            runner = factory(core) if graphs else plugins.compiled(core) or core
    result = drive(
        runner, lr=lr, steps=steps, log_every=log_every, on_log=on_log, initial=params,
        steps_per_call=steps_per_call, schedule=schedule, context=context,
    )  # fmt: skip
    if plugins.fused is not None:  # which of its paths ran, and why not the fused one
        result.loop = (result.loop or plugins.core_loop) + (
            f"; no fused step: {why}" if why else ""
        )
    return result


def drive(
    runner: Runner, *, lr: float, steps: int, log_every: int, on_log: OnLog | None = None,
    initial: Params | None = None, steps_per_call: int | None = None,
    schedule: Schedule | None = None, context: Callable[[], Any] | None = None,
) -> RunResult:  # fmt: skip
    """The loop: ``steps`` epochs of ``runner`` in calls, each followed by its bookkeeping.
    The eager core (a plain :class:`Run`) is driven here directly: each call is
    :func:`segments` of :func:`epoch`, the training step.

    ``initial``: the caller's starting parameters (for the divergence error when no loss
    was finite; default: ``runner.params`` at the start). ``steps_per_call``: the epochs a
    call holds (default: sized by ``CALL_SECONDS``, read at each call). ``schedule``: a
    step-size schedule (one epoch a call, its step size set before each; the adaptive one
    lowers it where the stopping rule would end the run). ``context``: what each call runs
    in (the backend's ``step_context``); ``on_log`` runs outside it.
    """
    rule = runner.rule
    every = 1 if rule is not None else log_every  # the rule reads every epoch
    initial = runner.params if initial is None else initial
    history: list[tuple[int, float]] = []
    last_finite: tuple[int, Params] | None = None
    s, k = 0, steps_per_call or 1
    within = context or contextlib.nullcontext
    # the eager core's call is its segments, made here without Run.advance's frame (a Run
    # subclass, which may advance its own way, is called as any runner)
    core_call = runner.segments_of_epochs() if type(runner) is Run else None
    # errstate: see nnbin.model.sigmoid
    with np.errstate(over="ignore"):
        try:
            while s < steps:
                if runner.max_steps_per_call is not None:
                    k = min(k, runner.max_steps_per_call)
                if schedule is not None:  # the step size changes between epochs
                    k = 1
                    runner.set_lr(schedule.rate(s))
                n, logs = next_call(s, steps, every, k)
                t0, compiling = time.perf_counter(), runner.compile_seconds
                with within():
                    if core_call is not None:
                        out = segments(n, logs, *core_call)
                    else:
                        out = runner.advance(n, logs)
                spent = time.perf_counter() - t0 - (runner.compile_seconds - compiling)
                ok = finite_prefix(out.losses)
                for i, value in enumerate(out.losses[:ok]):
                    history.append((s + i * logs, value))
                    if on_log is not None:
                        on_log(s + i * logs, value)
                if ok and out.good is not None:
                    last_finite = (s + (ok - 1) * logs, out.good)
                if ok < len(out.losses):
                    own = isinstance(runner, LbfgsRunner)
                    raise diverged(s + ok * logs, lr, last_finite, initial, own)
                if out.stopped:  # the rule ended the run after its last loss (one epoch a log)
                    s += len(out.losses) if out.ran is None else out.ran
                    if schedule is None or schedule.fired(rule):
                        break
                    continue
                s += n
                if steps_per_call is None:  # a power of two that fits CALL_SECONDS
                    fits = int(CALL_SECONDS / max(spent / n, 1e-9))
                    k = 1 << max(fits, 1).bit_length() - 1
            with within():
                params = runner.result()
        finally:
            with within():
                runner.close()
    return RunResult(
        params,
        history,
        runner.compile_seconds,
        last_finite=last_finite,
        loop=runner.loop,
        steps_run=s,
        stop=rule,
        optimizer_state=runner.state,
        lr_final=lr if schedule is None else schedule.rate(s),
        message=runner.message,
    )


def segments(
    n: int,
    every: int,
    logged: Callable[[], Array],
    plain: Callable[[int], None],
    current: Callable[[], Params],
    read: Callable[[float, Params], bool] | None = None,
) -> Advanced:
    """One call of epochs run one at a time: segments of a logged epoch (``logged()``, its
    loss) then plain ones (``plain(k)``), and the bookkeeping of the last finite parameters;
    ``current()`` gives the parameters before a logged epoch (a copy where the runner reuses
    its buffers). With ``read`` (a stopping rule: True ends the run) each finite loss is
    read as it comes, with the parameters after it, else every loss once at the end."""
    if every <= 0:
        plain(n)
        return Advanced([])
    losses: list[Any] = []
    before: list[Params] = []
    stopped = False
    for start in range(0, n, every):
        before.append(current())
        losses.append(logged())
        if read is not None:
            losses[-1] = float(losses[-1])
            if not math.isfinite(losses[-1]):
                break
            if read(losses[-1], current()):
                stopped = True
                break
        plain(min(every, n - start) - 1)
    values = [float(v) for v in losses]  # the call's one wait (without a rule)
    ok = finite_prefix(values)
    return Advanced(values, before[ok - 1] if ok else None, stopped)


def epoch(run: Run, with_loss: bool, order: Any = None) -> Array | None:
    """The training step: one epoch of ``run`` (one update, full batch), in ``order``
    (default: the run's draw; host row numbers, or an index array on X's device, as a graph
    replay reads them). Each batch: the loss and gradients of the forward and hand-written
    backward pass, then the optimizer's update. Returns the epoch's loss when asked
    (scikit-learn's: the mean of the batches' losses, each taken before its update)."""
    cfg = run.config
    kw: dict[str, Any] = {"block_rows": run.block_rows, "alpha": cfg.alpha, "xp": run.core_xp}
    if cfg.batch_size is None:
        loss, grads = value_and_grads(
            run.params, run.X, run.y, with_loss=with_loss, weights=run.w, **kw
        )
        run.params, run.state = run.opt.update(run.params, grads, run.state)
        return run.settle(loss)
    order = run.order() if order is None else order
    Xs, ys, ws = (run.X, run.y, run.w) if order is None else run.shuffled(order)
    n, size = run.n, int(cfg.batch_size or run.n)
    total: Array | None = None
    for a in range(0, n, size):
        b = min(a + size, n)
        loss, grads = value_and_grads(
            run.params, Xs[a:b, ...], ys[a:b, ...], with_loss=with_loss,
            weights=None if ws is None else ws[a:b, ...], **kw,
        )  # fmt: skip
        run.params, run.state = run.opt.update(run.params, grads, run.state)
        if loss is not None:
            part = loss * float(b - a)
            total = part if total is None else total + part
        total = run.settle(total)
    return None if total is None else total / float(n)


def epochs(run: Run, k: int) -> None:
    """``k`` epochs of ``run``, no loss asked for."""
    for _ in range(k):
        epoch(run, False)


# --- a run's state, and the runners beside the loop ---------------------------------------


class Runner:
    """What the loop reads of whatever advances a run (the plug-in contract)."""

    params: Params
    #: the optimizer's state (none for plain gradient descent)
    state: Any = ()
    #: scikit-learn's stopping rule, when the run has one
    rule: StopRule | None = None
    #: how the epochs run (shown in results); seconds spent compiling (0 for eager runs)
    loop: str = ""
    compile_seconds: float = 0.0
    #: the most epochs one call may hold (None: the time budget alone)
    max_steps_per_call: int | None = None
    #: how the optimizer ended the run, where it has its own rule (L-BFGS: scipy's words)
    message: str = ""

    def advance(self, n: int, every: int) -> Advanced:
        """``n`` epochs; with ``every`` > 0 the first logged and every ``every``-th after
        it. Blocks until the work is done where the library can say (so the time a call
        took is honest)."""
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """The step size of the epochs from the next call on (a :class:`Schedule`'s)."""
        raise NotImplementedError

    def result(self) -> Params:
        """The parameters to hand back (early stopping: the best-scoring ones)."""
        if self.rule is not None and self.rule.best_params is not None:
            return self.rule.best_params
        return self.params

    def close(self) -> None:
        """The run is over (as it ended: returned or raised): release what it held."""


class Run(Runner):
    """One run's state on the array-API core: the parameters, the optimizer and its state,
    the data, the stopping rule, the shuffle. :func:`epoch` advances it; a plug-in runner
    wraps it (:class:`OnRun`). A step is one full-batch update (the seed job's gradient
    descent) or, with mini-batches, one **epoch**: the samples in batches of
    ``config.batch_size`` from a shuffle drawn on the host with
    ``numpy.random.default_rng([seed, 1])`` (the same batches on every backend).

    The gradient pass goes through the samples ``block_rows`` at a time (None: all at once).
    ``validation``: the held-out (X, y) that early stopping scores. ``backend``: the binding
    (its ``settle``, ``take_rows``; None: as they are). ``state``: the optimizer state to
    continue from. ``weights``, ``validation_weights``: (N, 1) columns of sample weights
    (None: every sample 1), as scikit-learn's ``sample_weight``.
    """

    #: the namespace the gradients are computed in (None: the arrays' own; cupy's CUDA-graph
    #: runner sets one whose matrix products a capture allows)
    core_xp: Any = None

    def __init__(
        self,
        params: Params,
        X: Array,
        y: Array,
        lr: float,
        config: Config = SEED,
        *,
        block_rows: int | None = None,
        validation: tuple[Array, Array] | None = None,
        backend: Any = None,
        state: Any = None,
        weights: Array | None = None,
        validation_weights: Array | None = None,
    ) -> None:
        self.backend = backend
        self.X, self.y, self.config = X, y, config
        (self.params,) = self._settle((params,))
        self.w, self.wv = weights, validation_weights
        self.block_rows = block_rows
        self.opt = Optimizer.of(config, lr)
        self.state = self.opt.init(params) if state is None else state
        self.n = int(X.shape[0])
        self.rng = np.random.default_rng([config.seed, 1]) if config.batch_size else None
        self.xp = namespace(y)  # X's library (a SciPy sparse X: NumPy's)
        self.validation = validation
        if config.early_stopping and validation is None:
            raise ValueError("early stopping needs held-out samples (validation=)")
        self.rule = StopRule.of(config)
        if not config.plain_descent:
            order = "shuffled each epoch" if config.shuffle else "in the data's order"
            size = config.batch_size
            batches = "full batch" if size is None else f"mini-batches of {size}, {order}"
            self.loop = f"python loop, one epoch a step ({batches}; {config.optimizer})"

    def order(self) -> np.ndarray | None:
        """This epoch's order of the samples on the host (None: one batch of every sample
        in the data's order: full batch, or mini-batches with ``shuffle`` off)."""
        if self.rng is None or not self.config.shuffle:
            return None
        return self.rng.permutation(self.n)

    def shuffled(self, order: Any) -> tuple[Array, Array, Array | None]:
        """X, y and the weights in this epoch's order (row numbers on the host, or an index
        array on X's device)."""
        take = take_rows if self.backend is None else self.backend.take_rows
        w = None if self.w is None else take(self.w, order)
        Xs, ys, ws = self._settle((take(self.X, order), take(self.y, order), w))
        return Xs, ys, ws

    def settle(self, total: Array | None) -> Array | None:
        """After each update: the parameters, the state and the running loss ``total`` made
        concrete where the library is lazy (the backend's ``settle``: Dask persists them,
        so the graph never grows); returns ``total``."""
        self.params, self.state, total = self._settle((self.params, self.state, total))
        return total

    def _settle(self, tree: tuple[Any, ...]) -> tuple[Any, ...]:
        return tree if self.backend is None else self.backend.settle(tree)

    def score(self) -> float:
        """Accuracy of the current parameters on the held-out samples (weighted by their
        sample weights, as scikit-learn's score)."""
        assert self.validation is not None
        Xv, yv = self.validation
        return float(accuracy(self.params, Xv, yv, None, self.wv, self.block_rows))

    def snapshot(self) -> Params:
        """The current parameters as a caller may keep them."""
        return self.params

    def read(self, loss: float, current: Params | None = None) -> bool:
        """The stopping rule's reading of one epoch (``current``: the parameters after it,
        as a caller may keep them); True ends the run."""
        assert self.rule is not None
        score = self.score() if self.config.early_stopping else None
        return self.rule.update(loss, score, self.params if current is None else current)

    def set_lr(self, lr: float) -> None:
        self.opt = self.opt.at(lr)

    def advance(self, n: int, every: int) -> Advanced:
        """A call of the eager core: :func:`segments` of :func:`epoch`."""
        return segments(n, every, *self.segments_of_epochs())

    def segments_of_epochs(self) -> tuple[Any, Any, Any, Any]:
        """What :func:`segments` takes to run this run's epochs: a logged epoch, ``k`` plain
        ones, the current parameters and the stopping rule's reading (None: no rule);
        partials of :func:`epoch`, so a call adds no frame."""
        read = None if self.rule is None else self.read
        logged, plain = functools.partial(epoch, self, True), functools.partial(epochs, self)
        return logged, plain, self.snapshot, read


class OnRun(Runner):
    """A plug-in runner that advances a :class:`Run` its own way (compiled, replayed): the
    parameters, state and rule are the run's."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.loop = run.loop

    params = property(lambda self: self.run.params)
    state = property(lambda self: self.run.state)
    rule = property(lambda self: self.run.rule)

    def set_lr(self, lr: float) -> None:
        self.run.set_lr(lr)


class LbfgsRunner(Runner):
    """L-BFGS (:class:`nnbin.lbfgs.Lbfgs`) in the one loop: an epoch is one iteration, the
    loss logged for an epoch the loss before its update, as for every optimizer; the
    minimiser's own rule ends the run (``Advanced.ran``, ``message``). As scikit-learn's,
    a continued run starts with no curvature pairs: no optimizer state."""

    loop = "python loop, one L-BFGS iteration a step (full batch; strong Wolfe line search)"

    def __init__(self, minimiser: lbfgs.Lbfgs) -> None:
        self.minimiser, self.state = minimiser, ()
        self.params, self.message = minimiser.params, minimiser.message

    def advance(self, n: int, every: int) -> Advanced:
        m, losses, good = self.minimiser, list[float](), None
        ran = None
        for i in range(n):
            if every > 0 and i % every == 0:
                losses.append(m.f)  # the loss before this iteration's update
                good = m.params
            if m.message:  # converged where it starts: no iteration
                ran = i
                break
            m.message = m.iterate()
            if m.message:
                ran = i + 1
                break
        self.params, self.message = m.params, m.message
        return Advanced(losses, good, stopped=ran is not None, ran=ran)

    def set_lr(self, lr: float) -> None:
        raise TypeError("L-BFGS chooses its own step sizes: it has no schedule")


# --- what a call and a run return; the loop's helpers -------------------------------------


@dataclass
class Advanced:
    """What one call of :meth:`Runner.advance` did."""

    #: the logged losses, as Python floats (the call's one wait for the device)
    losses: list[float]
    #: the parameters before the last logged epoch that is finite with only finite ones
    #: before it (None: no such epoch in this call)
    good: Params | None = None
    #: the stopping rule ended the run at the last of ``losses``
    stopped: bool = False
    #: the epochs the call ran before it stopped (None: one a loss, as a rule reads them)
    ran: int | None = None


@dataclass
class RunResult:
    """What a run of many epochs returns."""

    params: Params
    #: (step, loss) pairs, the loss (a finite Python float) evaluated before that step's update
    history: list[tuple[int, float]]
    #: seconds spent compiling (0 for eager backends)
    compile_seconds: float = 0.0
    #: the last parameters whose loss was recorded and finite, and the step of that record
    last_finite: tuple[int, Params] | None = None
    #: how the epochs ran, when a backend has more than one way (else the backend's ``loop``)
    loop: str = ""
    #: the steps (epochs) run: fewer than asked when a stopping rule ended the run
    steps_run: int = 0
    #: what the stopping rule saw, when there is one
    stop: StopRule | None = None
    #: the optimizer's final state (momentum, Adam's moments), to continue a run from
    optimizer_state: Any = ()
    #: the step size the schedule ended at: what a continued run's next epoch would take
    lr_final: float | None = None
    #: how the optimizer ended the run, where it has its own rule (L-BFGS: scipy's words)
    message: str = ""


def diverged(
    step: int, lr: float, last_finite: tuple[int, Params] | None, initial: Params,
    own_steps: bool = False,
) -> TrainingDivergedError:  # fmt: skip
    """The error for a loss that stopped being finite at ``step``, with the advice that fits:
    at step 0 no update has run (the data, the weights or the starting parameters overflow,
    whatever the step size); an optimizer that chooses its own step sizes (``own_steps``:
    L-BFGS) takes no ``lr``."""
    good_step, good = last_finite if last_finite is not None else (0, initial)
    if step == 0:
        why = (
            "the loss of the starting parameters is not finite (step 0, before any update): "
            "the features, the sample weights or the starting parameters overflow the "
            "working dtype, whatever the step size; standardise X (or train in float64)"
        )
    elif own_steps:
        why = (
            f"the loss is not finite at step {step}; L-BFGS chooses its own step sizes: "
            "standardise X, or add an L2 penalty (alpha)"
        )
    else:
        why = f"the loss is not finite at step {step} with lr={lr:g}; try a smaller learning rate"
    return TrainingDivergedError(
        f"training diverged: {why} (the last finite parameters, from step {good_step}, are "
        "on this exception's .params)",
        step=step,
        lr=lr,
        params=good,
        last_finite_step=good_step,
    )


def finite_prefix(values: Sequence[float]) -> int:
    """How many of ``values`` are finite before the first one that is not."""
    return next((k for k, v in enumerate(values) if not math.isfinite(v)), len(values))


def next_call(s: int, steps: int, every: int, k: int) -> tuple[int, int]:
    """(n, every) of the call from step ``s``: at most ``k`` steps and ``MAX_LOGS`` logs;
    plain steps up to the next logged step when ``s`` is not one; from a logged step, whole
    segments of ``every`` steps (the run's last one may be short), or the logged step and
    ``k - 1`` plain ones when a segment is longer than ``k``."""
    left = steps - s
    if every <= 0:
        return min(k, left), 0
    if s % every:
        return min(k, every - s % every, left), 0
    whole = min(max(k // every, 1), MAX_LOGS) * every
    return min(whole if k >= every else k, left), every
