"""One run of many training steps, the same on every backend: the schedule and the
bookkeeping live here, once; a backend supplies only how to advance its parameters.

The schedule. A run of ``steps`` steps with a loss record every ``log_every`` steps
(0: none) is a sequence of **chunks**; a chunk is ``lead`` plain steps, then ``count``
segments of ``seg`` steps, each segment starting with its **logged step** (the loss is
computed before that step's update). :func:`plan` sizes each chunk so that it holds about
``CHUNK_SECONDS`` of work (from the time per step measured on the chunks before; rounded
down to a power of two), at most
``CHUNK_LOGS`` logged steps, and never crosses a logged step it cannot finish. Between
chunks Python runs: Ctrl-C stops any backend within about a chunk, and the losses reach
``on_log`` as they come. A compiled backend (JAX) runs a whole chunk as one call of one
compiled function; no chunk size compiles anew.

The bookkeeping (:class:`Recorder`): the history of (step, loss), ``on_log``, the finite
check, the last finite parameters and the divergence error, for every backend alike.

What a backend supplies is a :class:`Steps`: ``plain(k)`` (k steps, no loss) and
``logged()`` (one step that also returns its loss as an array, not yet on the host), or a
whole ``chunk(lead, count, seg)`` where it can run many segments in one call.

This module imports the math and the errors, never the backend registry or training.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backprop import apply_update, value_and_grads
from .config import SEED, Config
from .errors import TrainingDivergedError
from .model import Array, Params, forward, namespace

#: seconds of work per chunk (Ctrl-C waits at most about this long, on_log too)
CHUNK_SECONDS = 0.25
#: the most logged steps one chunk holds
CHUNK_LOGS = 256

OnLog = Callable[[int, float], None]


@dataclass
class RunResult:
    """What a backend's run of many steps returns."""

    params: Params
    #: (step, loss) pairs, the loss (a finite Python float) evaluated before that step's update
    history: list[tuple[int, float]]
    #: seconds spent compiling (0 for eager backends)
    compile_seconds: float = 0.0
    #: the last parameters whose loss was recorded and finite, and the step of that record
    last_finite: tuple[int, Params] | None = None
    #: how the steps ran, when a backend has more than one way (else the backend's ``loop``)
    loop: str = ""
    #: the steps (epochs) run: fewer than asked when a stopping rule ended the run
    steps_run: int = 0
    #: what the stopping rule saw (see :class:`StopRule`), when there is one
    stop: StopRule | None = None
    #: the optimizer's final state (momentum, Adam's moments), to continue a run from
    optimizer_state: Any = ()


def diverged(
    step: int, lr: float, last_finite: tuple[int, Params] | None, initial: Params
) -> TrainingDivergedError:
    """The error for a loss that stopped being finite at ``step``."""
    good_step, good = last_finite if last_finite is not None else (0, initial)
    return TrainingDivergedError(
        f"training diverged: the loss is not finite at step {step} with lr={lr:g}; try a "
        f"smaller learning rate (the last finite parameters, from step {good_step}, are on "
        "this exception's .params)",
        step=step,
        lr=lr,
        params=good,
        last_finite_step=good_step,
    )


def finite_prefix(values: Sequence[float]) -> int:
    """How many of ``values`` are finite before the first one that is not."""
    for k, v in enumerate(values):
        if not math.isfinite(v):
            return k
    return len(values)


class Recorder:
    """The loop bookkeeping, written once: history, ``on_log``, the finite check, the last
    finite parameters, and the divergence error (raised at the first non-finite loss)."""

    def __init__(self, lr: float, initial: Params, on_log: OnLog | None = None) -> None:
        self.lr = lr
        self.initial = initial
        self.on_log = on_log
        self.history: list[tuple[int, float]] = []
        self.last_finite: tuple[int, Params] | None = None

    def record(self, first: int, seg: int, losses: Sequence[float], good: Params | None) -> None:
        """The losses of one chunk's logged steps (at ``first``, ``first + seg``, ...) and
        ``good``: the parameters before the last of them that is finite and follows only
        finite ones (None when there is none)."""
        ok = finite_prefix(losses)
        if ok and good is not None:
            self.last_finite = (first + (ok - 1) * seg, good)
        for k in range(ok):
            at, value = first + k * seg, float(losses[k])
            self.history.append((at, value))
            if self.on_log is not None:
                self.on_log(at, value)
        if ok < len(losses):
            raise diverged(first + ok * seg, self.lr, self.last_finite, self.initial)


