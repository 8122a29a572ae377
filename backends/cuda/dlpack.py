"""The DLPack bridge: the torch and jax backends' CUDA arrays train with the cupy backend's
fused step (``backends/cupy.py``), reached through DLPack with no copies either way, and the
parameters come back as arrays of the caller's library on the same device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from nnbin.backend import Backend
from nnbin.config import Config
from nnbin.errors import BackendUnavailableError, TrainingDivergedError
from nnbin.loop import OnLog, RunResult
from nnbin.model import Params

from ..cupy import CupyBackend
from .kernels import scope_refusal


class DlpackFused:
    """The fused step for another library's CUDA arrays (PyTorch, JAX): the arrays reach
    the cupy kernels through DLPack with no copy, and the parameters come back the same way
    as arrays of that library on the same device. Used by those backends' ``run`` where
    cupy is installed and the fused step applies; elsewhere they run their own path."""

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

    def _wrap(self, be: CupyBackend, params: Params, X: Any, y: Any) -> tuple[Params, Any, Any]:
        view = be._cupy.from_dlpack
        return Params(*(view(p) for p in params)), view(X), view(y)

    def applies(self, params: Params, X: Any) -> bool:
        be = self.cupy_backend()
        if be is None:
            return False
        pc, Xc, _ = self._wrap(be, params, X, X)
        with be.on_device(Xc):
            return be.fused_applies(pc, Xc)

    def loss_and_grads(self, params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        be = self.cupy_backend()
        assert be is not None
        loss, grads = be.fused_loss_and_grads(*self._wrap(be, params, X, y))
        return self.to_native(loss), Params(*(self.to_native(g) for g in grads))

    def run(
        self,
        params: Params,
        X: Any,
        y: Any,
        *,
        lr: float,
        steps: int,
        log_every: int,
        on_log: OnLog | None,
        fused: bool | None,
    ) -> RunResult | None:
        """The fused run, or None where it does not apply (``fused=True``: an error)."""
        be = self.cupy_backend() if fused is not False else None
        if be is None:
            if fused:
                raise BackendUnavailableError(
                    "the fused step needs CUDA arrays and cupy: pip install 'nnbin[cupy]'"
                )
            return None
        pc, Xc, yc = self._wrap(be, params, X, y)
        with be.on_device(Xc):
            if not fused and not be.fused_applies(pc, Xc):
                return None
            try:  # with fused=True where it does not apply, cupy's run says why
                result = be._run(
                    pc, Xc, yc, lr=lr, steps=steps, log_every=log_every, on_log=on_log, fused=True
                )
            except TrainingDivergedError as exc:
                exc.params = Params(*(self.to_native(p) for p in cast(Params, exc.params)))
                raise
        native = self.to_native
        result.params = Params(*(native(p) for p in result.params))
        if result.last_finite is not None:
            step, good = result.last_finite
            result.last_finite = (step, Params(*(native(p) for p in good)))
        result.loop += " (through DLPack, no copies)"
        return result


class FusedThroughDlpack(Backend):
    """A backend whose CUDA arrays can reach cupy's fused step (torch, jax): ``_dlpack`` (a
    DlpackFused, or None where there is no CUDA GPU or no cupy) and ``_on_gpu(X)``. Its
    ``run`` takes the fused step where it applies (unless ``fused=False``), else the
    backend's own stepper in the one loop (:meth:`nnbin.Backend.run`)."""

    _dlpack: DlpackFused | None

    def run(
        self,
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
    ) -> RunResult:
        self.last_temp_bytes = None  # a fused run has no compiler buffers to report
        scope = scope_refusal(params, config)
        if scope is not None and fused:
            raise BackendUnavailableError(
                f"no fused step for this run: {scope}; fused=None (the default) runs "
                f"{self.name}'s own path instead"
            )
        if scope is None:
            result = self._fused_run(
                params, X, y, lr=lr, steps=steps, log_every=log_every, on_log=on_log, fused=fused
            )
            if result is not None:
                return result
        return super().run(
            params,
            X,
            y,
            lr=lr,
            steps=steps,
            log_every=log_every,
            on_log=on_log,
            config=config,
            validation=validation,
            state=state,
            steps_per_call=steps_per_call,
        )

    def _on_gpu(self, X: Any) -> bool:
        raise NotImplementedError

    def fused_applies(self, params: Params, X: Any) -> bool:
        return bool(
            self._dlpack is not None and self._on_gpu(X) and self._dlpack.applies(params, X)
        )

    def fused_loss_and_grads(self, params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        """The fused step's loss and gradients (cupy's kernels, through DLPack)."""
        assert self._dlpack is not None
        return self._dlpack.loss_and_grads(params, X, y)

    def _fused_run(
        self,
        params: Params,
        X: Any,
        y: Any,
        *,
        lr: float,
        steps: int,
        log_every: int,
        on_log: OnLog | None,
        fused: bool | None,
    ) -> RunResult | None:
        """The fused run, or None where the backend's own path runs instead."""
        if fused is False:
            return None
        if self._dlpack is None or not self._on_gpu(X):
            if fused:
                raise BackendUnavailableError(
                    f"{self.name}'s fused step (cupy's kernels through DLPack) needs arrays "
                    "on one CUDA GPU and cupy: pip install 'nnbin[cupy]'"
                )
            return None
        return self._dlpack.run(
            params, X, y, lr=lr, steps=steps, log_every=log_every, on_log=on_log, fused=fused
        )
