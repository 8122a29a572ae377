"""The training options, each declared once: name, constraint, default, one line of help,
scikit-learn's name where it has one, and the command-line flag.

Everything else is derived from :data:`OPTIONS` (as scikit-learn derives its checks from an
estimator's ``_parameter_constraints``): :func:`nnbin.train`'s keywords, defaults, signature
and checks (:func:`resolve`), the flags of ``nnbin train`` and their ``--help``
(:func:`add_flags`), the mapping of :class:`nnbin.BinaryMLPClassifier`'s parameters onto
``train`` (:func:`from_sklearn`), and the settings saved with a model (:func:`saved`). A bad
value is one :class:`~nnbin.InvalidInputError` whose text is the same from every entry
point, with the option named as its user spelled it (``max_iter`` for the estimator,
``--steps`` on the command line, ``steps`` in the API).

Adding an option: a row here, the code that uses it, and (for a scikit-learn name) the
estimator's ``__init__``, whose signature scikit-learn's ``get_params`` reads.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError

#: the most hidden layers a network may have: nnbin builds, trains, saves and reads networks
#: up to this depth, and refuses a deeper one before any work (one limit, here)
MAX_LAYERS = 64

#: the most steps one run takes (JAX counts steps in 32-bit integers)
MAX_STEPS = 2**31 - 1


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or type(v).__name__ in ("bool_", "bool")


class Constraint:
    """What values an option takes. ``check`` returns the value as nnbin keeps it (a Python
    number, a tuple) or raises InvalidInputError naming the option as ``name``; ``parse``
    turns command-line text into a value for ``check``; ``cli`` is how argparse takes it."""

    #: argparse's ``action`` for the flag (None: a value follows the flag)
    action: str | None = None
    metavar: str | None = None

    def check(self, name: str, v: Any) -> Any:
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        return text

    def describe(self) -> str:
        raise NotImplementedError

    #: values it refuses, each with its command-line text (None: not writable there), for
    #: the test that walks the table
    def refused(self) -> list[tuple[Any, str | None]]:
        return []


@dataclass(frozen=True)
class Whole(Constraint):
    """A whole number in [low, high] (a Python or NumPy integer, never a bool or a float)."""

    low: int
    high: int | None = None
    none: bool = False  # None is allowed too
    metavar: str | None = "N"

    def check(self, name: str, v: Any) -> Any:
        if v is None and self.none:
            return None
        if _is_bool(v) or not isinstance(v, numbers.Integral):
            raise InvalidInputError(f"{name} must be a whole number >= {self.low}, got {v!r}")
        v = int(v)
        if v < self.low:
            raise InvalidInputError(f"{name} must be >= {self.low}, got {v}")
        if self.high is not None and v > self.high:
            raise InvalidInputError(
                f"{name} must be <= {self.high:,}"
                + (" (2**31 - 1)" if self.high == MAX_STEPS else "")
                + f", got {v:,}"
            )
        return v

    def parse(self, text: str) -> Any:
        for kind in (int, float):  # "2.5" stays 2.5, for check() to name
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    def describe(self) -> str:
        top = "" if self.high is None else f" and <= {self.high:,}"
        return f"a whole number >= {self.low}{top}" + (", or None" if self.none else "")

    def refused(self) -> list[tuple[Any, str | None]]:
        out: list[tuple[Any, str | None]] = [(self.low - 1, str(self.low - 1)), (2.5, "2.5")]
        out += [("x", "x"), (True, None)]
        if self.high is not None:
            out.append((self.high + 1, str(self.high + 1)))
        return out


@dataclass(frozen=True)
class Real(Constraint):
    """A finite real number in an interval; ``closed``: which ends belong to it."""

    low: float
    high: float = math.inf
    closed: str = "both"  # "both", "left", "right", "neither"
    metavar: str | None = "X"

    def _where(self) -> str:
        low_in = self.closed in ("both", "left")
        if self.high == math.inf:
            return f"{'>=' if low_in else '>'} {self.low:g}"
        right = "]" if self.closed in ("both", "right") else ")"
        return f"in {'[' if low_in else '('}{self.low:g}, {self.high:g}{right}"

    def check(self, name: str, v: Any) -> float:
        if _is_bool(v) or isinstance(v, (str, bytes)) or getattr(v, "shape", ()) != ():
            raise InvalidInputError(f"{name} must be a number, got {v!r}")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a number, got {v!r}") from None
        low_ok = x > self.low or (x == self.low and self.closed in ("both", "left"))
        high_ok = x < self.high or (x == self.high and self.closed in ("both", "right"))
        if not (math.isfinite(x) and low_ok and high_ok):
            raise InvalidInputError(f"{name} must be a finite number {self._where()}, got {v!r}")
        return x

    def parse(self, text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            return text

    def describe(self) -> str:
        return f"a finite number {self._where()}"

    def refused(self) -> list[tuple[Any, str | None]]:
        out: list[tuple[Any, str | None]] = [(math.nan, "nan"), ("x", "x"), (True, None)]
        if self.closed in ("right", "neither"):
            out.append((self.low, f"{self.low:g}"))
        else:
            out.append((self.low - 1.0, f"{self.low - 1.0:g}"))
        if self.high != math.inf:
            edge = self.high if self.closed in ("left", "neither") else self.high + 1.0
            out.append((edge, f"{edge:g}"))
        return out


@dataclass(frozen=True)
class Choice(Constraint):
    """One of ``values`` (``aliases`` map another accepted spelling onto one of them)."""

    values: tuple[Any, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    none: bool = False

    @property
    def metavar(self) -> str | None:  # type: ignore[override]
        return "{" + ",".join(map(str, (*self.values, *self.aliases))) + "}"

    def check(self, name: str, v: Any) -> Any:
        if v is None and self.none:
            return None
        if isinstance(v, str) and v in self.aliases:
            return self.aliases[v]
        if not isinstance(v, str) or v not in self.values:
            also = "".join(f" (or {a!r})" for a in self.aliases)
            raise InvalidInputError(
                f"{name} must be one of {', '.join(map(str, self.values))}{also}, got {v!r}"
            )
        return v

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.values)) + (", or None" if self.none else "")

    def refused(self) -> list[tuple[Any, str | None]]:
        return [("bogus", "bogus"), (1, None)]


@dataclass(frozen=True)
class Flag(Constraint):
    """True or False. On the command line: ``--name`` when the default is False, ``--no-name``
    when it is True."""

    def check(self, name: str, v: Any) -> bool:
        if not _is_bool(v):
            raise InvalidInputError(f"{name} must be True or False, got {v!r}")
        return bool(v)

    def describe(self) -> str:
        return "True or False"

    def refused(self) -> list[tuple[Any, str | None]]:
        return [("yes", None), (1, None)]


@dataclass(frozen=True)
class Tristate(Constraint):
    """None (decide by itself), True (require) or False (never); on the command line one
    flag: ``--no-name`` (False), or ``--name`` (True) where ``flag_sets`` is True."""

    flag_sets: bool = False

    def check(self, name: str, v: Any) -> bool | None:
        if v is not None and not _is_bool(v):
            raise InvalidInputError(f"{name} must be None, True or False, got {v!r}")
        return None if v is None else bool(v)

    def describe(self) -> str:
        return "None, True or False"

    def refused(self) -> list[tuple[Any, str | None]]:
        return [("yes", None)]


@dataclass(frozen=True)
class Widths(Constraint):
    """One hidden layer's width (a whole number >= 1), or a sequence of them, one per layer:
    an int stays an int, a sequence becomes a tuple. The empty sequence is no hidden layer
    (logistic regression, scikit-learn's ``hidden_layer_sizes=()``; on the command line an
    empty ``--hidden ""``)."""

    metavar: str | None = "H[,H...]"

    def check(self, name: str, v: Any) -> int | tuple[int, ...]:
        one = Whole(1)
        if isinstance(v, (list, tuple)):
            if len(v) > MAX_LAYERS:
                raise InvalidInputError(
                    f"{name} must be at most {MAX_LAYERS} layers deep, got {len(v)} layers: "
                    f"nnbin builds, saves and reads at most {MAX_LAYERS} hidden layers"
                )
            return tuple(one.check("every hidden width", h) for h in v)
        return int(one.check(name, v))

    def parse(self, text: str) -> Any:
        if not text.strip():
            return ()
        parts = [Whole(1).parse(p.strip()) for p in text.split(",")]
        return parts[0] if len(parts) == 1 else tuple(parts)

    def describe(self) -> str:
        return "a width >= 1, or a sequence of them (one per hidden layer; () for none)"

    def refused(self) -> list[tuple[Any, str | None]]:
        deep = (1,) * (MAX_LAYERS + 1)
        return [
            (0, "0"), ((4, 0), "4,0"), ((8, "x"), "8,x"), ((4, None), None), (2.5, "2.5"),
            (deep, ",".join(map(str, deep))),
        ]  # fmt: skip


@dataclass(frozen=True)
class Devices(Constraint):
    """False (one device), True (every device) or a device count >= 1."""

    metavar: str | None = "K"

    def check(self, name: str, v: Any) -> bool | int:
        if _is_bool(v):
            return bool(v)
        return int(Whole(1).check(name, v))

    def parse(self, text: str) -> Any:
        return Whole(1).parse(text)

    def describe(self) -> str:
        return "False, True (every device) or a device count >= 1"

    def refused(self) -> list[tuple[Any, str | None]]:
        return [(0, "0"), ("x", "x")]


@dataclass(frozen=True)
class Name(Constraint):
    """A name (a string), or None; which names exist is the registry's to say."""

    metavar: str | None = "NAME"

    def check(self, name: str, v: Any) -> str | None:
        if v is not None and not isinstance(v, str):
            raise InvalidInputError(
                f"{name} must be a backend's name (a string) or None, got {v!r}"
            )
        return v

    def describe(self) -> str:
        return "a registered backend's name, or None"

    def refused(self) -> list[tuple[Any, str | None]]:
        return [(1, None)]


