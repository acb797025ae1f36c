"""One way to run episodes in worker processes.

``run_jobs(jobs, workers, init, work)`` yields ``work(state, job)`` for each job, in job order,
where ``state = init(*init_args)`` is built once per process (a policy and an environment, say).
With one worker everything runs here; with more, in a spawn-context pool. Job order is kept, so
a caller that writes results (a demo folder, an eval JSON) writes the same thing whatever the
number of workers. A ``backend`` runs the same jobs elsewhere: ``pool_backend("auto")`` gives the
Ray one (``robolearn.runtime.ray_pool``: one actor per worker, on a cluster), with the same order
and the same errors, so the caller's code is the same for both.

Errors: a worker never prints a traceback for an expected error. An ``init`` that raises is kept
(an initializer that raises kills its worker, prints a traceback and makes the pool start another
one, forever) and raised by the worker's first job; every exception crosses to the parent as
``robolearn.errors.portable`` makes it (one it can unpickle, that the CLI reports in one line).
Workers ignore Ctrl-C: it is the parent's to handle, by terminating the pool. A parent killed
outright (SIGKILL, or SIGTERM's default) cannot terminate anything, so on Linux each worker asks
the kernel for SIGTERM when its parent dies (``die_with_parent``), rather than finishing a job
(a 4-minute training cell, a 50-episode evaluation) nobody will read.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from robolearn.errors import portable
from robolearn.runtime.worker_state import close_state, quiet_torch_threads

_WORKER: dict[str, Any] = {}


#: ``prctl`` option: the signal this process gets when the thread that started it exits (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None) -> None:
    """SIGTERM this process when its parent exits (Linux ``prctl``; elsewhere nothing is done, and a
    worker of a killed parent ends after its current job, when it finds its task queue closed). A
    parent already gone before the request took effect is caught by comparing parent ids."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _init_pool_worker(init: Callable[..., Any], init_args: tuple, work: Callable[[Any, Any], Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = mp.parent_process()
    die_with_parent(parent.pid if parent is not None else None)
    _WORKER["work"] = work
    try:
        quiet_torch_threads()
        _WORKER["state"] = init(*init_args)
    except Exception as exc:  # noqa: BLE001 - every failure travels to the parent
        _WORKER["error"] = portable(exc)


def _run_pool_job(job: Any) -> Any:
    if "error" in _WORKER:
        raise _WORKER["error"]
    try:
        return _WORKER["work"](_WORKER["state"], job)
    except Exception as exc:  # noqa: BLE001
        raise portable(exc)


class Backend(Protocol):
    """Somewhere else to run the jobs (a Ray cluster): ``work(state, job)`` in job order, on
    ``workers`` workers that each build their state with ``init(*init_args)`` once."""

    def run(self, jobs: Iterable[Any], workers: int, init: Callable[..., Any], work: Callable[[Any, Any], Any],
            init_args: tuple = ()) -> Iterator[Any]: ...


def pool_backend(ray_address: str | None, progress: bool = True) -> Backend | None:
    """The backend for ``--ray ADDRESS`` (checked now: Ray installed, something listening at the
    address, so a missing cluster fails before any work), or None for local worker processes.
    Ray is imported only here, only when asked for."""
    if ray_address is None:
        return None
    from robolearn.runtime.ray_pool import RayBackend

    return RayBackend(ray_address, progress=progress)


def run_jobs(
    jobs: Sequence[Any] | Iterable[Any],
    workers: int,
    init: Callable[..., Any],
    work: Callable[[Any, Any], Any],
    init_args: tuple = (),
    local_state: Any = None,
    chunksize: int = 1,
    backend: Backend | None = None,
) -> Iterator[Any]:
    """``work(state, job)`` for each job, in order. ``init``, ``work`` and ``init_args`` must be
    picklable (module-level functions) when ``workers > 1`` or a ``backend`` is given.
    ``local_state``: a state already built in this process, used (and left open) when
    ``workers <= 1`` and there is no backend; otherwise one is built and closed. ``backend``: run
    the jobs there (``pool_backend``) on ``workers`` workers instead of local processes."""
    if backend is not None:
        yield from backend.run(jobs, workers, init, work, init_args)
        return
    if workers <= 1:
        state = local_state if local_state is not None else init(*init_args)
        try:
            for job in jobs:
                yield work(state, job)
        finally:
            if local_state is None:
                close_state(state)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_pool_worker, initargs=(init, init_args, work)) as pool:
        yield from pool.imap(_run_pool_job, jobs, chunksize=chunksize)
