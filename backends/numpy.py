"""NumPy: the default backend, on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat

from nnbin.backend import Backend, cache_block_rows
from nnbin.model import Params
from nnbin.training import RunResult


class NumpyBackend(Backend):
    name = "numpy"
    package = "numpy"
    extra = "numpy"  # a core dependency; listed for symmetry
    memory_nh = 0.1
    default_dtype = "float64"

    def __init__(self) -> None:
        import numpy

        self._np = numpy
        self.xp = array_api_compat.array_namespace(numpy.empty(0))

    @staticmethod
    def owns(x: object) -> bool:
        return bool(array_api_compat.is_numpy_array(x))

    def version(self) -> str:
        return str(self._np.__version__)

    def block_rows(self, n_samples: int, hidden: int) -> int | None:
        return cache_block_rows(hidden)

    def run(self, params: Params, X: Any, y: Any, *, lr: float, steps: int, log_every: int,
            on_log: Callable[[int, float], None] | None = None) -> RunResult:
        # exp(-a) overflowing to inf inside the sigmoid gives the exact result 0; no warning.
        with self._np.errstate(over="ignore"):
            return super().run(params, X, y, lr=lr, steps=steps, log_every=log_every,
                               on_log=on_log)
