"""The optimizers, written by hand: plain gradient descent, momentum (optionally Nesterov's)
and Adam, as scikit-learn's ``MLPClassifier`` defines them. Pure functions on pytrees:
``state = init(params)``; ``params, state = update(params, grads, state)``. Nothing is
updated in place, and no value is read to the host, so one update runs eagerly on any
array-API library or traced by ``jax.jit``.

    gd:        p <- p - lr g
    momentum:  v <- mu v - lr g;  p <- p + v              (Nesterov: p <- p + mu v - lr g)
    adam:      t <- t + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
               p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import options
from .errors import InvalidInputError
from .model import Array, like, namespace
from .options import Config, Values

OPTIMIZERS = ("gd", "momentum", "adam")
#: the parts of each optimizer's state, as :meth:`Optimizer.init` makes them (L-BFGS,
#: :mod:`nnbin.lbfgs`, carries none between runs: a continued run starts a fresh memory)
STATE_PARTS = {"gd": (), "momentum": ("velocity",), "adam": ("t", "m", "v"), "lbfgs": ()}


#: the hyperparameters of the stepped optimizers (declared, with their defaults and
#: constraints, in :data:`nnbin.options.OPTIONS`: the options that act only with one of them)
HYPERPARAMETERS = tuple(
    n
    for n, (on, acting) in options.ACTS_ONLY_WITH.items()
    if on == "optimizer" and set(acting) <= {"momentum", "adam"}
)


class Optimizer(Values):
    """An optimizer, its step size and its hyperparameters (:data:`HYPERPARAMETERS`, read as
    attributes: ``opt.nesterov``; the options table's defaults for those not given). Python
    floats, never arrays: a NumPy scalar would turn another library's arrays into NumPy
    ones."""

    def __init__(
        self, name: str = "gd", lr: Any = 1.0, *positional: Any, **hyperparameters: Any
    ) -> None:
        """Each value checked as the options table says (one InvalidInputError: a ``beta1``
        of 1 would make every update non-finite). A step size that is an array of another
        library (traced under ``jax.jit``) is the compiled run's own, not checked. The
        hyperparameters may follow ``lr`` in :data:`HYPERPARAMETERS`' order."""
        if len(positional) > len(HYPERPARAMETERS):
            raise TypeError(f"Optimizer takes at most {2 + len(HYPERPARAMETERS)} positional values")
        twice = set(HYPERPARAMETERS[: len(positional)]) & set(hyperparameters)
        if twice:
            raise TypeError(f"Optimizer got {', '.join(sorted(twice))} twice")
        hyperparameters.update(zip(HYPERPARAMETERS, positional))
        options.unknown(hyperparameters, HYPERPARAMETERS, "Optimizer")
        values = {"name": options.check("optimizer", name), "lr": lr}
        if values["name"] == "lbfgs":
            raise InvalidInputError(
                "optimizer 'lbfgs' takes no update of a step size (it chooses its own, by a "
                "line search): train with nnbin.train(..., optimizer='lbfgs'), or use "
                "nnbin.lbfgs.Lbfgs directly; nnbin.Optimizer is gd, momentum or adam"
            )
        values["lr"] = _checked_lr(lr)
        for n in HYPERPARAMETERS:
            values[n] = options.check(n, hyperparameters.get(n, options.OPTIONS[n].default))
        super().__init__(values)

    @classmethod
    def of(cls, config: Config, lr: Any) -> Optimizer:
        """The optimizer a run's ``config`` names, with its hyperparameters, at step size
        ``lr`` (checked: it is no field of the config): the hyperparameters are the values
        the options table checked once already, not checked again."""
        values = {n: getattr(config, n) for n in HYPERPARAMETERS}
        return _unchecked(cls, {"name": config.optimizer, "lr": _checked_lr(lr), **values})

    def at(self, lr: Any) -> Optimizer:
        """This optimizer at step size ``lr``: a schedule's (checked), or an array the run
        holds it in (a compiled run's argument, a CUDA graph's buffer). What the loop calls
        between epochs (:meth:`replace` checks every value again)."""
        return _unchecked(type(self), {**vars(self), "lr": _checked_lr(lr)})

    def init(self, params: Any) -> Any:
        """The optimizer's starting state for ``params`` (a pytree: () for gd)."""
        if self.name in ("gd", "lbfgs"):
            return ()
        zeros = like(params, (_zeros_like(p) for p in params))
        if self.name == "momentum":
            return (zeros,)
        # adam: the step count as a 0-d array of the parameters' dtype (traced under jit)
        p0 = params[0]
        t = namespace(p0).zeros((), dtype=p0.dtype, device=array_api_compat.device(p0))
        return (t, zeros, zeros)  # m and v: the same zeros (nothing is updated in place)

    def check_state(self, params: Any, state: Any) -> Any:
        """``state`` (a result's ``optimizer_state``) checked against the parameters it
        continues and this optimizer: the parts :meth:`init` makes (gd: none; momentum: the
        velocity; Adam: the step count t and the moments m and v), each moment of the
        parameters' shapes, dtype and library, t a 0-d array of that dtype. By shapes and
        types only: nothing is read from a device. One InvalidInputError otherwise."""
        name, parts = self.name, STATE_PARTS[self.name]
        expected = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        if not isinstance(state, tuple) or len(state) != len(parts):
            got = f"a {len(state)}-tuple" if isinstance(state, tuple) else type(state).__name__
            raise InvalidInputError(
                f"optimizer_state must be {name}'s state {expected}, as a {name} run's "
                f"result.optimizer_state gives; got {got}"
            )

        def kind(a: Any) -> str:  # "float32" for NumPy's, torch.float32, array_api_strict's
            return str(getattr(a, "dtype", "")).rpartition(".")[2]

        dtype = kind(params[0])
        for part, value in zip(parts, state):
            if part == "t":
                if getattr(value, "shape", None) != () or kind(value) != dtype:
                    raise InvalidInputError(
                        f"optimizer_state's t must be a 0-d array of {dtype} (Adam's step "
                        f"count); got {type(value).__name__} {getattr(value, 'shape', '')}"
                    )
                continue
            if not isinstance(value, tuple) or len(value) != len(params):
                raise InvalidInputError(
                    f"optimizer_state's {part} must hold one array per parameter "
                    f"({len(params)}), as a run of this architecture gives"
                )
            for i, (a, p) in enumerate(zip(value, params)):
                shape, want = tuple(getattr(a, "shape", ())), tuple(p.shape)
                if shape != want or kind(a) != dtype:
                    raise InvalidInputError(
                        f"optimizer_state's {part}[{i}] has shape {shape} and dtype "
                        f"{kind(a) or None}, the parameter it goes with {want} and "
                        f"{dtype}: pass the state of a run of this architecture and dtype"
                    )
        leaves = [a for part in state for a in (part if isinstance(part, tuple) else (part,))]
        namespace(*params, *leaves)  # one library: MixedArraysError otherwise
        # the moments in the parameters' own type (a compiled loop's carry keeps its type)
        return tuple(like(params, part) if isinstance(part, tuple) else part for part in state)

    def update(self, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        """One update: the new parameters and the new state (L-BFGS's steps are
        :mod:`nnbin.lbfgs`'s)."""
        if self.name == "lbfgs":
            raise TypeError("L-BFGS takes no update of a step size: see nnbin.lbfgs")
        lr = self.lr
        if self.name == "gd":
            descended = like(params, (p - lr * g for p, g in zip(params, grads)))
            return descended, state
        if self.name == "momentum":
            mu = self.momentum
            (velocity,) = state
            velocity = like(params, (mu * v - lr * g for v, g in zip(velocity, grads)))
            # Nesterov's step looks ahead along the new velocity
            ahead = (
                like(params, (mu * v - lr * g for v, g in zip(velocity, grads)))
                if self.nesterov
                else velocity
            )
            return like(params, (p + u for p, u in zip(params, ahead))), (velocity,)
        b1, b2, eps = self.beta1, self.beta2, self.epsilon
        t, m, v = state
        t = t + 1.0
        m = like(params, (b1 * a + (1.0 - b1) * g for a, g in zip(m, grads)))
        v = like(params, (b2 * a + (1.0 - b2) * (g * g) for a, g in zip(v, grads)))
        xp = namespace(t)
        rate = adam_rate(xp, lr, b1, b2, t)  # a 0-d array
        new = like(params, (p - rate * a / (xp.sqrt(b) + eps) for p, a, b in zip(params, m, v)))
        return new, (t, m, v)


def _checked_lr(lr: Any) -> Any:
    """A step size as the options table checks it (a Python float), unless it is an array
    of a library other than NumPy (a traced or buffered one, the run's own)."""
    if hasattr(lr, "shape") and not type(lr).__module__.startswith("numpy"):
        return lr
    return options.check("lr", lr)


def _unchecked(kind: type[Optimizer], values: dict[str, Any]) -> Optimizer:
    opt = object.__new__(kind)
    Values.__init__(opt, values)
    return opt


def _zeros_like(a: Array) -> Array:
    return namespace(a).zeros_like(a)


def adam_rate(xp: Any, lr: Any, b1: float, b2: float, t: Any) -> Any:
    """Adam's bias-corrected step size at step ``t`` (the update's ``t``, from 1): lr
    sqrt(1 - b2^t) / (1 - b1^t), as scikit-learn's ``AdamOptimizer`` holds it in its
    ``learning_rate``; ``xp`` is the namespace of ``t`` (:mod:`math` for a Python number)."""
    return lr * xp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