class Steps:
    """How one backend advances the parameters of one run (the schedule and bookkeeping
    are :func:`run_steps`'). ``params`` are the current parameters.

    Eager backends implement ``plain`` and ``logged``; backends that can run many segments
    in one call (a compiled loop, a GPU driver) override ``chunk`` instead.
    """

    params: Params
    #: seconds spent compiling before or during the run (0 for eager backends)
    compile_seconds: float = 0.0
    #: after ``chunk``: the parameters before its last logged step that is finite and
    #: follows only finite ones (None when there is none)
    good: Params | None = None
    #: set when a stopping rule ended the run (the chunk's values end at that epoch)
    stopped: bool = False
    #: the stopping rule, when there is one
    stop: StopRule | None = None
    #: how the steps run, where it differs from the backend's ``loop`` (shown in results)
    loop: str = ""
    #: the optimizer's state (none for plain gradient descent)
    state: Any = ()
    #: the most steps one chunk may hold (None: no limit beyond the time budget)
    max_chunk: int | None = None
    #: a context every chunk runs in (PyTorch: ``torch.no_grad``, the backward pass is ours)
    guard: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext

    def plain(self, k: int) -> None:
        """Advance ``k`` steps without computing the loss."""
        raise NotImplementedError

    def logged(self) -> Array:
        """Advance one step and return its loss (before the update), not yet on the host."""
        raise NotImplementedError

    def to_host(self, losses: list[Array]) -> list[float]:
        """The logged losses as Python floats (the chunk's one wait for the device)."""
        return [float(v) for v in losses]

    def chunk(self, lead: int, count: int, seg: int) -> list[float]:
        """``lead`` plain steps, then ``count`` segments of ``seg`` steps, each beginning
        with a logged step; returns their losses and sets ``good``. Blocks until the work
        is done where the library can say (so the time per step the plan uses is honest)."""
        self.plain(lead)
        losses: list[Array] = []
        before: list[Params] = []
        for _ in range(count):
            before.append(self.params)
            losses.append(self.logged())
            self.plain(seg - 1)
        values = self.to_host(losses)
        ok = finite_prefix(values)
        self.good = before[ok - 1] if ok else None
        return values

    def result(self) -> Params:
        """The parameters to hand back at the end."""
        return self.params


