"""CuPy: the array-API core on NVIDIA GPUs.

UNVERIFIED ON A GPU so far: written and tested on CPU-only machines (its errors, its
registration, its skips); see BENCHMARKS.md and the project's issues for what a GPU run
must still show. Host data are moved to the GPU once; the loss reaches the host only on
logging steps.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from nnbin.backend import Backend
from nnbin.errors import BackendUnavailableError


class CupyBackend(Backend):
    name = "cupy"
    package = "cupy"
    extra = "cupy"
    memory_nh = 4.0
    default_dtype = "float32"

    def __init__(self) -> None:
        import cupy

        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
        except Exception:  # CUDA driver or runtime missing: cupy raises its own errors
            count = 0
        if count == 0:
            raise BackendUnavailableError(
                "cupy is installed but no CUDA device was found: run on a machine with an "
                "NVIDIA GPU, or choose another backend (NNBIN_BACKEND=numpy)"
            )
        self._cupy = cupy
        self.xp = array_api_compat.array_namespace(cupy.empty(0))

    @staticmethod
    def owns(x: object) -> bool:
        return bool(array_api_compat.is_cupy_array(x))

    def version(self) -> str:
        return str(self._cupy.__version__)

    def devices(self) -> list[str]:
        rt = self._cupy.cuda.runtime
        out = []
        for i in range(rt.getDeviceCount()):
            name = rt.getDeviceProperties(i)["name"]
            out.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return out

    def asarray(self, a: Any, dtype: str, device: Any = None) -> Any:
        host = np.asarray(a, dtype=dtype)
        index = getattr(device, "id", device)
        with self._cupy.cuda.Device(index if index is not None else
                                    self._cupy.cuda.runtime.getDevice()):
            return self._cupy.asarray(host)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(self._cupy.asnumpy(x))

    def synchronize(self, x: Any) -> None:
        self._cupy.cuda.get_current_stream().synchronize()
