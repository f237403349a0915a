"""How many threads graphdl's BLAS (NumPy's OpenBLAS, which the GEMM fast path shares) uses, and who
runs them during a step.

``gd.set_num_threads(n)`` sets it for the rest of the process; ``with gd.num_threads(n):`` sets it
inside the block and restores the previous count after. Both use threadpoolctl, which finds the BLAS
NumPy loaded and calls its own thread setter, so no environment variable (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS) has to be set before NumPy is imported.

A step of a plan with a kernel that hands work to threads (conv2d and its gradients, max pooling,
attention, layer norm: ``splitting``) *holds* the threads (``held``): BLAS is set to one thread when the
step starts and given its count k back when it ends, and graphdl's own pool of Python threads does the
parallel work meanwhile: those kernels cut the batch into k slices, and large GEMMs of the fast path
(linear layers, matmul, fused SGD updates; graphdl.ops.gemm) cut their result into k blocks, one
single-threaded BLAS call per thread. OpenBLAS's worker threads are then never woken during the step, so
they never busy-wait on the cores the pool needs (they spin about 0.1 s after each call they run), and
the result no longer depends on whether graphdl or NumPy was imported first. Steps of plans without such
kernels (an MLP at batch 256, a CNN at batch 1) leave BLAS threading alone. Holds are counted under a
lock: with several threads running steps at once, the last to finish gives BLAS back its count, also
when a step raises. Meanwhile, NumPy's own matmul anywhere in the process runs on one thread.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from graphdl.errors import GraphError


def _check(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GraphError(f"the number of BLAS threads must be an integer >= 1, got {n!r}")


def get_num_threads() -> int | None:
    """Threads of NumPy's BLAS (None if threadpoolctl sees no BLAS); during another thread's step that
    holds them (see the module docstring), the count it gives back at its end."""
    import numpy as np  # noqa: F401  (the BLAS must be loaded for threadpoolctl to see it)
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    if _HOLD[0]:
        counts.append(_HOLD[1])
    return max(counts) if counts else None


def set_num_threads(n: int) -> None:
    """Use ``n`` BLAS threads from now on (GEMMs in every kernel, NumPy's own matmul included); while
    another thread's step holds the threads, from the end of that step."""
    _check(n)
    import numpy as np  # noqa: F401
    from threadpoolctl import threadpool_limits

    with _HOLD_LOCK:
        if _HOLD[0]:
            _HOLD[1] = n
            return
        threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Use ``n`` BLAS threads inside the ``with`` block, then restore the previous count (for one
    thread at a time: set it between steps, not during another thread's step)."""
    _check(n)
    import numpy as np  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


#: Kernels (conv2d and its gradients, max pooling, attention, layer norm) hand batch slices to graphdl's
#: threads from this many elements of work up; None: never (one call on the whole batch, BLAS threads
#: inside each GEMM, copies on one core). The environment variable GRAPHDL_SPLIT_MIN (a number, or
#: "off") overrides the default; read when kernels are built.
SPLIT_ON = 1 << 16


def _split_min(value: str) -> int | None:
    """GRAPHDL_SPLIT_MIN's value: "" -> SPLIT_ON, "off" -> None, digits -> that number; anything else
    raises (a typo must not silently change how every kernel runs)."""
    value = value.strip()
    if not value:
        return SPLIT_ON
    if value.lower() == "off":
        return None
    if value.isdigit():
        return int(value)
    raise GraphError(f"GRAPHDL_SPLIT_MIN must be a whole number of elements or 'off', got {value!r}; "
                     f"unset it for the default ({SPLIT_ON})")


SPLIT_MIN: int | None = _split_min(os.environ.get("GRAPHDL_SPLIT_MIN", ""))

#: A GEMM of the fast path is cut into blocks for the pool, while a step holds the threads, from this
#: many multiply-adds (m * n * k) up; below it one single-threaded call is faster than a hand-off (a
#: pool thread starts about 60 us after it is handed work on this VM). Idle 2-core machine, median us
#: split / one call: 64x10x3136 144 / 89, 128x128x64 88 / 24, 32x1024x256 234 / 265, 256^3 281 / 325,
#: 4096x256x256 2794 / 5591.
GEMM_SPLIT_MIN = 1 << 23


def splits(work: int) -> bool:
    """Whether a kernel with ``work`` elements hands batch slices to threads (see ``SPLIT_MIN``)."""
    return SPLIT_MIN is not None and work >= SPLIT_MIN


K = TypeVar("K", bound=Callable[..., None])


def splitting(kernel: K, split: bool) -> K:
    """Mark ``kernel`` (a kernel factory's result) as one that hands work to graphdl's threads: a plan
    with such a kernel holds the threads during its steps (``BoundPlan.splits``, ``held``)."""
    kernel.splits = split  # type: ignore[attr-defined]
    return kernel


#: The most slices ``split_over_threads(fn, n, most=MAX_PARTS)`` makes: kernels that keep one partial
#: result per slice (a weight gradient summed over the batch) declare that many parts of workspace.
MAX_PARTS = max(2, os.cpu_count() or 2)

# Found once per process: NumPy's BLAS controller and the worker threads (made on first use).
_BLAS: list[Any] = []
_POOL: list[ThreadPoolExecutor] = []
#: [steps (and splits) holding the threads now, BLAS's thread count before the first of them]
_HOLD: list[int] = [0, 1]
_HOLD_LOCK = threading.Lock()
_WORKER = threading.local()  # ``busy`` is set in the pool's threads: a split there runs in place


def _after_fork() -> None:
    """A forked child has none of the parent's threads: a new pool, and no step holding BLAS (a
    parent's thread may have held it when another forked: give the child its count back)."""
    _POOL.clear()
    if _HOLD[0]:
        _HOLD[0] = 0
        if _BLAS and _BLAS[0] is not None and _HOLD[1] > 1:
            _BLAS[0].set_num_threads(_HOLD[1])


os.register_at_fork(after_in_child=_after_fork)


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


@contextlib.contextmanager
def held() -> Iterator[int]:
    """Hold the threads inside the block: BLAS at one thread, graphdl's pool splitting work into k
    parts, k the BLAS count when the first holder came in (yielded); the last holder out (also on an
    exception) gives BLAS its k threads back. Re-entrant and safe from several threads at once."""
    blas = _blas()
    with _HOLD_LOCK:
        if not _HOLD[0]:
            k = blas.get_num_threads() if blas is not None else 1
            if k > 1:
                blas.set_num_threads(1)
            _HOLD[1] = k
        _HOLD[0] += 1
    try:
        yield _HOLD[1]
    finally:
        with _HOLD_LOCK:
            _HOLD[0] -= 1
            if not _HOLD[0] and _HOLD[1] > 1:
                blas.set_num_threads(_HOLD[1])


def holding() -> int:
    """The parts a split makes now: k > 1 while a step holds k threads (0 otherwise, and in a pool thread)."""
    return _HOLD[1] if _HOLD[0] and _HOLD[1] > 1 and not getattr(_WORKER, "busy", False) else 0


def parts(n: int, most: int | None = None) -> int:
    """How many slices ``split_over_threads(fn, n, most)`` makes now (1: a plain call): the held count
    during a step, else BLAS's count; 1 in the pool's own threads."""
    if getattr(_WORKER, "busy", False):
        return 1
    if _HOLD[0]:
        k = _HOLD[1]
    else:
        blas = _blas()
        k = blas.get_num_threads() if blas is not None else 1
    k = min(k, n)
    return max(1, min(k, most) if most is not None else k)


#: Slices per thread ``split_over_threads`` and split GEMMs make. Threads take the next slice when done
#: with one, so a pool thread that starts late (the machine is busy) finds its slice done by the caller.
#: More slices per thread did not help on the 2-core machine (CNN step, steps alternating in one
#: process, idle: median 24.0 ms with 1, 24.2 with 2, 25.9 with 4; busy, load 4: 33.5, 34.3, 34.8), nor on
#: the AVX-512 VM (benchmark CNN step, 4 fresh processes each: 8.9-9.3 ms with 1, 9.3-9.7 with 2,
#: 10.1-10.3 with 4): each split costs a hand-off (a 33 us task split in two takes 60 us).
GRAIN = 1


def split_over_threads(fn: Callable[[slice], None], n: int, most: int | None = None) -> None:
    """Call ``fn`` on slices covering ``range(n)``: with k > 1 threads (held by the step, or BLAS's
    count), about ``GRAIN`` * k slices run in k threads, each taking the next slice when done, while
    BLAS uses one thread (NumPy releases the GIL in matmul and large ufunc loops); with one,
    ``fn(slice(0, n))`` here. Many small GEMMs (a batched matmul is one BLAS call per matrix) run
    several times faster this way than threaded inside BLAS, where each call's threads are started and
    synchronised for little work. ``most`` caps the number of threads."""
    k = parts(n, most)
    split_dynamic(lambda i, s: fn(s), n, k, min(n, GRAIN * k) if k > 1 else 1)


def split_dynamic(fn: Callable[[int, slice], None], n: int, k: int, pieces: int) -> None:
    """Call ``fn(j, slice_j)`` for ``pieces`` slices covering ``range(n)`` with ``k`` threads (this one
    and k - 1 of the pool), each claiming the next unclaimed slice until none is left: a thread of the
    pool that starts late finds nothing to do, and this call returns once every slice has run. With
    k = 1, or in a pool thread, the slices run here in turn. BLAS is at one thread meanwhile."""
    bounds = [n * j // pieces for j in range(pieces + 1)] if pieces > 1 else [0, n]
    if k <= 1 or pieces <= 1 or getattr(_WORKER, "busy", False):
        for j, (a, b) in enumerate(itertools.pairwise(bounds)):
            fn(j, slice(a, b))
        return
    if _HOLD[0]:
        _claim_pieces(fn, bounds, k)
        return
    with held():
        _claim_pieces(fn, bounds, k)


def _claim_pieces(fn: Callable[[int, slice], None], bounds: list[int], k: int) -> None:
    pieces = len(bounds) - 1
    claim = itertools.count().__next__  # atomic: one C call under the GIL
    done = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    finished = threading.Event()

    def run() -> None:
        while (j := claim()) < pieces:
            try:
                fn(j, slice(bounds[j], bounds[j + 1]))
            except BaseException as e:  # raised in the calling thread once every slice has run
                errors.append(e)
            with lock:
                done[0] += 1
                if done[0] == pieces:
                    finished.set()

    pool = _pool()
    for _ in range(min(k, pieces) - 1):
        pool.submit(run)
    run()
    finished.wait()
    if errors:
        raise errors[0]


def _mark_worker() -> None:
    _WORKER.busy = True


def split_in_parts(fn: Callable[[int, slice], None], n: int, k: int) -> None:
    """Call ``fn(i, slice_i)`` for the ``k`` slices i = 0..k-1 covering ``range(n)`` with k threads
    (``split_dynamic`` with one slice per thread; ``k`` from ``parts``, read once: a kernel keeping a
    partial result per slice sizes its work by it)."""
    split_dynamic(fn, n, k, k)


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="graphdl",
                                        initializer=_mark_worker))
    return _POOL[0]
