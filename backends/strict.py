"""array-api-strict: the standard and nothing more, to prove the core uses only the standard."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnbin.backend import About, Backend


class StrictBackend(Backend):
    name = "strict"
    #: NumPy reports its buffers to tracemalloc (the benchmark's peak memory a step)
    about = About(package="array_api_strict", extra="strict", memory_traced=True)
    default_dtype = "float64"

    def __init__(self) -> None:
        import array_api_strict

        # No api_version is passed: the default (2025.12 in 2.6) is what users get.
        self.xp = array_api_strict

    @staticmethod
    def owns(x: object) -> bool:
        return type(x).__module__.startswith("array_api_strict")

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        return self.xp.asarray(
            np.asarray(a, dtype=dtype), dtype=getattr(self.xp, dtype), device=device
        )

    def to_host(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)
