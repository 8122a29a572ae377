"""NumPy: the default backend, on the CPU."""

from __future__ import annotations

import array_api_compat

from nnbin.backend import About, Backend, cache_block_rows


class NumpyBackend(Backend):
    name = "numpy"
    is_array = staticmethod(array_api_compat.is_numpy_array)
    #: NumPy reports its buffers to tracemalloc (the benchmark's peak memory a step); a
    #: SciPy sparse X stays sparse, each block of rows densified for the core
    about = About(memory_nh=0.1, memory_traced=True, takes_sparse=True)
    default_dtype = "float64"

    def __init__(self) -> None:
        import numpy

        self.xp = array_api_compat.array_namespace(numpy.empty(0))

    def block_rows(self, n_samples: int, hidden: int) -> int | None:
        return cache_block_rows(hidden)
