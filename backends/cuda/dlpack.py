"""The DLPack bridge: the torch and jax backends' CUDA arrays train with the cupy backend's
fused step (``backends/cupy.py``), reached through DLPack with no copies either way, and the
parameters come back as arrays of the caller's library on the same device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from nnbin.backend import Backend
from nnbin.errors import TrainingDivergedError
from nnbin.loop import OnLog, RunResult
from nnbin.model import Params
from nnbin.options import SEED, Config

from ..cupy import CupyBackend
from .driver import Sigmoid
from .kernels import scope_refusal


class DlpackFused:
    """The fused step for another library's CUDA arrays (PyTorch, JAX): the arrays reach
    the cupy kernels through DLPack with no copy, and the parameters come back the same way
    as arrays of that library on the same device."""

    def __init__(self, to_native: Callable[[Any], Any]) -> None:
        self.to_native = to_native

    @staticmethod
    def cupy_backend() -> CupyBackend | None:
        from nnbin.backend import get_backend, is_installed
        from nnbin.errors import NnbinError

        if not is_installed("cupy"):
            return None
        try:
            be = get_backend("cupy")
        except NnbinError:
            return None
        return be if isinstance(be, CupyBackend) else None

    def wrap(self, be: CupyBackend, params: Params, X: Any, y: Any) -> tuple[Params, Any, Any]:
        view = be._cupy.from_dlpack
        return Sigmoid(*(view(p) for p in params)), view(X), view(y)

    def native(self, params: Params) -> Params:
        return Sigmoid(*(self.to_native(p) for p in params))


class FusedThroughDlpack(Backend):
    """A backend whose CUDA arrays can reach cupy's fused step (torch, jax): ``_dlpack`` (a
    DlpackFused, or None where there is no CUDA GPU or no cupy) and ``_on_gpu(X)``. The
    fused-or-core decision is :meth:`nnbin.Backend.run`'s; this says where the fused step
    applies and runs it through the bridge."""

    _dlpack: DlpackFused | None

    def _reach_fused(self, from_dlpack: Any, gpu: bool) -> None:
        """Arrays on a CUDA GPU (``gpu``: this machine has one) reach cupy's fused step
        through DLPack (``from_dlpack``: the library's), where cupy is installed."""
        from nnbin.backend import is_installed

        self._dlpack = DlpackFused(from_dlpack) if gpu and is_installed("cupy") else None
        self.has_fused = self._dlpack is not None

    def _on_gpu(self, X: Any) -> bool:
        raise NotImplementedError

    def _cupy_views(self, params: Params, X: Any, y: Any) -> tuple[Any, Params, Any, Any]:
        assert self._dlpack is not None
        be = self._dlpack.cupy_backend()
        assert be is not None
        return (be, *self._dlpack.wrap(be, params, X, y))

    def fused_refusal(self, params: Params, X: Any, config: Config = SEED) -> str | None:
        self.last_temp_bytes = None  # a fused run has no compiler buffers to report
        why = scope_refusal(params, config)
        if why is not None:
            return why
        if self._dlpack is None or not self._on_gpu(X) or self._dlpack.cupy_backend() is None:
            return (
                f"{self.name}'s fused step (cupy's kernels through DLPack) needs arrays on one "
                "CUDA GPU and cupy: pip install 'nnbin[cupy]'"
            )
        be, pc, Xc, _ = self._cupy_views(params, X, X)
        with be.on_device(Xc):
            return be.fused_refusal(pc, Xc, config)

    def fused_loss_and_grads(self, params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        """The fused step's loss and gradients (cupy's kernels, through DLPack)."""
        be, pc, Xc, yc = self._cupy_views(params, X, y)
        assert self._dlpack is not None
        loss, grads = be.fused_loss_and_grads(pc, Xc, yc)
        return self._dlpack.to_native(loss), self._dlpack.native(grads)

    def fused_run(
        self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
        on_log: OnLog | None,
    ) -> RunResult:  # fmt: skip
        be, pc, Xc, yc = self._cupy_views(params, X, y)
        assert self._dlpack is not None
        native = self._dlpack.native
        with be.on_device(Xc):
            try:
                result = be.fused_run(
                    pc, Xc, yc, lr=lr, steps=steps, log_every=log_every, on_log=on_log
                )
            except TrainingDivergedError as exc:
                exc.params = native(cast(Params, exc.params))
                raise
        result.params = native(result.params)
        if result.last_finite is not None:
            step, good = result.last_finite
            result.last_finite = (step, native(good))
        result.loop += " (through DLPack, no copies)"
        return result
