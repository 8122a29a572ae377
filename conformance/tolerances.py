"""Every tolerance of the suite, in one place, each with its reason.

Errors are norm-wise relative: ||actual - expected|| / ||expected|| over the whole array.
The inputs are rounded to the working dtype before the reference sees them, so what is
measured is the backend's arithmetic, not the rounding of its inputs.
"""

from __future__ import annotations

import numpy as np

EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def rtol(dtype: str, what: str) -> float:
    """Relative tolerance for a comparison of kind ``what`` in ``dtype``.

    - "op", one evaluation (forward, loss, a gradient, one step): 1e3 eps (float32
      1.2e-4, float64 2.2e-13). A sum of N terms in any order (BLAS blocking, pairwise,
      GPU trees) carries a rounding error of about sqrt(N) eps; at the seed job's
      N = 2e4 that is ~140 eps, and the gradients are sums whose terms partly cancel.
      1e3 eps covers that and is still many orders of magnitude below any planted bug.
    - "run", 1,000 steps of gradient descent: 1e4 eps (float32 1.2e-3, float64 2.2e-12).
      Each step's rounding is fed into the next; near the optimum the map contracts, so
      errors accumulate over the run instead of exploding. Measured on the seed job
      (numpy and jax, 2026-11-27): loss curve 2.3e-5 (float32) and 2e-15 (float64),
      parameters 6e-6 and 9e-15: 50x and 250x inside these bounds.
    - "fd", central finite differences in float64 with step eps^(1/3): truncation and
      rounding are both ~ eps^(2/3) ~ 4e-11 relative; 1e-6 leaves margin for curvature.
    """
    eps = EPS[dtype]
    if what == "op":
        return 1e3 * eps
    if what == "run":
        return 1e4 * eps
    if what == "fd":
        return 1e-6
    raise ValueError(f"unknown tolerance kind {what!r}")


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """||actual - expected|| / ||expected|| (absolute error if expected is all zero)."""
    diff = float(np.linalg.norm(np.asarray(actual, np.float64) - expected))
    scale = float(np.linalg.norm(expected))
    return diff / scale if scale > 0.0 else diff