@dataclass(frozen=True)
class Option:
    """One training option (a row of :data:`OPTIONS`)."""

    name: str
    constraint: Constraint
    default: Any
    help: str
    #: scikit-learn's ``MLPClassifier`` parameter for it, where there is one
    sklearn: str | None = None
    #: the command-line flag ("" derives ``--name-with-dashes``; None: none)
    flag: str | None = ""
    #: saved with every model (the seed job's options), not only when changed
    always_saved: bool = False
    #: scikit-learn's values -> nnbin's, where they differ (``solver='sgd'`` is "momentum")
    sklearn_values: Mapping[str, Any] = field(default_factory=dict)
    #: the help of a ``--no-name`` flag (what leaving the default does)
    negated_help: str = ""
    #: read by a run's loop and math: a field of :class:`Config`
    runs: bool = False
    #: (the option it depends on, the values of that option under which it acts): set away
    #: from its default anywhere else, it could not take effect, and is refused
    acts_with: tuple[str, tuple[Any, ...]] | None = None
    #: the environment variable that sets its default where the caller does not (read at
    #: each run), and the value that variable's text gives (None: the variable is declared
    #: here but read where it acts: ``NNBIN_CORE_GRAPHS=1`` makes cuda_graphs=None take the
    #: graphs wherever they apply, which no value of the option says)
    env: str | None = None
    from_env: Callable[[str], Any] | None = None

    def default_now(self) -> Any:
        """The default a run takes now: :attr:`env`'s value where it is set, else
        :attr:`default`."""
        text = os.environ.get(self.env, "").strip() if self.env else ""
        if not text or self.from_env is None:
            return self.default
        return self.from_env(text)

    @property
    def cli(self) -> str | None:
        """The flag as the command line spells it."""
        if self.flag is None:
            return None
        if self.flag:
            return self.flag
        dashed = self.name.replace("_", "-")
        sets_true = isinstance(self.constraint, Tristate) and self.constraint.flag_sets
        if isinstance(self.constraint, (Flag, Tristate)) and self.default is not False:
            return f"--{dashed}" if sets_true else f"--no-{dashed}"
        return f"--{dashed}"


