"""The DLPack bridge: another library's CUDA arrays (torch's, jax's) train with the cupy
backend's fused step (``fused.py``), reached through DLPack with no copies either way, and
the parameters come back as arrays of the caller's library on the same device. A plug-in
(:attr:`nnbin.backend.Runners.fused`): no backend inherits from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from nnbin.errors import TrainingDivergedError
from nnbin.loop import OnLog, RunResult
from nnbin.model import Params
from nnbin.options import SEED, Config

from .driver import Sigmoid
from .fused import CupyFused, on_device
from .kernels import scope_refusal


def cupy_fused() -> CupyFused | None:
    """The cupy backend's fused step (None: no cupy, no CUDA device, or a ROCm build)."""
    from nnbin.backend import get_backend, is_installed
    from nnbin.errors import NnbinError

    if not is_installed("cupy"):
        return None
    try:
        be = get_backend("cupy")
    except NnbinError:
        return None
    fused = be.runners.fused
    return fused if isinstance(fused, CupyFused) else None


def reach(
    be: Any, to_native: Callable[[Any], Any], on_gpu: Callable[[Any], bool], gpu: bool
) -> DlpackFused | None:
    """The fused step for the backend ``be``'s CUDA arrays (``gpu``: this machine has a
    CUDA GPU; ``on_gpu(X)``: X is on one), where cupy is installed; else None."""
    from nnbin.backend import is_installed

    return DlpackFused(be, to_native, on_gpu) if gpu and is_installed("cupy") else None


def needs(name: str) -> str:
    """What the ``name`` backend's arrays need to reach the fused step."""
    return (
        f"{name}'s fused step (cupy's kernels through DLPack) needs arrays on one CUDA GPU "
        "and cupy: pip install 'nnbin[cupy]'"
    )


class DlpackFused:
    """The fused step for another library's CUDA arrays: the arrays reach the cupy kernels
    through DLPack with no copy (``to_native``: the library's ``from_dlpack`` brings the
    parameters back the same way)."""

    def __init__(
        self, be: Any, to_native: Callable[[Any], Any], on_gpu: Callable[[Any], bool]
    ) -> None:
        self.be, self.to_native, self.on_gpu = be, to_native, on_gpu

    def native(self, params: Params) -> Params:
        return Sigmoid(*(self.to_native(p) for p in params))

    def _cupy_views(self, params: Params, X: Any, y: Any) -> tuple[CupyFused, Params, Any, Any]:
        fused = cupy_fused()
        assert fused is not None
        view = fused._cupy.from_dlpack
        return fused, Sigmoid(*(view(p) for p in params)), view(X), view(y)

    def refusal(self, params: Params, X: Any, config: Config = SEED) -> str | None:
        self.be.tools.last_temp_bytes = None  # a fused run has no compiler buffers to report
        why = scope_refusal(params, config)
        if why is not None:
            return why
        if not self.on_gpu(X):
            return needs(self.be.name)
        if cupy_fused() is None:  # cupy is installed (reach() said so): no usable device
            return (
                "cupy's fused step is not available here (no CUDA device for cupy, or a "
                "ROCm build: the kernels assume NVIDIA's 32-thread warps)"
            )
        fused, pc, Xc, _ = self._cupy_views(params, X, X)
        with on_device(fused._cupy, Xc):
            return fused.refusal(pc, Xc, config)

    def loss_and_grads(
        self, params: Params, X: Any, y: Any, config: Config | None = None
    ) -> tuple[Any, Params]:
        """The fused step's loss and gradients (cupy's kernels, through DLPack)."""
        fused, pc, Xc, yc = self._cupy_views(params, X, y)
        loss, grads = fused.loss_and_grads(pc, Xc, yc, config)
        return self.to_native(loss), self.native(grads)

    def run(
        self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
        on_log: OnLog | None, config: Config = SEED,
    ) -> RunResult:  # fmt: skip
        fused, pc, Xc, yc = self._cupy_views(params, X, y)
        with on_device(fused._cupy, Xc):
            try:
                result = fused.run(
                    pc,
                    Xc,
                    yc,
                    lr=lr,
                    steps=steps,
                    log_every=log_every,
                    on_log=on_log,
                    config=config,
                )
            except TrainingDivergedError as exc:
                exc.params = self.native(cast(Params, exc.params))
                raise
        result.params = self.native(result.params)
        if result.last_finite is not None:
            step, good = result.last_finite
            result.last_finite = (step, self.native(good))
        result.loop += " (through DLPack, no copies)"
        return result
