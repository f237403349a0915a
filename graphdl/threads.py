"""How many threads graphdl's BLAS (NumPy's OpenBLAS, which the GEMM fast path shares) uses.

``gd.set_num_threads(n)`` sets it for the rest of the process; ``with gd.num_threads(n):`` sets it
inside the block and restores the previous count after. Both use threadpoolctl, which finds the BLAS
NumPy loaded and calls its own thread setter, so no environment variable (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS) has to be set before NumPy is imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from graphdl.errors import GraphError


def _check(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GraphError(f"the number of BLAS threads must be an integer >= 1, got {n!r}")


def get_num_threads() -> int | None:
    """Threads of NumPy's BLAS now (None if threadpoolctl sees no BLAS)."""
    import numpy as np  # noqa: F401  (the BLAS must be loaded for threadpoolctl to see it)
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None


def set_num_threads(n: int) -> None:
    """Use ``n`` BLAS threads from now on (GEMMs in every kernel, NumPy's own matmul included)."""
    _check(n)
    import numpy as np  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Use ``n`` BLAS threads inside the ``with`` block, then restore the previous count."""
    _check(n)
    import numpy as np  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield
