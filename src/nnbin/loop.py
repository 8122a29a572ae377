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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .backprop import apply_update, value_and_grads
from .errors import TrainingDivergedError
from .model import Array, Params

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
    rec = Recorder(lr, stepper.params if initial is None else initial, on_log)
    s, per_step = 0, None
    while s < steps:
        # a power of two: the few chunk lengths a GPU driver then sees keep its CUDA graphs
        # few (one per length), whatever the timings
        fits = 1 if per_step is None else int(seconds / max(per_step, 1e-9))
        budget = 1 << max(fits, 1).bit_length() - 1
        lead, count, seg = plan(s, steps, log_every, budget, max_logs)
        t0, compiling = time.perf_counter(), stepper.compile_seconds
        values = stepper.chunk(lead, count, seg)
        ran = lead + count * seg
        spent = time.perf_counter() - t0 - (stepper.compile_seconds - compiling)
        per_step = max(spent, 0.0) / ran
        rec.record(s + lead, seg, values, stepper.good)
        s += ran
    return RunResult(
        stepper.result(), rec.history, stepper.compile_seconds, last_finite=rec.last_finite
    )


class CoreSteps(Steps):
    """The array-API core, one Python iteration a step (NumPy, array-api-strict, PyTorch,
    CuPy's core path). The gradient pass goes through the samples ``block_rows`` at a time
    (None: all at once). NumPy's overflow warning inside the sigmoid is off (see
    :func:`nnbin.model.sigmoid`)."""

    def __init__(
        self, params: Params, X: Array, y: Array, lr: float, block_rows: int | None = None
    ) -> None:
        self.params, self.X, self.y, self.lr, self.block_rows = params, X, y, lr, block_rows

    def _grads(self, with_loss: bool) -> tuple[Array | None, Params]:
        return value_and_grads(
            self.params, self.X, self.y, with_loss=with_loss, block_rows=self.block_rows
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
) -> RunResult:
    """The array-API core on the shared schedule: what a backend without its own loop runs
    (and the tests' plain reference for the backends that have one)."""
    return run_steps(
        CoreSteps(params, X, y, lr, block_rows),
        lr=lr,
        steps=steps,
        log_every=log_every,
        on_log=on_log,
    )
