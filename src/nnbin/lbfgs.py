"""L-BFGS, written once against the array API: scikit-learn's ``solver='lbfgs'`` on every
backend, GPU arrays included.

The parameters stay a pytree of the data's library on its device; the two-loop recursion,
the trial points and the curvature pairs are array-API arithmetic on them. What a line
search decides is read to the host: each evaluation of the objective reads one small array
(the loss, the slope along the search direction and the gradient's largest magnitude), the
one wait for the device an evaluation has. A minimiser that chooses its step sizes from
the loss cannot do with fewer (scipy's L-BFGS-B, which scikit-learn calls, reads the whole
gradient to the host each time).

One iteration (Nocedal & Wright, *Numerical Optimization*, 2nd ed., algorithms 7.4, 3.5
and 3.6)::

    d = -H g                 the two-loop recursion over the last MEMORY pairs (s, y),
                             H0 = (s.y / y.y) I from the newest pair (-g with none)
    t                        a step along d meeting the strong Wolfe conditions
                             f(x + t d) <= f(x) + C1 t g.d  and  |g(x + t d).d| <= C2 |g.d|
                             (first iteration's trial step min(1, 1/||g||), then 1)
    s = t d;  y = g_new - g  kept when s.y > 0 (the oldest pair dropped past MEMORY)

It stops as scikit-learn's L-BFGS-B does (scipy's defaults, ``gtol`` = ``tol``): when the
gradient's largest magnitude is at most ``tol`` (also before the first iteration), when an
iteration lowers the loss by at most ``FTOL`` relative to max(|f|, |f_new|, 1), after
``max_iter`` iterations (the run's ``steps``), or when an iteration ends with more than
``max_fun`` evaluations made. A line search that finds no step forgets the pairs and tries
once more along -g; failing that too, the run ends at the last point (an ABNORMAL status,
as scipy's).

What a backend supplies is the evaluation at a trial point (:meth:`nnbin.backend.Runners.
evaluator`: :func:`evaluate` on the core's full-batch loss and gradient, compiled where the
backend compiles) and ``settle`` (Dask: persist, so the graph never grows). The one loop
runs :class:`Lbfgs` through :class:`nnbin.loop.LbfgsRunner`, one iteration a step: it
records the losses, calls ``on_log`` and honours Ctrl-C as for every optimizer. This module
imports the array helpers of :mod:`nnbin.model` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import Array, Params, like, namespace

#: curvature pairs kept (scipy's ``maxcor`` default, which scikit-learn leaves)
MEMORY = 10
#: the relative reduction of the loss an iteration must beat (scipy's ``factr`` 1e7 times
#: float64's machine epsilon: L-BFGS-B's ``ftol`` default)
FTOL = 1e7 * float(np.finfo(np.float64).eps)
#: the strong Wolfe conditions' constants (sufficient decrease, curvature)
C1, C2 = 1e-4, 0.9
#: evaluations one line search may take (scipy's ``maxls``)
MAX_LINE_SEARCH = 20

#: how a run ended, in scipy's words (scikit-learn's ConvergenceWarning quotes them)
CONVERGED_GRADIENT = "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
CONVERGED_LOSS = "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
ITERATION_LIMIT = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
EVALUATION_LIMIT = "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"
LINE_SEARCH_FAILED = "ABNORMAL: NO STEP SATISFIES THE STRONG WOLFE CONDITIONS"

Objective = Callable[[Params], tuple[Array, Params]]


@dataclass(frozen=True)
class _Point:
    """One evaluation of the objective: where, the gradient there, and its host scalars."""

    params: Any
    grads: Any
    f: float
    gmax: float
    slope: float


# --- pytree arithmetic -----------------------------------------------------------------------


def dot(a: Any, b: Any) -> Array:
    """The inner product of two pytrees of arrays (a 0-d array on their device)."""
    xp = namespace(*a)
    total = None
    for u, v in zip(a, b):
        part = xp.sum(u * v)
        total = part if total is None else total + part
    return total


def axpy(t: Any, d: Any, x: Any) -> Any:
    """x + t d, leaf by leaf (``t`` a Python float or a 0-d array)."""
    return like(x, (p + t * q for p, q in zip(x, d)))


def flat(tree: Any) -> Array:
    """The arrays of a pytree as one vector: the curvature pairs' form, so that the
    two-loop recursion is a few operations a pair, not a few a parameter array (on Dask
    each is a graph to build; on a GPU, a launch)."""
    xp = namespace(*tree)
    return xp.concat([xp.reshape(a, (-1,)) for a in tree])


def unflat(v: Array, tree: Any) -> Any:
    """The vector ``v`` cut into arrays of ``tree``'s shapes, in ``tree``'s container."""
    xp, parts, start = namespace(v), [], 0
    for a in tree:
        stop = start + math.prod(int(n) for n in a.shape)
        parts.append(xp.reshape(v[start:stop], tuple(a.shape)))
        start = stop
    return like(tree, parts)


def inner(a: Array, b: Array) -> Array:
    """The inner product of two vectors (a 0-d array on their device)."""
    return namespace(a, b).sum(a * b)


def direction(grads: Any, pairs: list[tuple[Array, Array, float]]) -> Any:
    """-H g by the two-loop recursion over ``pairs`` (oldest first: s and y as :func:`flat`
    vectors, 1 / s.y), the starting matrix (s.y / y.y) I from the newest pair; in the shape
    of ``grads``. No value is read to the host."""
    q = flat(grads)
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * inner(s, q)
        alphas.append(a)
        q = q - a * y
    if pairs:
        s, y, rho = pairs[-1]
        gamma = 1.0 / (rho * inner(y, y))
        q = gamma * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * inner(y, q)
        q = q + (a - b) * s
    return unflat(-q, grads)


# --- the strong Wolfe line search, on host scalars -------------------------------------------


def _cubic_minimum(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float:
    """The minimiser of the cubic through (a, fa) and (b, fb) with slopes da and db (nan
    when there is none)."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    square = d1 * d1 - da * db
    if not square >= 0.0:  # also nan
        return math.nan
    d2 = math.copysign(math.sqrt(square), b - a)
    return b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)


