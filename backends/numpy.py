"""NumPy: the default backend, on the CPU."""

from __future__ import annotations

import array_api_compat

from nnbin.backend import Backend, cache_block_rows


class NumpyBackend(Backend):
    name = "numpy"
    is_array = staticmethod(array_api_compat.is_numpy_array)
    memory_nh = 0.1
    default_dtype = "float64"
    #: NumPy reports its buffers to tracemalloc (the benchmark's peak memory a step)
    memory_traced = True
    #: a SciPy sparse X stays sparse; each block of rows is densified for the core
    takes_sparse = True

    def __init__(self) -> None:
        import numpy

        self.xp = array_api_compat.array_namespace(numpy.empty(0))

    def block_rows(self, n_samples: int, hidden: int) -> int | None:
        return cache_block_rows(hidden)