def plan(
    s: int, steps: int, log_every: int, budget: int, max_logs: int = CHUNK_LOGS
) -> tuple[int, int, int]:
    """The next chunk from step ``s``, as (lead, count, seg), holding about ``budget`` steps.

    Whole segments (the last may be shorter) go together while they fit the budget; a
    segment longer than the budget is split: its logged step alone, then plain chunks.
    """
    if log_every > 0 and s % log_every == 0:  # a logged step starts here
        seg = min(log_every, steps - s)
        if seg > budget:  # a long segment: its logged step now, its plain steps after
            return 0, 1, 1
        whole = (steps - s) // log_every
        count = max(1, min(whole, max_logs, budget // log_every))
        if count * log_every > steps - s:  # only the short last segment is left
            count = 1
        return 0, count, seg
    stop = steps if log_every <= 0 else min(steps, s + log_every - s % log_every)
    return min(stop - s, budget), 0, 1


def run_steps(
    stepper: Steps,
    *,
    lr: float,
    steps: int,
    log_every: int,
    on_log: OnLog | None = None,
    initial: Params | None = None,
    seconds: float | None = None,
    max_logs: int = CHUNK_LOGS,
) -> RunResult:
    """Run ``steps`` steps of ``stepper`` on the shared schedule with the shared bookkeeping.

    ``initial``: the caller's starting parameters (for the divergence error when no loss
    was finite; default: ``stepper.params`` at the start). ``seconds``: the work a chunk
    holds (default: ``CHUNK_SECONDS``, read at each call).
    """
    seconds = CHUNK_SECONDS if seconds is None else seconds
    if stepper.stop is not None:
        log_every = 1  # the stopping rule reads every epoch's loss: each one is recorded
    rec = Recorder(lr, stepper.params if initial is None else initial, on_log)
    s, per_step = 0, None
    while s < steps:
        # a power of two: the few chunk lengths a GPU driver then sees keep its CUDA graphs
        # few (one per length), whatever the timings
        fits = 1 if per_step is None else int(seconds / max(per_step, 1e-9))
        budget = 1 << max(fits, 1).bit_length() - 1
        if stepper.max_chunk is not None:
            budget = min(budget, stepper.max_chunk)
        lead, count, seg = plan(s, steps, log_every, budget, max_logs)
        t0, compiling = time.perf_counter(), stepper.compile_seconds
        with stepper.guard():
            values = stepper.chunk(lead, count, seg)
        ran = lead + count * seg
        spent = time.perf_counter() - t0 - (stepper.compile_seconds - compiling)
        per_step = max(spent, 0.0) / ran
        rec.record(s + lead, seg, values, stepper.good)
        if stepper.stopped:  # a stopping rule ended the run after its last value
            s += lead + len(values) * seg
            break
        s += ran
    return RunResult(
        stepper.result(),
        rec.history,
        stepper.compile_seconds,
        last_finite=rec.last_finite,
        loop=stepper.loop,
        steps_run=s,
        stop=stepper.stop,
        optimizer_state=stepper.state,
    )


class CoreSteps(Steps):
    """The array-API core, one Python iteration a step (NumPy, array-api-strict, PyTorch,
    CuPy's core path). The gradient pass goes through the samples ``block_rows`` at a time
    (None: all at once). NumPy's overflow warning inside the sigmoid is off (see
    :func:`nnbin.model.sigmoid`)."""

    def __init__(
        self,
        params: Params,
        X: Array,
        y: Array,
        lr: float,
        block_rows: int | None = None,
        config: Config = SEED,
    ) -> None:
        self.params, self.X, self.y, self.lr, self.block_rows = params, X, y, lr, block_rows
        self.activation, self.alpha = config.activation, config.alpha

    def _grads(self, with_loss: bool) -> tuple[Array | None, Params]:
        return value_and_grads(
            self.params,
            self.X,
            self.y,
            with_loss=with_loss,
            block_rows=self.block_rows,
            activation=self.activation,
            alpha=self.alpha,
        )

    def plain(self, k: int) -> None:
        for _ in range(k):
            _, grads = self._grads(False)
            self.params = apply_update(self.params, grads, self.lr)

    def logged(self) -> Array:
        loss, grads = self._grads(True)
        self.params = apply_update(self.params, grads, self.lr)
        return loss

    def chunk(self, lead: int, count: int, seg: int) -> list[float]:
        with np.errstate(over="ignore"):
            return super().chunk(lead, count, seg)


class StopRule:
    """scikit-learn's stopping rule, read after every epoch.

    With ``early_stopping``: the accuracy on the held-out samples; an epoch whose score is
    below the best so far plus ``tol`` counts as no improvement, and the best-scoring
    parameters are kept (the run returns them). Otherwise: the training loss; an epoch
    whose loss is above the best so far minus ``tol`` counts as no improvement. The run
    stops once more than ``n_iter_no_change`` epochs in a row did not improve.
    """

    def __init__(self, config: Config) -> None:
        self.early, self.tol, self.patience = config.early_stopping, config.tol, config.patience
        self.count = 0
        self.best_loss = math.inf
        self.best_score = -math.inf
        self.scores: list[float] = []
        self.best_params: Params | None = None

    def update(self, loss: float, score: float | None, params: Params) -> bool:
        """Take one epoch's loss (and validation score); True when the run must stop."""
        if self.early:
            assert score is not None
            self.scores.append(score)
            self.count = self.count + 1 if score < self.best_score + self.tol else 0
            if score > self.best_score:
                self.best_score, self.best_params = score, params
        else:
            self.count = self.count + 1 if loss > self.best_loss - self.tol else 0
        self.best_loss = min(self.best_loss, loss)
        return self.count > self.patience


class EpochSteps(Steps):
    """The general loop: one step of the schedule is one **epoch**, the samples in
    mini-batches of ``config.batch_size`` from a shuffle drawn on the host with
    ``numpy.random.default_rng([shuffle_seed, 1])`` (the same batches on every backend),
    or one full batch; each batch is one update of ``config.optimizer``. A logged epoch's
    loss is scikit-learn's: the mean over the epoch of each batch's loss, taken before that
    batch's update. With a stopping rule every epoch is logged and the rule reads it.

    ``validation``: the held-out (X, y) that early stopping scores. ``indices(host)``
    turns a host array of row numbers into one the backend's ``take`` accepts.
    """

    def __init__(
        self,
        params: Params,
        X: Array,
        y: Array,
        lr: float,
        config: Config,
        *,
        block_rows: int | None = None,
        validation: tuple[Array, Array] | None = None,
        indices: Callable[[np.ndarray], Array] | None = None,
        state: Any = None,
    ) -> None:
        import dataclasses

        self.params, self.X, self.y, self.config = params, X, y, config
        self.block_rows = block_rows
        self.opt = dataclasses.replace(config.optimizer, lr=lr)
        #: the optimizer's state (continued from ``state`` when given: partial_fit)
        self.state = self.opt.init(params) if state is None else state
        self.n = int(X.shape[0])
        self.rng = (
            np.random.default_rng([config.shuffle_seed, 1])
            if config.batch_size is not None
            else None
        )
        self.xp = namespace(X, y)
        self.indices = indices or self._indices
        self.validation = validation
        if config.early_stopping and validation is None:
            raise ValueError("early stopping needs held-out samples (validation=)")
        self.stop = StopRule(config) if config.stops else None
        order = "shuffled each epoch" if config.shuffle else "in the data's order"
        batches = (
            "full batch"
            if config.batch_size is None
            else f"mini-batches of {config.batch_size}, {order}"
        )
        self.loop = f"python loop, one epoch a step ({batches}; {config.optimizer.name})"

    def _indices(self, host: np.ndarray) -> Array:
        import array_api_compat

        return self.xp.asarray(host, device=array_api_compat.device(self.X))

    def order(self) -> np.ndarray | None:
        """This epoch's order of the samples on the host (None: one batch of every sample
        in the data's order: full batch, or mini-batches with ``shuffle`` off)."""
        if self.rng is None or not self.config.shuffle:
            return None
        return self.rng.permutation(self.n)

    def epoch(self, with_loss: bool) -> Array | None:
        """One epoch; its loss (scikit-learn's mean of the batch losses) when asked."""
        cfg = self.config
        kw: dict[str, Any] = {
            "block_rows": self.block_rows,
            "activation": cfg.activation,
            "alpha": cfg.alpha,
        }
        if cfg.batch_size is None:
            loss, grads = value_and_grads(self.params, self.X, self.y, with_loss=with_loss, **kw)
            self.params, self.state = self.opt.update(self.params, grads, self.state)
            return self.settle(loss)
        order = self.order()
        Xs, ys = (self.X, self.y) if order is None else self.shuffled(self.indices(order))
        size = int(cfg.batch_size or self.n)
        total: Array | None = None
        for a in range(0, self.n, size):
            b = min(a + size, self.n)
            loss, grads = value_and_grads(
                self.params, Xs[a:b, ...], ys[a:b, ...], with_loss=with_loss, **kw
            )
            self.params, self.state = self.opt.update(self.params, grads, self.state)
            if loss is not None:
                part = loss * float(b - a)
                total = part if total is None else total + part
            total = self.settle(total)
        return None if total is None else total / float(self.n)

    def shuffled(self, idx: Array) -> tuple[Array, Array]:
        """X and y in this epoch's order."""
        return self.xp.take(self.X, idx, axis=0), self.xp.take(self.y, idx, axis=0)

    def settle(self, total: Array | None) -> Array | None:
        """After each update (Dask: persist the parameters, the state and the running loss,
        so the graph never grows); returns ``total``."""
        return total

    def score(self) -> float:
        """Accuracy of the current parameters on the held-out samples."""
        assert self.validation is not None
        Xv, yv = self.validation
        z = forward(self.params, Xv, self.config.activation)
        xp = self.xp
        return float(xp.mean(xp.astype((z >= 0.0) == (yv == 1.0), yv.dtype)))

    def plain(self, k: int) -> None:
        for _ in range(k):
            self.epoch(False)

    def logged(self) -> Array:
        loss = self.epoch(True)
        assert loss is not None
        return loss

    def chunk(self, lead: int, count: int, seg: int) -> list[float]:
        with np.errstate(over="ignore"):
            if self.stop is None:
                return super().chunk(lead, count, seg)
            assert lead == 0 and seg == 1, "a stopping rule logs every epoch"
            values: list[float] = []
            before: list[Params] = []
            for _ in range(count):
                before.append(self.params)
                values.append(float(self.logged()))
                if not math.isfinite(values[-1]):
                    break
                score = self.score() if self.config.early_stopping else None
                if self.stop.update(values[-1], score, self.params):
                    self.stopped = True
                    break
            ok = finite_prefix(values)
            self.good = before[ok - 1] if ok else None
            return values

    def result(self) -> Params:
        if self.stop is not None and self.stop.best_params is not None:
            return self.stop.best_params  # early stopping keeps the best-scoring parameters
        return self.params


def python_loop(
    params: Params,
    X: Array,
    y: Array,
    *,
    lr: float,
    steps: int,
    log_every: int,
    block_rows: int | None = None,
    on_log: OnLog | None = None,
    config: Config = SEED,
) -> RunResult:
    """The array-API core on the shared schedule: what a backend without its own loop runs
    (and the tests' plain reference for the backends that have one)."""
    stepper: Steps
    if config.plain_descent:
        stepper = CoreSteps(params, X, y, lr, block_rows, config)
    else:
        stepper = EpochSteps(params, X, y, lr, config, block_rows=block_rows)
    return run_steps(stepper, lr=lr, steps=steps, log_every=log_every, on_log=on_log)
