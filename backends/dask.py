"""Dask: the core on Dask arrays chunked along the samples, out of core or on a cluster.

Each step's gradients are sums over chunks, so Dask evaluates them chunk by chunk (no
chunk's (rows, H) temporaries need to live at once) and reduces the partial sums. The
parameters are persisted after every step, so the task graph never grows from one step to
the next; the loss is computed only on logging steps. With a ``dask.distributed.Client``
active, the work runs on its cluster.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import Backend
from nnbin.config import SEED, Config
from nnbin.loop import CoreSteps, EpochSteps, Steps
from nnbin.model import Params, like


class DaskBackend(Backend):
    name = "dask"
    package = "dask"
    extra = "dask"
    memory_nh = 1.0
    out_of_core = True
    # the benchmark's hook: ~60 ms of graph scheduling a step would make the default
    # benchmark minutes long; measure it by name: nnbin bench --backends numpy,dask --sizes 2000000
    in_default_bench = False
    default_dtype = "float64"
    loop = "python loop, parameters persisted every step"

    def __init__(self) -> None:
        import dask
        import dask.array as da

        self._dask = dask
        self._da = da
        self.xp = array_api_compat.array_namespace(da.zeros(1))

    @staticmethod
    def owns(x: object) -> bool:
        return bool(array_api_compat.is_dask_array(x))

    def version(self) -> str:
        return str(self._dask.__version__)

    def devices(self) -> list[str]:
        try:
            from distributed import get_client

            client = get_client()
            return [
                f"cluster {client.scheduler_info().get('address', '?')} "
                f"({len(client.nthreads())} workers)"
            ]
        except (ImportError, ValueError):
            return ["cpu (local scheduler)"]

    @staticmethod
    def chunk_rows(n: int) -> int:
        """Rows per chunk: about 8 chunks, each between 4,096 and 500,000 rows."""
        return int(max(4096, min(500_000, math.ceil(n / 8))))

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        a = np.asarray(a, dtype=dtype)
        if a.ndim == 2 and a.shape[0] > 1:
            return self._da.from_array(a, chunks=(self.chunk_rows(a.shape[0]), -1))
        return self._da.from_array(a)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x.compute() if hasattr(x, "compute") else x)

    def synchronize(self, x: Any) -> None:
        self._dask.compute(x)

    def stepper(
        self,
        params: Any,
        X: Any,
        y: Any,
        lr: float,
        config: Config = SEED,
        validation: tuple[Any, Any] | None = None,
    ) -> Steps:
        params = like(params, self._dask.persist(*params))
        if config.plain_descent:
            return _PersistedSteps(params, X, y, lr, None, self._dask, config)
        return _PersistedEpochs(params, X, y, lr, config, validation, self._dask)


class _PersistedSteps(CoreSteps):
    """The core with the parameters persisted after every step (with the loss on logged
    steps: one evaluation of the graph gives both), so the graph never grows."""

    def __init__(
        self,
        params: Params,
        X: Any,
        y: Any,
        lr: float,
        block_rows: int | None,
        dask: Any,
        config: Config = SEED,
    ) -> None:
        super().__init__(params, X, y, lr, block_rows, config)
        self._persist = dask.persist
        self._compute = dask.compute

    def plain(self, k: int) -> None:
        for _ in range(k):
            super().plain(1)
            self.params = like(self.params, self._persist(*self.params))

    def logged(self) -> Any:
        loss = super().logged()
        *kept, loss = self._persist(*self.params, loss)
        self.params = like(self.params, kept)
        return loss

    def to_host(self, losses: list[Any]) -> list[float]:
        return [float(v) for v in self._compute(*losses)]


class _PersistedEpochs(EpochSteps):
    """Epochs of mini-batches (or another optimizer) with the parameters, the optimizer
    state and the running loss persisted after every update, and each epoch's shuffled
    copy of the data persisted once, so the graph never grows."""

    def __init__(
        self,
        params: Any,
        X: Any,
        y: Any,
        lr: float,
        config: Config,
        validation: tuple[Any, Any] | None,
        dask: Any,
    ) -> None:
        super().__init__(params, X, y, lr, config, validation=validation, indices=np.asarray)
        self._persist = dask.persist
        self._compute = dask.compute

    def shuffled(self, idx: Any) -> tuple[Any, Any]:
        Xs, ys = self._persist(self.X[idx], self.y[idx])  # NumPy row numbers index Dask
        return Xs, ys

    def settle(self, total: Any) -> Any:
        params, state, total = self._persist(tuple(self.params), self.state, total)
        self.params, self.state = like(self.params, params), state
        return total

    def to_host(self, losses: list[Any]) -> list[float]:
        return [float(v) for v in self._compute(*losses)]
