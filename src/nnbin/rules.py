"""scikit-learn's rules between epochs, each written once: the stopping rule
(:func:`stop_update`, array-API code the loop runs on host scalars through
:class:`StopRule` and the JAX backend traces under ``jax.jit``) and the step-size schedules
of solver='sgd' (:class:`Schedule`). The loop (:mod:`nnbin.loop`) reads them; they know no
loop, no backend and no array library beyond the namespace handed to them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError


def stop_update(
    xp: Any,
    count: Any,
    best_loss: Any,
    best_score: Any,
    loss: Any,
    score: Any,
    *,
    early: bool,
    tol: float,
    patience: int,
) -> tuple[Any, Any, Any, Any, Any]:
    """One epoch of scikit-learn's stopping rule: with ``early``, the held-out ``score``
    counts as no improvement when below the best so far plus ``tol``; otherwise the
    training ``loss`` when above the best so far minus ``tol``. The run stops once more than
    ``patience`` epochs in a row did not improve. Returns (count, best loss, best score,
    whether the score is the best yet, whether to stop). Array-API code: NumPy scalars on the
    host, JAX arrays under ``jax.jit``."""
    if early:
        count = xp.where(score < best_score + tol, count + 1, 0)
        improved = score > best_score
        best_score = xp.where(improved, score, best_score)
    else:
        count = xp.where(loss > best_loss - tol, count + 1, 0)
        improved = loss < best_loss
    return count, xp.minimum(best_loss, loss), best_score, improved, count > patience


@dataclass
class StopRule:
    """The stopping rule's state between calls, on the host (a compiled runner carries it
    into its call and hands it back)."""

    early: bool
    tol: float
    patience: int
    count: int = 0
    best_loss: float = math.inf
    best_score: float = -math.inf
    #: the held-out accuracy after each epoch (early stopping)
    scores: list[float] = field(default_factory=list)
    #: the best-scoring parameters so far (early stopping: the run returns them)
    best_params: Any = None

    @classmethod
    def of(cls, config: Any) -> StopRule | None:
        """The rule a run's :class:`~nnbin.options.Config` asks for (None: none)."""
        if not config.stops:
            return None
        return cls(config.early_stopping, config.tol, config.patience)

    def update(self, loss: float, score: float | None, params: Any) -> bool:
        """Take one epoch's loss (and validation score); True when the run must stop."""
        count, best_loss, best_score, improved, stop = stop_update(
            np,
            self.count,
            np.float64(self.best_loss),
            np.float64(self.best_score),
            np.float64(loss),
            np.float64(-math.inf if score is None else score),
            early=self.early,
            tol=self.tol,
            patience=self.patience,
        )
        self.count, self.best_loss = int(count), float(best_loss)
        self.best_score = float(best_score)
        if self.early:
            assert score is not None
            self.scores.append(score)
            if improved:
                self.best_params = params
        return bool(stop)

    def carry(self, xp: Any, dtype: Any, params: Any) -> tuple[Any, Any, Any, Any]:
        """The state as arrays of ``xp``, for a compiled call to carry in and update with
        :func:`stop_update` (the best parameters: ``params`` until there are any)."""
        best = self.best_params if self.best_params is not None else params
        loss, score = (xp.asarray(v, dtype=dtype) for v in (self.best_loss, self.best_score))
        return xp.asarray(self.count, dtype=xp.int32), loss, score, best

    def take(self, carried: tuple[Any, Any, Any, Any], scores: list[float]) -> None:
        """The state a compiled call carried back, and the held-out scores of its epochs."""
        count, loss, score, best = carried
        self.count, self.best_loss, self.best_score = int(count), float(loss), float(score)
        if self.early and self.best_score > -math.inf:
            self.best_params = best
            self.scores += scores


#: the step size at which the adaptive schedule stops instead of lowering it (scikit-learn's)
ADAPTIVE_FLOOR = 1e-6


@dataclass
class Schedule:
    """scikit-learn's schedules for solver='sgd' (here gd and momentum), on the host between
    epochs: the step size is constant within an epoch. ``invscaling``: epoch e of the run
    takes lr / (t + 1)^power_t with t = ``seen`` + e ``n`` the samples seen before it (a
    fresh optimizer's first epoch takes lr, as scikit-learn's new optimizer does).
    ``adaptive``: lr until the stopping rule fires, then a fifth of it with the rule's count
    reset, and the run stops only when it fires at a step size <= ``ADAPTIVE_FLOOR``."""

    kind: str
    lr: float
    power_t: float = 0.5
    #: samples an epoch, and seen by the runs this one continues
    n: int = 0
    seen: int = 0
    #: whether the optimizer is new (a first epoch at lr itself)
    fresh: bool = True

    @classmethod
    def of(cls, config: Any, lr: float, n: int, fresh: bool) -> Schedule | None:
        if config.learning_rate == "constant":
            return None
        return cls(config.learning_rate, lr, config.power_t, n, config.samples_seen, fresh)

    def rate(self, epoch: int) -> float:
        """The step size of the run's epoch ``epoch`` (0: its first). Where lr / (t + 1) ^
        power_t leaves float64's range (power_t = 1000) it is one error that says so, never
        Python's OverflowError nor a step size of 0."""
        if self.kind == "invscaling" and not (epoch == 0 and self.fresh):
            t = self.seen + epoch * self.n  # the samples seen before the epoch
            try:
                rate = self.lr / (t + 1) ** self.power_t
            except OverflowError:
                rate = 0.0
            if not rate > 0.0:
                raise InvalidInputError(
                    f"learning_rate='invscaling' with power_t={self.power_t:g} makes the step "
                    f"size lr / (t + 1)^power_t = {self.lr:g} / {t + 1}^{self.power_t:g} "
                    f"underflow to 0 at epoch {epoch} ({t} samples seen): use a smaller "
                    "power_t (scikit-learn's default is 0.5)"
                )
            return rate
        return self.lr

    def fired(self, rule: StopRule | None) -> bool:
        """The stopping ``rule`` fired: True when the run stops, else (adaptive) the step
        size is lowered and the rule counts anew."""
        if self.kind != "adaptive" or self.lr <= ADAPTIVE_FLOOR or rule is None:
            return True
        lowered = self.lr / 5.0
        self.lr, rule.count = lowered, 0
        return False
