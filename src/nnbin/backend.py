"""Backends: the binding of one array library, and the registry that reads ``NNBIN_BACKEND``.

A backend is a small object that knows one array library: its namespace, its dtypes and
devices, how to move host (NumPy) arrays to its device and back, how to wait for queued
work (``synchronize``, for honest timing), how many rows a block of the gradient pass
takes, and what the training step runs in (``step_context``: torch's autograd off) and
settles to (``settle``: Dask persists). It may also offer runners beside the loop (a
fused step, CUDA-graph replays, JAX's compiled chunk). The math is :mod:`nnbin.model` and
:mod:`nnbin.optim`; the training loop is :mod:`nnbin.loop`; neither lives here. Any
array-API library no backend names gets :class:`ArrayApiBackend`'s defaults.

Backends register through the entry-point group ``nnbin.backends``; the built-in ones
live in the ``nnbin_backends`` package (``backends/`` in the source tree). Loading a
backend imports its library; nothing here imports one otherwise, so selecting
``numpy`` never imports cupy, jax or torch.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from importlib.metadata import entry_points
from typing import Any, ClassVar

import array_api_compat
import numpy as np

from . import lbfgs
from .errors import (
    BackendUnavailableError,
    InvalidInputError,
    MixedArraysError,
    NnbinError,
    UnknownBackendError,
    warn,
)
from .model import (
    Array,
    Params,
    initial_weights,
    is_sparse,
    like,
    namespace,
    take_rows,
    value_and_grads,
)
from .validate import host_memory_fits, parameter_count

ENV_VAR = "NNBIN_BACKEND"
DEFAULT_BACKEND = "numpy"
ENTRY_POINT_GROUP = "nnbin.backends"


@dataclass(frozen=True)
class About:
    """What a backend is, read without importing its library (``nnbin backends`` lists the
    backends whose package is not installed)."""

    #: import name of the array library, looked up with ``importlib.util.find_spec``
    #: (default: the backend's name)
    package: str = ""
    #: the pip extra that installs it: ``pip install 'nnbin[<extra>]'`` (default: the name)
    extra: str = ""
    #: how training runs many epochs, as logs and the benchmark show it
    loop: str = "python loop"
    #: working memory of one step in (N, H) arrays (measured by ``nnbin bench``): training
    #: refuses, before allocating, what cannot fit in host memory
    memory_nh: float = 4.0
    #: works through the data chunk by chunk (Dask): no in-memory estimate applies
    out_of_core: bool = False
    #: trains on a SciPy sparse X (CSR) kept sparse on the host, the core densifying one
    #: block of rows at a time (:func:`nnbin.model.dense`): numpy
    takes_sparse: bool = False
    #: in ``nnbin bench``'s default list of backends (Dask's per-step scheduling is not)
    in_default_bench: bool = True
    #: the library's buffers are NumPy's, which tracemalloc sees (peak memory a step)
    memory_traced: bool = False
    #: the command line may keep compiled runs between commands (JAX's persistent cache)
    has_persistent_cache: bool = False


#: what a backend of the older protocol defined on itself, and where it goes now
MOVED = {
    **dict.fromkeys(
        ("version", "devices", "gpu_devices", "enable_dtype", "use_persistent_cache",
         "out_of_memory", "release_memory", "step_peak_bytes", "full_precision",
         "forbid_host_sync", "last_temp_bytes"),
        "a method of its Tools (the tools property)",
    ),
    **dict.fromkeys(
        ("has_fused", "fused_refusal", "fused_applies", "fused_run", "fused_loss_and_grads",
         "loss", "evaluator", "distribute", "stepper_class", "graph_stepper_class",
         "graph_refusal", "core_loop"),
        "its Runners (the runners property)",
    ),
    "on_device": "step_context(X)",
    "run": "nnbin.loop.run(backend, ...), which no backend overrides (a compiled way to run "
    "is a runner: its Runners.compiled)",
    "stepper": "its Runners (compiled, graphs)",
    "init_params": "nnbin.backend.init_params(backend, ...)",
    "place": "nnbin.backend.place(backend, ...)",
}  # fmt: skip


class Backend:
    """The binding of one array library: what the loop and the public functions ask of it.
    Subclasses import their library in ``__init__``; a library no backend names gets these
    defaults (:class:`ArrayApiBackend`). What a backend runs beside the eager core is its
    :attr:`runners`; the hooks only the command line, the benchmark and the conformance
    suite call are its :attr:`tools`."""

    name: ClassVar[str]
    about: ClassVar[About] = About()
    default_dtype: ClassVar[str] = "float64"
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "float64")
    #: the library's array-API namespace
    xp: Any

    def __init_subclass__(
        cls, *, runners: type[Runners] | None = None, tools: type[Tools] | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        """A backend that names itself gets its package and pip extra from its name unless
        its :class:`About` says otherwise (``numpy``'s package is ``numpy``, its extra
        ``numpy``). ``runners`` and ``tools``: its :class:`Runners` and :class:`Tools`
        subclasses (``class TorchBackend(Backend, runners=TorchRunners, tools=...)``)."""
        super().__init_subclass__(**kwargs)
        for kind, given in (("_runners", runners), ("_tools", tools)):
            if given is not None:
                setattr(cls, kind, given)
        moved = {f.name: "its about = About(...)" for f in fields(About)} | MOVED
        misplaced = sorted(set(cls.__dict__) & set(moved))
        own = cls.__dict__.get("step_context")
        if own is not None and len(inspect.signature(own).parameters) < 2:
            misplaced.append("step_context")
            moved["step_context"] = "step_context(self, X) takes the run's data X now"
        if misplaced:  # a backend written for the older protocol: said, never ignored
            where = "; ".join(f"{name}: {moved[name]}" for name in misplaced)
            raise TypeError(
                f"{cls.__qualname__} defines what the Backend protocol keeps elsewhere now "
                f"({where})"
            )
        if "name" in cls.__dict__:
            about = cls.about
            cls.about = replace(
                about, package=about.package or cls.name, extra=about.extra or cls.name
            )

    @classmethod
    def owns(cls, x: object) -> bool:
        """Whether ``x`` is an array of this backend's library, never importing it (a
        backend sets ``is_array`` to array-api-compat's test, ``is_numpy_array`` and its
        kind, which looks in ``sys.modules``), unless it overrides this."""
        test = getattr(cls, "is_array", None)
        if test is None:
            raise NotImplementedError(
                f"{cls.__qualname__} must set is_array (array-api-compat's is_*_array test, "
                "as a staticmethod) or override owns(x)"
            )
        return bool(test(x))

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        """Move a host (NumPy) array to this backend, cast to ``dtype``."""
        return self.xp.asarray(np.asarray(a, dtype=dtype), device=device)

    def to_host(self, x: Any) -> np.ndarray:
        """A NumPy copy of ``x`` (a device-to-host transfer on GPU backends)."""
        return np.asarray(x)

    def synchronize(self, x: Any) -> None:
        """Block until the work that produces ``x`` is done (a no-op on eager CPU backends)."""

    def block_rows(self, n_samples: int, hidden: int) -> int | None:
        """Samples per block in a gradient pass on the host, or None for the whole batch at
        once (data on a GPU always run whole).

        Eager CPU libraries gain from working through the samples in cache-sized blocks
        (fewer, smaller, reused temporaries); compiled and GPU libraries do not.
        """
        return None

    def step_context(self, X: Any) -> Any:
        """A context a run on the data ``X`` runs in (torch: autograd off, the backward pass
        being nnbin's own; cupy: X's GPU the current one); none by default."""
        return contextlib.nullcontext()

    def settle(self, tree: tuple[Any, ...]) -> tuple[Any, ...]:
        """``tree`` (tuples of arrays) made concrete where the library is lazy (Dask:
        persisted, so a graph never grows across iterations); as it is elsewhere."""
        return tree

    def take_rows(self, a: Any, rows: np.ndarray) -> Any:
        """The rows of ``a`` named by host row numbers (a shuffle, a held-out split)."""
        return take_rows(a, rows)

    @functools.cached_property
    def runners(self) -> Runners:
        """What this backend runs beside the eager core (none by default)."""
        kind: type[Runners] = getattr(type(self), "_runners", Runners)
        return kind(self)

    @functools.cached_property
    def tools(self) -> Tools:
        """The hooks of the command line, the benchmark and the conformance suite."""
        kind: type[Tools] = getattr(type(self), "_tools", Tools)
        return kind(self)


class Runners:
    """What a backend runs beside the array-API core's eager loop, each a plug-in that
    :func:`nnbin.loop.run` chooses among: by default none, and the full-batch evaluations
    eagerly. A backend with more (cupy, torch, jax) subclasses this."""

    #: the fused step (``refusal(params, X, config)``, ``run(...)``, ``loss_and_grads``),
    #: None where there is none (cupy has one; torch and jax reach it through DLPack)
    fused: Any = None
    #: how results name the core's loop where the backend's ``loop`` names more
    core_loop = "python loop"

    def __init__(self, be: Backend) -> None:
        self.be = be
        #: why there is no fused step, where :attr:`fused` is None
        self.no_fused = f"the {be.name} backend has no fused step"

    def compiled(self, run: Any) -> Any:
        """The runner that advances the :class:`nnbin.loop.Run` ``run`` compiled (JAX's),
        or None: the eager core."""
        return None

    def graphs(self, X: Any) -> Any:
        """The factory of the runner that replays the core's epochs on ``X`` as CUDA graphs
        (``factory(run)``), or why there is none (a string)."""
        return f"the {self.be.name} backend has no CUDA-graph path (torch on CUDA and cupy have)"

    def loss(self, params: Params, X: Any, y: Any, alpha: Any, weights: Any, rows: Any) -> Any:
        """The full-batch loss (the penalty included) at ``params``, a 0-d array: the loss
        a run reports after its last step (JAX compiles it once per bucket of rows)."""
        loss, _ = value_and_grads(
            params, X, y, block_rows=rows, alpha=alpha, weights=weights
        )  # fmt: skip
        return loss

    def evaluator(
        self, X: Any, y: Any, alpha: Any, weights: Any, rows: int | None
    ) -> Callable[[Params, Any, Any], tuple[Any, Any, Any]]:
        """L-BFGS's evaluation of the full-batch loss and gradient at a trial point,
        :func:`nnbin.lbfgs.evaluate` on :func:`~nnbin.model.value_and_grads` (JAX compiles
        it, X, y and the step its arguments)."""

        def objective(params: Params) -> tuple[Any, Params]:
            return value_and_grads(params, X, y, block_rows=rows, alpha=alpha, weights=weights)

        return functools.partial(lbfgs.evaluate, objective)

    def distribute(
        self, params: Params, X: Any, y: Any, n_devices: int | None
    ) -> tuple[Params, Any, Any]:
        """Place the samples across ``n_devices`` devices (None: all) for data-parallel
        training, parameters replicated. Backends without it say so."""
        raise BackendUnavailableError(
            f"the {self.be.name!r} backend has no data-parallel training; use the jax backend"
        )


class Tools:
    """The hooks that only the command line, the benchmark and the conformance suite call,
    each with the default a backend without it gets (so nothing looks a hook up by name)."""

    #: the compiler's temporary buffer size of the last compiled run (None: not known)
    last_temp_bytes: int | None = None

    def __init__(self, be: Backend) -> None:
        self.be = be

    def version(self) -> str:
        """The version of the array library (imported by then)."""
        return str(importlib.import_module(self.be.about.package).__version__)

    def devices(self) -> list[str]:
        return ["cpu"]

    def gpu_devices(self) -> list[str]:
        """The GPUs this backend can run on here (empty on CPU-only machines)."""
        return []

    def enable_dtype(self, dtype: str) -> None:
        """Make ``dtype`` usable in this process, for programs that own their process (the
        command line, the benchmark). The API never calls it: JAX's 64-bit switch, for one,
        changes the whole process, so library users flip it themselves."""

    def use_persistent_cache(self, folder: str) -> None:
        """Keep compiled runs in ``folder``, process-wide (where ``has_persistent_cache``)."""

    def out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this library's out-of-memory error (the benchmark skips the cell)."""
        return isinstance(exc, MemoryError)

    def release_memory(self) -> None:
        """Give cached device memory back between benchmark cells."""

    def step_peak_bytes(self, run_one_step: Any) -> int | None:
        """The device memory one step takes at its peak (None: not measurable here)."""
        return None

    def full_precision(self) -> None:
        """float64 usable and float32 matmuls at full precision, process-wide (no TF32), for
        the conformance suite."""

    def forbid_host_sync(self, x: Any) -> Any:
        """A context in which a host synchronisation on ``x``'s device raises (None: this
        library cannot say), for the conformance suite's check that a step never waits."""
        return None


def init_params(
    be: Backend,
    n_features: int,
    hidden: int | tuple[int, ...],
    seed: int = 0,
    *,
    dtype: str | None = None,
    device: Any = None,
    activation: str = "sigmoid",
    init: str | None = None,
) -> Any:
    """The initial parameters (:func:`nnbin.model.initial_weights`, drawn on the host in
    float64) cast to ``dtype`` (default: the backend's) and placed on ``device``."""
    dtype = dtype or be.default_dtype
    count = parameter_count(n_features, hidden)
    host_memory_fits(  # drawn in float64, then cast: about two copies on the host
        16 * count, "the initial parameters would need", f"{count:,} numbers",
        "use fewer hidden units",
    )  # fmt: skip
    host = initial_weights(n_features, hidden, seed, activation=activation, init=init)
    return like(host, (be.asarray(a, dtype, device) for a in host))


def place(be: Backend, X: Any, y: Any, w: Any, dtype: str) -> tuple[Array, Array, Array | None]:
    """X, y and the sample weights ``w`` (None: none) on the backend in ``dtype``, once,
    copying only host (NumPy) data (a SciPy sparse X stays sparse, cast on the host)."""
    narrowed = dtype == "float32" and "float64" in str(getattr(X, "dtype", ""))
    if isinstance(X, np.ndarray) or is_sparse(X):
        values = X.data if is_sparse(X) else X  # a sparse matrix's stored values
        if narrowed and np.max(np.abs(values), initial=0.0) > np.finfo(np.float32).max:
            raise _too_big_for_float32()
        put = be.asarray
        Xb = X.astype(dtype, copy=False) if is_sparse(X) else put(X, dtype)  # sparse stays so
        return Xb, put(y, dtype), None if w is None else put(w, dtype)
    xp = namespace(X, y)

    def cast(a: Any) -> Any:
        return xp.astype(a, getattr(xp, dtype), copy=False)  # no copy when already right

    X, y = cast(X), cast(y)
    if narrowed and not bool(xp.all(xp.isfinite(X))):  # one check, only when narrowing
        raise _too_big_for_float32()
    return X, y, None if w is None else cast(w)


def cache_block_rows(hidden: int, itemsize: int = 8) -> int:
    """Rows per block for eager CPU libraries: each (rows, H) temporary stays under glibc's
    default 128 KiB mmap threshold, so it is reused from the heap instead of mapped and
    page-faulted in anew each time (measured 1.7x on the seed job), and it stays in L2."""
    return max(16, (124 * 1024) // (itemsize * max(hidden, 1)))


@functools.cache
def _registered() -> dict[str, str]:
    """Backend name -> ``module:Class`` for every registered backend."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if "numpy" not in found:  # running from a source tree: no metadata, read pyproject
        found = {**_source_tree_backends(), **found}
    return found


def _source_tree_backends() -> dict[str, str]:
    """The entry points pyproject.toml declares, for ``PYTHONPATH=src`` runs of a source
    checkout, with ``backends/`` made importable as ``nnbin_backends`` (what an install does
    through pyproject's package-dir). A built-in backend is named in pyproject only."""
    import sys
    import tomllib

    root = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
    try:
        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            project = tomllib.load(f)
        table = dict(project["project"]["entry-points"][ENTRY_POINT_GROUP])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return {}
    folder = os.path.abspath(os.path.join(root, "backends"))
    init = os.path.join(folder, "__init__.py")
    if (
        "nnbin_backends" not in sys.modules
        and not importlib.util.find_spec("nnbin_backends")
        and os.path.exists(init)
    ):
        spec = importlib.util.spec_from_file_location(
            "nnbin_backends", init, submodule_search_locations=[folder]
        )
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules["nnbin_backends"] = module
            spec.loader.exec_module(module)
    return table


def available_names() -> list[str]:
    """Names of every registered backend, installed or not."""
    return sorted(_registered())


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name`` (imports its module, not its array library)."""
    table = _registered()
    if name not in table:
        raise UnknownBackendError(
            f"unknown backend {name!r}; choose one of: {', '.join(sorted(table))} "
            f"(set {ENV_VAR} or pass backend=)"
        )
    module_name, _, attr = table[name].partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module_name), attr)
    return cls


def is_installed(name: str) -> bool:
    """Whether the backend's array library can be imported (checked without importing it)."""
    return importlib.util.find_spec(backend_class(name).about.package) is not None


_cache: dict[str, Backend] = {}


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``, or the one ``NNBIN_BACKEND`` names, or numpy.

    The environment variable is read at each call, not at import time.
    Raises UnknownBackendError (a ValueError) for an unknown name and
    BackendUnavailableError when the backend's package or device is missing.
    """
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or DEFAULT_BACKEND
    name = name.lower()
    if name not in _cache and name.startswith(GENERIC_PREFIX):  # a library already imported
        module = sys.modules.get(name.removeprefix(GENERIC_PREFIX))
        if module is not None:
            return array_api_backend(module)
    if name not in _cache:
        cls = backend_class(name)
        if importlib.util.find_spec(cls.about.package) is None:
            raise BackendUnavailableError(
                f"the {name!r} backend needs the {cls.about.package!r} package: "
                f"pip install 'nnbin[{cls.about.extra}]'"
            )
        _cache[name] = cls()
    return _cache[name]


class ArrayApiBackend(Backend):
    """Any array-API library that no registered backend binds, with the defaults: data stay
    where they are, to the host through DLPack (else ``numpy.asarray``), nothing to wait
    for, the eager core. One subclass per namespace (:func:`array_api_backend`), named
    ``array-api:<namespace>``; it never imports a library."""

    @classmethod
    def owns(cls, x: object) -> bool:
        try:
            return array_api_compat.array_namespace(x) is cls.xp
        except TypeError:
            return False

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        host = np.asarray(a, dtype=dtype)
        return self.xp.asarray(host, dtype=getattr(self.xp, dtype), device=device)

    def to_host(self, x: Any) -> np.ndarray:
        try:
            return np.from_dlpack(x)
        except (AttributeError, TypeError, BufferError, RuntimeError):  # no (CPU) DLPack
            return np.asarray(x)


GENERIC_PREFIX = "array-api:"


def array_api_backend(xp: Any) -> Backend:
    """The :class:`ArrayApiBackend` of the namespace ``xp``, one per namespace."""
    name = f"{GENERIC_PREFIX}{xp.__name__}"
    if name.lower() not in _cache:
        dtypes = tuple(d for d in ("float32", "float64") if hasattr(xp, d))
        if not dtypes:
            raise InvalidInputError(f"the array library {xp.__name__} has no float32 or float64")
        attrs = {"name": name, "about": About(package=xp.__name__.partition(".")[0]), "xp": xp}
        attrs.update(dtypes=dtypes, default_dtype=dtypes[-1])
        _cache[name.lower()] = type("ArrayApiBackend", (ArrayApiBackend,), attrs)()
    return _cache[name.lower()]


def backend_of(x: object) -> Backend:
    """The backend whose library made the array ``x``: a registered backend's, else, for
    any other array-API array, the :class:`ArrayApiBackend` of its namespace.

    Each backend recognises its arrays without importing its library (array-api-compat's
    ``is_*_array`` helpers look in ``sys.modules``), so this never imports a library.
    """
    for name in _registered():
        if backend_class(name).owns(x):
            return get_backend(name)
    try:
        xp = array_api_compat.array_namespace(x)
    except TypeError:
        raise InvalidInputError(
            f"nnbin does not know arrays of type {type(x).__module__}.{type(x).__qualname__}: "
            "pass a NumPy array (numpy.asarray) or an array of any library with the Python "
            f"array API (__array_namespace__; registered: {', '.join(available_names())})"
        ) from None
    return array_api_backend(xp)


def backend_and_dtype(X: Any, backend: str | None, dtype: str | None) -> tuple[Backend, str]:
    """The backend that trains on X (checked by validate.training_data: one library, one
    device) and the working dtype. Host (NumPy) data go to ``backend``; other arrays stay
    with their library, and naming another backend for them is an error. SciPy sparse X
    are host data for a backend that keeps them sparse (``takes_sparse``: numpy)."""
    if isinstance(X, np.ndarray) or is_sparse(X):
        be = get_backend(backend)
        if is_sparse(X) and not be.about.takes_sparse:
            raise InvalidInputError(
                f"X is a SciPy sparse matrix, which the numpy backend trains on (kept sparse, "
                f"densified a block of rows at a time); for the {be.name} backend pass dense "
                "data: X.toarray()"
            )
    else:
        be = backend_of(X)
        if backend is not None and get_backend(backend) is not be:
            raise MixedArraysError(
                f"X is a {be.name} array but backend={backend!r} was asked for; nnbin never "
                f"copies between libraries: convert the data first, or drop backend="
            )
    if dtype is None:
        # The data's own floating dtype, unless they are host data bound for another backend.
        kind = str(getattr(X, "dtype", ""))
        own = not isinstance(X, np.ndarray) or be.owns(X)  # sparse X: the numpy backend's
        dtype = kind.rpartition(".")[2] if own and "float" in kind else be.default_dtype
        if kind == "float64" and dtype == "float32":
            _say_narrowed(be)
    if dtype not in be.dtypes:
        raise ValueError(f"the {be.name} backend supports {', '.join(be.dtypes)}, not {dtype!r}")
    return be, dtype


#: the backends whose float64-to-float32 fallback was said in this process
_NARROWED: set[str] = set()


def _say_narrowed(be: Backend) -> None:
    """Once a process and backend: float64 host data are about to train in float32 because
    the backend cannot hold float64 now (JAX with its 64-bit mode off) — never silently."""
    if be.name in _NARROWED:
        return
    try:
        be.asarray(np.zeros(1), "float64")
    except NnbinError as e:
        _NARROWED.add(be.name)
        warn(
            f"float64 data train in float32 on the {be.name} backend (said once): {e}; or "
            "pass dtype='float32' to choose it",
            UserWarning,
        )


def _too_big_for_float32() -> Exception:
    return InvalidInputError(
        "X holds values beyond float32's range (about ±3.4e38): they would become infinite "
        "in float32; train in float64 (dtype='float64') or rescale the features"
    )