def _table(*rows: Option) -> dict[str, Option]:
    return {o.name: o for o in rows}


#: the optimizers that take steps of the step size ``lr`` (all but L-BFGS)
STEPPED = ("adam", "momentum", "gd")

#: every option of :func:`nnbin.train`, in its signature's order
OPTIONS: dict[str, Option] = _table(
    Option("hidden", Widths(), 32,
           'hidden units, or one width per hidden layer: 64,32 ("": none)',
           sklearn="hidden_layer_sizes", always_saved=True),
    Option("lr", Real(0.0, closed="right"), 1.0, "step size", sklearn="learning_rate_init",
           always_saved=True, acts_with=("optimizer", STEPPED)),
    Option("steps", Whole(0, MAX_STEPS), 1000, "full-batch steps, or epochs with --batch-size",
           sklearn="max_iter", always_saved=True),
    Option("log_every", Whole(0, MAX_STEPS), 100,
           "record (and print) the loss every this many steps; 0: never", always_saved=True),
    Option("seed", Whole(0), 0,
           "seed of the initial weights, the shuffles and the held-out split (and of the "
           "seed data on the command line)", sklearn="random_state", always_saved=True,
           runs=True),
    Option("dtype", Choice(("float32", "float64"), none=True), None,
           "working dtype (default: the data's floating dtype, else the backend's)",
           sklearn="dtype"),
    Option("backend", Name(), None,
           "backend for host (NumPy) data (default: $NNBIN_BACKEND, else numpy)",
           sklearn="backend"),
    Option("data_parallel", Devices(), False,
           "split the samples over K devices, parameters replicated (jax only)",
           always_saved=True),
    Option("fused", Tristate(), None,
           "the fused CUDA step where it applies (None), always (True) or never (False: the "
           "array-API core)", always_saved=True,
           negated_help="run the array-API core even where a fused GPU step applies (cupy; "
           "torch/jax on CUDA with cupy installed)"),
    Option("fused_graphs", Flag(), True,
           "replay the fused step's plain steps as CUDA graphs (off: every step launched; "
           "$NNBIN_CUDA_GRAPHS=0 sets the default off)",
           negated_help="launch every fused CUDA step instead of replaying them as CUDA graphs "
           "(default off where $NNBIN_CUDA_GRAPHS=0)",
           env="NNBIN_CUDA_GRAPHS", from_env=lambda text: text != "0", runs=True,
           acts_with=("fused", (None, True))),
    Option("fast_math", Flag(), False,
           "compile the fused step's float32 kernels with --use_fast_math: approximate exp and "
           "division, 3x faster kernels, less exact ($NNBIN_CUDA_FAST_MATH=1 sets the default)",
           env="NNBIN_CUDA_FAST_MATH", from_env=lambda text: text == "1", runs=True,
           acts_with=("fused", (None, True))),
    Option("cuda_graphs", Tristate(flag_sets=True), None,
           "replay the array-API core's steps as CUDA graphs on CUDA arrays (torch, cupy); the "
           "default (None) runs them eagerly until a GPU run has verified the graphs (where "
           "$NNBIN_CORE_GRAPHS=1: wherever they apply)",
           sklearn="cuda_graphs", runs=True, env="NNBIN_CORE_GRAPHS",
           acts_with=("optimizer", STEPPED)),  # L-BFGS reads its loss every evaluation
    Option("activation", Choice(("sigmoid", "tanh", "relu", "identity"), {"logistic": "sigmoid"}),
           "sigmoid", "hidden-layer activation (of the initial parameters: a run takes the "
           "parameters' own)", sklearn="activation"),
    Option("init", Choice(("normal", "glorot", "he"), none=True), None,
           "initial weights (default: normal for sigmoid, glorot for tanh, he for relu)"),
    Option("optimizer", Choice(("gd", "momentum", "adam", "lbfgs")), "gd",
           "gradient descent, momentum (see --momentum, --nesterov), Adam, or L-BFGS (full "
           "batch, its own step sizes: --steps iterations, see --max-fun, --tol)",
           sklearn="solver", sklearn_values={"adam": "adam", "sgd": "momentum", "lbfgs": "lbfgs"},
           runs=True),
    Option("momentum", Real(0.0, 1.0), 0.9, "momentum", sklearn="momentum", runs=True,
           acts_with=("optimizer", ("momentum",))),
    Option("nesterov", Flag(), False, "Nesterov's momentum", sklearn="nesterovs_momentum",
           runs=True, acts_with=("optimizer", ("momentum",))),
    Option("beta1", Real(0.0, 1.0, closed="left"), 0.9, "Adam's first-moment decay",
           sklearn="beta_1", runs=True, acts_with=("optimizer", ("adam",))),
    Option("beta2", Real(0.0, 1.0, closed="left"), 0.999, "Adam's second-moment decay",
           sklearn="beta_2", runs=True, acts_with=("optimizer", ("adam",))),
    Option("epsilon", Real(0.0, closed="neither"), 1e-8, "Adam's epsilon", sklearn="epsilon",
           runs=True, acts_with=("optimizer", ("adam",))),
    Option("batch_size", Whole(1, none=True), None,
           "mini-batches of N samples, reshuffled (seeded) each epoch (default: full batch)",
           sklearn="batch_size", runs=True, acts_with=("optimizer", STEPPED)),
    Option("alpha", Real(0.0, closed="left"), 0.0, "L2 penalty, scikit-learn's scaling",
           sklearn="alpha", runs=True),
    Option("early_stopping", Flag(), False,
           "hold out --validation-fraction of the samples; stop when their accuracy stops "
           "improving (keeps the best parameters)", sklearn="early_stopping", runs=True,
           acts_with=("optimizer", STEPPED)),
    Option("validation_fraction", Real(0.0, 1.0, closed="neither"), 0.1,
           "the fraction held out by --early-stopping", sklearn="validation_fraction", runs=True,
           acts_with=("early_stopping", (True,))),
    Option("n_iter_no_change", Whole(1, none=True), None,
           "stop after more than N epochs without improvement by --tol (default: never; 10 "
           "with --early-stopping)", sklearn="n_iter_no_change", runs=True,
           acts_with=("optimizer", STEPPED)),
    Option("tol", Real(0.0, closed="left"), 1e-4, "the improvement the stopping rule asks for",
           sklearn="tol", runs=True),
    Option("steps_per_call", Whole(1, none=True), None,
           "steps one call of the backend holds, as Keras's steps_per_execution (default: "
           "sized to about 0.25 s of work, so Ctrl-C stops a run within about that)"),
    Option("shuffle", Flag(), True, "reshuffle the mini-batches each epoch", sklearn="shuffle",
           negated_help="take the mini-batches in the data's order (no reshuffle each epoch)",
           runs=True),
    Option("learning_rate", Choice(("constant", "invscaling", "adaptive")), "constant",
           "step-size schedule of gd and momentum (scikit-learn's): constant; invscaling: "
           "lr / (t + 1)^power_t from each epoch's start, t the samples seen; adaptive: "
           "lr / 5 each time the stopping rule fires, stopping once lr <= 1e-6",
           sklearn="learning_rate", flag="--lr-schedule", runs=True,
           acts_with=("optimizer", ("momentum", "gd"))),  # scikit-learn's: for 'sgd' only
    Option("power_t", Real(0.0, closed="left"), 0.5, "the exponent of --lr-schedule invscaling",
           sklearn="power_t", runs=True, acts_with=("learning_rate", ("invscaling",))),
    Option("max_fun", Whole(1), 15000,
           "the most loss-and-gradient evaluations an L-BFGS run makes (scikit-learn's: the "
           "run stops after the iteration that passes it)", sklearn="max_fun", runs=True,
           acts_with=("optimizer", ("lbfgs",))),
    Option("samples_seen", Whole(0), 0,
           "samples the runs this one continues have seen (scikit-learn's t_): where the "
           "invscaling schedule counts from", flag=None, runs=True,
           acts_with=("learning_rate", ("invscaling",))),
)  # fmt: skip