def _curved(slope: float, slope0: float) -> bool:
    """The strong curvature condition: |g(x + t d).d| <= C2 |g.d|."""
    return abs(slope) <= -C2 * slope0


def line_search(
    evaluate: Callable[[float], tuple[float, float]],
    f0: float,
    slope0: float,
    t: float,
    max_evals: int = MAX_LINE_SEARCH,
) -> float | None:
    """A step ``t`` > 0 meeting the strong Wolfe conditions along a descent direction
    (``slope0`` < 0), or None when ``max_evals`` evaluations found none. ``evaluate(t)``
    gives the loss and the slope at the trial point (and keeps what else it needs of it:
    the step returned is always the last one evaluated). Bracketing by doubling, then
    zooming by safeguarded cubic interpolation (Nocedal & Wright, algorithms 3.5 and 3.6).
    A non-finite loss counts as too large (the bracket shrinks past it)."""
    evals = 0
    prev_t, prev_f, prev_slope = 0.0, f0, slope0

    def too_high(t: float, f: float, f_lo: float) -> bool:
        return not math.isfinite(f) or f > f0 + C1 * t * slope0 or f >= f_lo

    while evals < max_evals:
        f, slope = evaluate(t)
        evals += 1
        if too_high(t, f, prev_f if evals > 1 else math.inf):
            return _zoom(evaluate, f0, slope0, (prev_t, prev_f, prev_slope), (t, f, slope),
                         max_evals - evals, too_high)  # fmt: skip
        if _curved(slope, slope0):
            return t
        if slope >= 0.0:
            return _zoom(evaluate, f0, slope0, (t, f, slope), (prev_t, prev_f, prev_slope),
                         max_evals - evals, too_high)  # fmt: skip
        prev_t, prev_f, prev_slope = t, f, slope
        t *= 2.0
    return None


def _zoom(
    evaluate: Callable[[float], tuple[float, float]],
    f0: float,
    slope0: float,
    lo: tuple[float, float, float],
    hi: tuple[float, float, float],
    evals_left: int,
    too_high: Callable[[float, float, float], bool],
) -> float | None:
    """Algorithm 3.6: ``lo`` (t, f, slope) the best point meeting sufficient decrease, the
    minimiser between it and ``hi``. The trial point is the cubic's minimiser, kept at
    least a tenth of the bracket from its ends (else the bisection); the step returned is
    the one just evaluated."""
    for _ in range(evals_left):
        (a, fa, da), (b, fb, db) = lo, hi
        width = abs(b - a)
        if width <= 1e-12 * max(abs(a), abs(b), 1e-300):
            return None
        t = _cubic_minimum(a, fa, da, b, fb, db)
        low, high = min(a, b) + 0.1 * width, max(a, b) - 0.1 * width
        if not low <= t <= high:  # no cubic minimum, or too near an end: bisect
            t = 0.5 * (a + b)
        f, slope = evaluate(t)
        if too_high(t, f, fa):
            hi = (t, f, slope)
            continue
        if _curved(slope, slope0):
            return t
        if slope * (b - a) >= 0.0:
            hi = lo
        lo = (t, f, slope)
    return None


# --- the minimiser ---------------------------------------------------------------------------


