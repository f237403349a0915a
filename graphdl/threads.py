"""How many threads graphdl's BLAS (NumPy's OpenBLAS, which the GEMM fast path shares) uses.

``gd.set_num_threads(n)`` sets it for the rest of the process; ``with gd.num_threads(n):`` sets it
inside the block and restores the previous count after. Both use threadpoolctl, which finds the BLAS
NumPy loaded and calls its own thread setter, so no environment variable (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS) has to be set before NumPy is imported.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from graphdl.errors import GraphError

#: How long (2**n cycles) OpenBLAS's idle threads spin before sleeping, set when graphdl is imported
#: before NumPy. OpenBLAS's default (2**28 cycles, about 0.1 s) keeps its threads busy-waiting on the
#: other cores long after each GEMM, so kernels that hand work to Python threads between GEMMs compete
#: with them (the batch-split kernels below were slower than no split). With 2**20 cycles (about 0.4 ms),
#: long enough for small GEMMs in a row to find the threads awake, on 2 idle cores: CNN training step
#: 22.0 -> 19.7 ms, transformer block 142 -> 138 ms, CNN inference at batch 1 unchanged (205 us; 2**18
#: made it 223 us). Set OPENBLAS_THREAD_TIMEOUT yourself to override it.
BLAS_SPIN_EXPONENT = 20


def _short_blas_wait() -> bool:
    """Set OpenBLAS's spin time if NumPy is not loaded yet; whether a short one is in effect."""
    import sys

    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(BLAS_SPIN_EXPONENT))
    value = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "")
    return value.isdigit() and int(value) <= BLAS_SPIN_EXPONENT and ("numpy" not in sys.modules or _SET_BEFORE_NUMPY)


_SET_BEFORE_NUMPY = "OPENBLAS_THREAD_TIMEOUT" in os.environ  # by the user, before this process started
#: Whether OpenBLAS's threads sleep soon after a call (see BLAS_SPIN_EXPONENT): decides SPLIT_MIN's default.
SHORT_BLAS_WAIT = _short_blas_wait()


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


#: The default of SPLIT_MIN when OpenBLAS's threads sleep soon after a call.
SPLIT_ON = 1 << 16
#: Kernels (conv2d and its gradients, max pooling, attention, layer norm) hand batch slices to Python
#: threads, one BLAS thread each, from this many elements of work up; None: never, BLAS threads inside
#: each GEMM instead. On by default only with a short BLAS spin (SHORT_BLAS_WAIT): with OpenBLAS's long
#: default spin, splitting made steps slower on the idle 2-core machine (``python -m bench.split_ab``:
#: CNN training 34.8 vs 30.5 ms, the transformer block 155 vs 143 ms). The environment variable
#: GRAPHDL_SPLIT_MIN (a number, or "off") overrides the default; read when kernels are built.
_SPLIT_ENV = os.environ.get("GRAPHDL_SPLIT_MIN", "")
SPLIT_MIN: int | None = (int(_SPLIT_ENV) if _SPLIT_ENV.isdigit() else None if _SPLIT_ENV
                         else SPLIT_ON if SHORT_BLAS_WAIT else None)


def splits(work: int) -> bool:
    """Whether a kernel with ``work`` elements hands batch slices to threads (see ``SPLIT_MIN``)."""
    return SPLIT_MIN is not None and work >= SPLIT_MIN

#: The most slices ``split_over_threads(fn, n, most=MAX_PARTS)`` makes: kernels that keep one partial
#: result per slice (a weight gradient summed over the batch) declare that many parts of workspace.
MAX_PARTS = max(2, os.cpu_count() or 2)

# Found once per process: NumPy's BLAS controller and the worker threads (made on first use).
_BLAS: list[Any] = []
_POOL: list[ThreadPoolExecutor] = []
os.register_at_fork(after_in_child=_POOL.clear)  # a forked child has none of the parent's threads: new ones


def _blas() -> Any:
    """NumPy's own BLAS (the one in numpy.libs when there: torch, say, may have loaded another first)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        from graphdl.ops.gemm import PATTERN

        found = ThreadpoolController().select(user_api="blas").lib_controllers
        here = os.path.realpath(os.path.dirname(PATTERN))
        found = [c for c in found if os.path.dirname(os.path.realpath(c.filepath)) == here] or found
        _BLAS.append(found[0] if found else None)
    return _BLAS[0]


def parts(n: int, most: int | None = None) -> int:
    """How many slices ``split_over_threads(fn, n, most)`` makes now (1: a plain call)."""
    blas = _blas()
    k = min(blas.get_num_threads() if blas is not None else 1, n)
    return max(1, min(k, most) if most is not None else k)


def split_over_threads(fn: Callable[[slice], None], n: int, most: int | None = None) -> None:
    """Call ``fn`` on slices covering ``range(n)``: with BLAS set to k > 1 threads, k slices run in k
    Python threads while BLAS uses one thread (NumPy releases the GIL in matmul and large ufunc loops),
    then BLAS gets its k threads back; with one BLAS thread, ``fn(slice(0, n))`` here. Many small GEMMs
    (a batched matmul is one BLAS call per matrix) run several times faster this way than threaded
    inside BLAS, where each call's threads are started and synchronised for little work.
    ``most`` caps the number of slices."""
    split_in_parts(lambda i, s: fn(s), n, parts(n, most))


def split_in_parts(fn: Callable[[int, slice], None], n: int, k: int) -> None:
    """Call ``fn(i, slice_i)`` for the ``k`` slices i = 0..k-1 covering ``range(n)``, one thread each and
    BLAS at one thread meanwhile (``k`` from ``parts``, read once: a kernel keeping a partial result per
    slice sizes its work by it); k = 1 is a plain call here."""
    if k <= 1:
        fn(0, slice(0, n))
        return
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="graphdl"))
    bounds = [n * i // k for i in range(k + 1)]
    blas = _blas()
    # at least k: another user thread's split may have set BLAS to one thread since ``parts`` read it
    before = max(blas.get_num_threads(), k)
    blas.set_num_threads(1)
    try:
        for done in [_POOL[0].submit(fn, i, slice(a, b)) for i, (a, b) in enumerate(itertools.pairwise(bounds))]:
            done.result()
    finally:
        blas.set_num_threads(before)
