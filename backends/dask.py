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

from nnbin.backend import About, Backend, Tools


class DaskTools(Tools):
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


class DaskBackend(Backend, tools=DaskTools):
    name = "dask"
    is_array = staticmethod(array_api_compat.is_dask_array)
    # ~60 ms of graph scheduling a step would make the default benchmark minutes long;
    # measure it by name: nnbin bench --backends numpy,dask --sizes 2000000
    about = About(
        loop="python loop, parameters persisted every step",
        memory_nh=1.0,
        out_of_core=True,
        in_default_bench=False,
    )
    default_dtype = "float64"

    def __init__(self) -> None:
        import dask
        import dask.array as da

        self._dask = dask
        self._da = da
        self.xp = array_api_compat.array_namespace(da.zeros(1))

    @staticmethod
    def chunk_rows(n: int) -> int:
        """Rows per chunk: about 8 chunks, each between 4,096 and 500,000 rows."""
        return int(max(4096, min(500_000, math.ceil(n / 8))))

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        a = np.asarray(a, dtype=dtype)
        if a.ndim == 2 and a.shape[0] > 1:
            return self._da.from_array(a, chunks=(self.chunk_rows(a.shape[0]), -1))
        return self._da.from_array(a)

    def take_rows(self, a: Any, rows: np.ndarray) -> Any:
        return a[rows]  # NumPy row numbers index Dask arrays

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x.compute() if hasattr(x, "compute") else x)

    def synchronize(self, x: Any) -> None:
        self._dask.compute(x)

    def settle(self, tree: tuple[Any, ...]) -> tuple[Any, ...]:
        """Persisted: one evaluation of the graph gives every part (the core's parameters,
        optimizer state and running loss after each update, an epoch's shuffled data,
        L-BFGS's iterates), so the graph never grows."""
        return tuple(self._dask.persist(*tree))