def evaluate(objective: Objective, params: Any, d: Any, t: Any) -> tuple[Any, Any, Array]:
    """The objective at the trial point ``params + t d`` (``params`` itself when ``d`` is
    None): the point, the gradient there and one 1-d array of the scalars a line search
    reads: [loss, the gradient's largest magnitude, the slope g.d (with ``d``)]. Array-API
    code: eager, or compiled whole by a backend (:meth:`nnbin.backend.Runners.evaluator`)."""
    point = params if d is None else axpy(t, d, params)
    loss, grads = objective(point)
    xp = namespace(*grads)
    biggest = xp.max(xp.stack([xp.max(xp.abs(g)) for g in grads]))
    scalars = [loss, biggest] + ([] if d is None else [dot(grads, d)])
    return point, grads, xp.stack(scalars)


class Lbfgs:
    """The minimiser's state between iterations, on one run's objective:
    :attr:`params`, :attr:`grads`, the loss :attr:`f`, the curvature pairs.
    ``evaluate(params, d, t)``: :func:`evaluate` on the run's objective; ``read(array)``: a
    small 1-d array to host floats (an evaluation's one wait); ``settle(tree)``: a tuple of
    tuples of arrays made concrete where the library is lazy (Dask). ``tol``, ``max_fun``:
    scikit-learn's. :attr:`message` says how the run ended (scipy's words; "" while it
    goes on, and when the iteration limit ends it: :data:`ITERATION_LIMIT`), :attr:`n_fun`
    how many evaluations it made. Host reads an iteration: one for the direction's slope,
    one an evaluation. (The one loop runs it through :class:`nnbin.loop.LbfgsRunner`.)"""

    def __init__(
        self,
        params: Params,
        evaluate: Callable[[Any, Any, Any], tuple[Any, Any, Array]],
        *,
        read: Callable[[Array], list[float]],
        settle: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda tree: tree,
        tol: float = 1e-4,
        max_fun: int = 15000,
        memory: int = MEMORY,
    ) -> None:
        self.evaluate, self.read, self.settle = evaluate, read, settle
        self.tol, self.max_fun, self.memory = tol, max_fun, memory
        self.pairs: list[tuple[Array, Array, float]] = []
        self.n_fun, self.message = 0, ""
        point = self._at(params, None, 0.0)
        self.params, self.grads, self.f = point.params, point.grads, point.f
        if point.gmax <= tol:  # converged where it starts (scipy's: no iteration)
            self.message = CONVERGED_GRADIENT

    def _at(self, params: Any, d: Any, t: float) -> _Point:
        """One evaluation at ``params + t d``, its scalars in one read."""
        self.n_fun += 1
        p, g, scalars = self.evaluate(params, d, t)
        p, g, (scalars,) = self.settle((tuple(p), tuple(g), (scalars,)))
        values = self.read(scalars)
        slope = values[2] if d is not None else math.nan
        return _Point(like(params, p), like(params, g), values[0], values[1], slope)

    def iterate(self) -> str:
        """One iteration from :attr:`params`; the message when the run must stop, else ""."""
        (d,) = self.settle((tuple(direction(self.grads, self.pairs)),))
        d = like(self.params, d)
        slope0 = self.read(namespace(*d).stack([dot(self.grads, d)]))[0]
        if not slope0 < 0.0 and self.pairs:  # not a descent direction (round-off)
            self.pairs = []
            return self.iterate()
        # the first trial step: 1, or at most unit length along -g (L-BFGS-B's first step)
        t0 = 1.0 if self.pairs else min(1.0, 1.0 / math.sqrt(max(-slope0, 1e-300)))
        last: list[_Point] = []  # the point last evaluated: the one a search returns

        def at(t: float) -> tuple[float, float]:
            last[:] = [self._at(self.params, d, t)]
            return last[0].f, last[0].slope

        t = line_search(at, self.f, slope0, t0) if slope0 < 0.0 else None
        if t is None:
            if self.pairs:  # forget the curvature and try once more along -g
                self.pairs = []
                return self.iterate()
            return LINE_SEARCH_FAILED
        (new,) = last
        # the curvature pair: s = t d, y = g_new - g, and s.y = t (g_new.d - g.d) from the
        # slopes already read
        sy = t * (new.slope - slope0)
        if math.isfinite(sy) and sy > 0.0:  # the strong Wolfe conditions promise it
            s, yv = self.settle((t * flat(d), flat(new.grads) - flat(self.grads)))
            self.pairs = [*self.pairs, (s, yv, 1.0 / sy)][-self.memory :]
        f_old = self.f
        self.params, self.grads, self.f = new.params, new.grads, new.f
        if f_old - self.f <= FTOL * max(abs(f_old), abs(self.f), 1.0):
            return CONVERGED_LOSS
        if new.gmax <= self.tol:
            return CONVERGED_GRADIENT
        if self.n_fun > self.max_fun:
            return EVALUATION_LIMIT
        return ""
