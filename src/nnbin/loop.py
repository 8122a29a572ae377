"""The training loop, one for every backend: advance k steps, then log.

    s = 0
    while s < steps:
        n, every = the next call (k steps at most, never past a log it cannot finish)
        losses = stepper.advance(n, every)   # a backend's one call: eager, compiled or fused
        record them (history, on_log); stop at a non-finite one, or when the rule says so
        s += n

A call's first step is logged when ``s`` is a multiple of ``every`` (the loss is taken
before that step's update), and so is every ``every``-th after it. ``k``, the steps a call
holds, is ``steps_per_call`` (as Keras's ``steps_per_execution``) or, by default, sized
from the time the calls before took: a power of two that fits about ``CALL_SECONDS``, so
Ctrl-C stops any backend within about that long and a compiled or graphed backend sees few
call lengths. With a stopping rule every epoch is logged and the rule reads it.

What is written here once: the schedule of calls (:func:`next_call`), the history and
``on_log``, the finite check and the divergence error (:func:`diverged`), the last finite
parameters (:func:`logged_segments` for eager steppers; a compiled stepper keeps them in
its carry, from the same rule). scikit-learn's stopping rule and step-size schedules, which
the loop reads between epochs, are :mod:`nnbin.rules`'.

What a backend supplies is a :class:`Stepper`: ``advance(n, every)``. The array-API core's
eager stepper is :class:`nnbin.backend.CoreStepper` (NumPy, array-api-strict, PyTorch,
CuPy's core path; Dask overrides how an update settles; JAX compiles it); L-BFGS's, one
iteration a step on any backend, is :class:`nnbin.backend.LbfgsStepper`, which ends a run by
its own rule (``Advanced.ran``, ``Stepper.message``). This module knows
no array library and no math: it imports the errors, the rules between epochs and the
model's type names only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import TrainingDivergedError
from .model import Array, Params
from .rules import Schedule, StopRule

#: seconds of work a call holds by default (Ctrl-C waits at most about this long, on_log too)
CALL_SECONDS = 0.25
#: the most logged steps one call holds (a compiled call records them in a buffer this long)
MAX_LOGS = 256

OnLog = Callable[[int, float], None]


# --- what a backend supplies ---------------------------------------------------------------


@dataclass
class Advanced:
    """What one call of :meth:`Stepper.advance` did."""

    #: the logged losses, as Python floats (the call's one wait for the device)
    losses: list[float]
    #: the parameters before the last logged step that is finite with only finite ones
    #: before it (None: no such step in this call)
    good: Params | None = None
    #: the stopping rule ended the run at the last of ``losses``
    stopped: bool = False
    #: the steps the call ran before it stopped (None: one a loss, as a rule reads them)
    ran: int | None = None


class Stepper:
    """How one backend advances the parameters of one run."""

    params: Params
    #: the optimizer's state (none for plain gradient descent)
    state: Any = ()
    #: how the steps run, where it differs from the backend's ``loop`` (shown in results)
    loop: str = ""
    #: seconds spent compiling (0 for eager backends)
    compile_seconds: float = 0.0
    #: scikit-learn's stopping rule, when the run has one
    rule: StopRule | None = None
    #: the most steps one call may hold (None: the time budget alone)
    max_steps_per_call: int | None = None
    #: how the optimizer ended the run, where it has its own rule (L-BFGS: scipy's words)
    message: str = ""

    def advance(self, n: int, every: int) -> Advanced:
        """``n`` steps; with ``every`` > 0 the first is logged and every ``every``-th after
        it. Blocks until the work is done where the library can say (so the time a call
        took is honest)."""
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """The step size of the steps from the next call on (a :class:`Schedule`'s)."""
        raise NotImplementedError

    def result(self) -> Params:
        """The parameters to hand back (early stopping: the best-scoring ones)."""
        if self.rule is not None and self.rule.best_params is not None:
            return self.rule.best_params
        return self.params


def logged_segments(
    n: int,
    every: int,
    logged: Callable[[], Array],
    plain: Callable[[int], None],
    current: Callable[[], Params],
    read: Callable[[float], bool] | None = None,
) -> Advanced:
    """An eager stepper's call: its segments (a logged step, then plain ones) and the
    bookkeeping of the last finite parameters; ``current()`` gives the parameters before a
    logged step (a copy where the stepper reuses its buffers). With ``read`` (a stopping
    rule: True ends the run) each finite loss is read as it comes, else once at the end."""
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
            if read(losses[-1]):
                stopped = True
                break
        plain(min(every, n - start) - 1)
    values = [float(v) for v in losses]  # the call's one wait (without a rule)
    ok = finite_prefix(values)
    return Advanced(values, before[ok - 1] if ok else None, stopped)


# --- the loop ------------------------------------------------------------------------------


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
    #: what the stopping rule saw, when there is one
    stop: StopRule | None = None
    #: the optimizer's final state (momentum, Adam's moments), to continue a run from
    optimizer_state: Any = ()
    #: the step size the schedule ended at: what a continued run's next epoch would take
    lr_final: float | None = None
    #: how the optimizer ended the run, where it has its own rule (L-BFGS: scipy's words)
    message: str = ""


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


def run_steps(
    stepper: Stepper,
    *,
    lr: float,
    steps: int,
    log_every: int,
    on_log: OnLog | None = None,
    initial: Params | None = None,
    steps_per_call: int | None = None,
    schedule: Schedule | None = None,
) -> RunResult:
    """Run ``steps`` steps of ``stepper``: the one loop.

    ``initial``: the caller's starting parameters (for the divergence error when no loss
    was finite; default: ``stepper.params`` at the start). ``steps_per_call``: the steps a
    call holds (default: sized by ``CALL_SECONDS``, read at each call). ``schedule``: a
    step-size schedule (one epoch a call, its step size set before each; the adaptive one
    lowers it where the stopping rule would end the run).
    """
    every = 1 if stepper.rule is not None else log_every  # the rule reads every epoch
    initial = stepper.params if initial is None else initial
    history: list[tuple[int, float]] = []
    last_finite: tuple[int, Params] | None = None
    s, k = 0, steps_per_call or 1
    while s < steps:
        if stepper.max_steps_per_call is not None:
            k = min(k, stepper.max_steps_per_call)
        if schedule is not None:  # the step size changes between epochs
            k = 1
            stepper.set_lr(schedule.rate(s))
        n, logs = next_call(s, steps, every, k)
        t0, compiling = time.perf_counter(), stepper.compile_seconds
        out = stepper.advance(n, logs)
        spent = time.perf_counter() - t0 - (stepper.compile_seconds - compiling)
        ok = finite_prefix(out.losses)
        for i, value in enumerate(out.losses[:ok]):
            history.append((s + i * logs, value))
            if on_log is not None:
                on_log(s + i * logs, value)
        if ok and out.good is not None:
            last_finite = (s + (ok - 1) * logs, out.good)
        if ok < len(out.losses):
            raise diverged(s + ok * logs, lr, last_finite, initial)
        if out.stopped:  # the rule ended the run after its last loss (one epoch a log)
            s += len(out.losses) if out.ran is None else out.ran
            if schedule is None or schedule.fired(stepper.rule):
                break
            continue
        s += n
        if steps_per_call is None:  # a power of two that fits CALL_SECONDS
            fits = int(CALL_SECONDS / max(spent / n, 1e-9))
            k = 1 << max(fits, 1).bit_length() - 1
    return RunResult(
        stepper.result(),
        history,
        stepper.compile_seconds,
        last_finite=last_finite,
        loop=stepper.loop,
        steps_run=s,
        stop=stepper.rule,
        optimizer_state=stepper.state,
        lr_final=lr if schedule is None else schedule.rate(s),
        message=stepper.message,
    )