#: scikit-learn's name -> the option
BY_SKLEARN: dict[str, Option] = {o.sklearn: o for o in OPTIONS.values() if o.sklearn}


def check(name: str, value: Any, shown: str | None = None) -> Any:
    """``value`` checked against the option ``name`` (named ``shown`` in the error)."""
    return OPTIONS[name].constraint.check(shown or name, value)


def unknown(names: Iterable[str], known: Iterable[str], what: str) -> None:
    """One error for names that are not options, suggesting the closest one."""
    known = list(known)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidInputError(
                f"{what} has no option {name!r}{hint} (options: {', '.join(known)})"
            )


#: option -> (the option it depends on, the values of that option under which it acts),
#: from the table's ``acts_with``
ACTS_ONLY_WITH: dict[str, tuple[str, tuple[Any, ...]]] = {
    n: o.acts_with for n, o in OPTIONS.items() if o.acts_with is not None
}


def inert(values: Mapping[str, Any]) -> list[str]:
    """The options of ``values`` (every option resolved) set away from their default where
    they cannot take effect (``nesterov`` without the momentum optimizer, ...), in the order
    found: an option that acts only with one that cannot take effect cannot either
    (``power_t`` with ``learning_rate='invscaling'`` under Adam). A tristate set to False
    (never) is what happens anyway: only True (require) counts."""
    effective, found = dict(values), list[str]()

    def asks(n: str) -> bool:  # set by the caller (a default from the environment is not)
        if isinstance(OPTIONS[n].constraint, Tristate):
            return values[n] is True
        return bool(values[n] != OPTIONS[n].default_now())

    while True:
        more = [
            n
            for n, (on, acting) in ACTS_ONLY_WITH.items()
            if n not in found and asks(n) and effective[on] not in acting
        ]
        if not more:
            return found
        found += more
        effective.update({n: OPTIONS[n].default for n in more})


def resolve(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option, from ``given`` or its default, each checked (one InvalidInputError for
    the first bad value, for a name that is no option, or for an option set where it could
    not take effect: an option is never silently ignored)."""
    unknown(given, OPTIONS, "train()")
    values = {n: o.constraint.check(n, given.get(n, o.default_now())) for n, o in OPTIONS.items()}
    for n in inert(values):
        on, acting = ACTS_ONLY_WITH[n]
        want = " or ".join(_spelled(on, v) for v in acting)
        raise InvalidInputError(
            f"{_spelled(n, values[n])} cannot take effect with {_spelled(on, values[on])}: it "
            f"acts only with {want}; drop it, or set {want}"
        )
    if values["learning_rate"] == "adaptive" and not (
        values["early_stopping"] or values["n_iter_no_change"] is not None
    ):
        raise InvalidInputError(
            f"{_spelled('learning_rate', 'adaptive')} lowers the step size when the stopping "
            "rule fires, and this run has none: set n_iter_no_change (--n-iter-no-change) or "
            "early_stopping (--early-stopping), or another schedule"
        )
    return values


def _spelled(name: str, value: Any) -> str:
    """``name=value`` as the API writes it, and the command line's flag beside it."""
    o = OPTIONS[name]
    if o.cli is None:
        return f"{name}={value!r}"
    if isinstance(o.constraint, Flag):
        flag = o.cli if value != o.default else f"no {o.cli}"
    elif isinstance(o.constraint, Tristate):  # one flag, that sets one value
        flag = o.cli if value is o.constraint.flag_sets else f"no {o.cli}"
    else:
        flag = f"{o.cli} {value}"
    return f"{name}={value!r} ({flag})"


def from_sklearn(params: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`nnbin.train`'s options from scikit-learn's parameter names and values, each
    checked by the option's constraint under the name its user wrote (``max_iter``)."""
    unknown(params, BY_SKLEARN, "BinaryMLPClassifier")
    out: dict[str, Any] = {}
    for sk, value in params.items():
        o = BY_SKLEARN[sk]
        if o.sklearn_values:
            if not isinstance(value, str) or value not in o.sklearn_values:
                raise InvalidInputError(
                    f"{sk} must be one of {', '.join(o.sklearn_values)}, got {value!r}"
                )
            value = o.sklearn_values[value]
        out[o.name] = o.constraint.check(sk, value)
    return out


def saved(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings saved with a model: the seed job's options always, the others where
    they differ from the default (so a seed-job model's settings read as before)."""
    return {
        n: values[n]
        for n, o in OPTIONS.items()
        if n in values and (o.always_saved or values[n] != o.default)
    }


def signature(
    fn: Callable[..., Any], before: Iterable[str], after: Mapping[str, Any]
) -> inspect.Signature:
    """``fn``'s signature with every option as a keyword-only parameter (its default from
    the table) between the positional ``before`` and the keyword-only ``after``."""
    P = inspect.Parameter
    params = [P(n, P.POSITIONAL_OR_KEYWORD) for n in before]
    params += [P(n, P.KEYWORD_ONLY, default=o.default) for n, o in OPTIONS.items()]
    params += [P(n, P.KEYWORD_ONLY, default=d) for n, d in after.items()]
    return inspect.Signature(params, return_annotation=inspect.signature(fn).return_annotation)


def docs() -> str:
    """One line per option, for a docstring."""
    return "\n".join(
        f"    {n} ({o.constraint.describe()}; default {o.default!r}): {o.help}"
        + (f" [scikit-learn: {o.sklearn}]" if o.sklearn else "")
        for n, o in OPTIONS.items()
    )


# --- the command line ----------------------------------------------------------------------


def _argparse_type(option: Option) -> Callable[[str], Any]:
    """argparse's type for the flag: the text parsed, then checked as the API checks it (the
    message is the API's)."""
    c = option.constraint

    def parse(text: str) -> Any:
        try:
            return c.check(option.name, c.parse(text))
        except InvalidInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = option.name  # argparse names the type in some messages
    return parse


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """The flags of the options ``names`` (default: every option that has one), each with
    its help and default from the table."""
    for name in OPTIONS if names is None else names:
        o = OPTIONS[name]
        flag = o.cli
        if flag is None:
            continue
        shown = (
            ""
            if o.default is None
            else f" ({o.default:g})"
            if isinstance(o.default, float)
            else f" ({o.default})"
        )
        # an option whose default an environment variable may set is left out unless its
        # flag is given: the run reads the variable then (Option.default_now)
        unset: Any = argparse.SUPPRESS if o.env else None
        if isinstance(o.constraint, Flag):
            action = "store_true" if o.default is False else "store_false"
            text = o.help if o.default is False else o.negated_help
            kw = {"default": unset} if o.env else {}
            parser.add_argument(flag, dest=name, action=action, help=text, **kw)
        elif isinstance(o.constraint, Tristate):
            sets = o.constraint.flag_sets
            text = o.help if sets else o.negated_help
            parser.add_argument(
                flag, dest=name, action="store_const", const=sets, default=unset, help=text
            )
        else:
            default_shown = "" if isinstance(o.default, bool) else shown
            parser.add_argument(
                flag,
                dest=name,
                type=_argparse_type(o),
                default=o.default,
                metavar=o.constraint.metavar,
                help=o.help + default_shown,
            )


def from_args(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The options' values from parsed flags (every option with a flag, or ``names``)."""
    chosen = [n for n in (OPTIONS if names is None else names) if OPTIONS[n].cli is not None]
    return {n: getattr(args, n) for n in chosen if hasattr(args, n)}  # given, or not env-set


# --- a run's configuration: the checked values of the options its loop and math read -------

#: the options a :class:`Config` holds, in the table's order
FIELDS = tuple(n for n, o in OPTIONS.items() if o.runs)


class Values:
    """Option values read as attributes (plain ones: an optimizer update reads them every
    batch), immutable and hashable (a compiled run keys its cache on them);
    ``replace(**changes)`` gives a copy made by the class's constructor (Optimizer's checks
    the values; Config's holds what :func:`resolve` checked). The base of :class:`Config` and
    :class:`nnbin.Optimizer`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "__dict__", dict(values))

    if TYPE_CHECKING:  # the fields are the options': any name, as far as a type checker knows

        def __getattr__(self, name: str) -> Any: ...

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle: made anew from the values
        return (_remade, (type(self), dict(vars(self))))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use .replace(...)")

    def replace(self, **changes: Any) -> Any:
        return type(self)(**{**vars(self), **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(tuple(vars(self).items()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({shown})"


def _remade(kind: type[Values], values: Mapping[str, Any]) -> Values:
    return kind(**values)


class Config(Values):
    """The values of :data:`FIELDS`, read as attributes (``config.batch_size``); the table's
    defaults for those not given."""

    def __init__(self, **given: Any) -> None:
        unknown(given, FIELDS, "Config")
        super().__init__({n: given.get(n, OPTIONS[n].default_now()) for n in FIELDS})

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Config:
        """A run's configuration from all its checked options (:func:`nnbin.options.resolve`)."""
        return cls(**{n: options[n] for n in FIELDS})

    @property
    def stops(self) -> bool:
        """Whether a stopping rule reads the loss or the validation score every epoch."""
        return bool(self.early_stopping or self.n_iter_no_change is not None)

    @property
    def plain_descent(self) -> bool:
        """Full-batch gradient descent at a constant step size with no stopping rule: the
        seed job's loop (any activation, depth and penalty)."""
        return bool(
            self.optimizer == "gd"
            and self.batch_size is None
            and not self.stops
            and self.learning_rate == "constant"
        )

    @property
    def patience(self) -> int:
        """Epochs without improvement the stopping rule allows (10 with early stopping and
        no ``n_iter_no_change``, as scikit-learn's)."""
        return 10 if self.n_iter_no_change is None else int(self.n_iter_no_change)


#: the options that act only with the fused step (their rows say so), at their defaults:
#: what a compiled run's or a CUDA graph's cache key leaves out
FUSED_ONLY = {n: o.default for n, o in OPTIONS.items() if o.acts_with and o.acts_with[0] == "fused"}

#: the seed job's configuration: the table's defaults, whatever the environment says
SEED = Config(**{n: OPTIONS[n].default for n in FIELDS})
