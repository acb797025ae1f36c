"""Episodes on a Ray cluster: the Ray backend of ``robolearn.runtime.workers.run_jobs``.

Why it is a backend of the one pool and not a pool of its own: an episode's result depends only
on its job (each job carries its episode index and the run's base seed, from which
``robolearn.runtime.seeds`` derives every seed), so a Ray actor is exactly a local worker process
on another CPU: it builds its state once with the same ``init`` (the environment, the policy or
the operator) and runs ``work(state, job)`` for each job sent to it. Results are yielded in job
order, as ``run_jobs`` yields them, so ``collect`` writes the same folder and ``eval`` the same
per-episode JSON however the episodes were spread.

Where the cluster comes from: ``--ray ADDRESS`` connects to the cluster there; ``--ray auto``
connects to the one ``RAY_ADDRESS`` names or a head started on this machine (``ray start
--head``), and otherwise starts a local instance for this run; a progress line says which. A
process that has already called ``ray.init`` is used as it is. What this module connected or
started it also disconnects or stops at the end; a connection it found open it leaves open.

Paths: an actor works in the driver's folder when its node has that folder (a local instance, a
cluster on a shared filesystem), so relative checkpoint and video paths mean what they mean
here, as they do for local worker processes; every node runs the same robolearn install.

Errors: a failure in a remote episode arrives as one line naming the episode
(``robolearn eval: error: episode 13: ...``), with the exit code the same failure has locally;
a dead actor (its node lost, its process killed) is named the same way.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import sys
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from robolearn.config import ConfigError
from robolearn.errors import EXIT_FAILED, WorkerError, classify, one_line, portable
from robolearn.runtime.worker_state import close_state, quiet_torch_threads

AUTO = "auto"
EXTRA = "pip install 'robolearn[distributed]'"
#: Jobs sent ahead of the one the caller waits for, per actor: an actor always has its next job
#: queued, and results that finish early wait in this process for at most this many per actor.
AHEAD_PER_ACTOR = 2
#: Seconds a TCP connection to the given address may take before it counts as nothing answering
#: (``ray.init`` itself retries an address where nothing listens for minutes).
PROBE_TIMEOUT_S = 5.0


def import_ray():
    """``ray``, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray", "ray", f"needs Ray, which is not installed here: {EXTRA}") from None
    return ray


def check_address(address: Any) -> str:
    """``auto`` or a cluster address (``host:port``, ``ray://host:port``), as given."""
    if not isinstance(address, str) or not address.strip() or any(c.isspace() for c in address):
        raise ConfigError("--ray", "ray", f"expected 'auto' or a cluster address like host:6379, got {address!r}")
    return address


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port of an address Ray will dial, when it names both."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("--ray", "ray", f"expected a port number after the host, got {address!r}") from None
    return (parts.hostname, port) if parts.hostname and port else None


def _probe(address: str) -> None:
    """Fail in one line, at once, when nothing listens at ``address``."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError("--ray", "ray", f"no Ray cluster answers at {address} ({reason}); start a head there "
                                          "with `ray start --head` or give the address it printed") from None


def _existing_cluster(ray: Any, address: str) -> str | None:
    """The cluster to connect to for ``address``: the address itself, or for ``auto`` Ray's own
    lookup (``RAY_ADDRESS``, then the head that ``ray start`` recorded on this machine); None when
    ``auto`` finds none (``ray.init`` then starts a local instance)."""
    if address != AUTO:
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # pragma: no cover - Ray moved its lookup: ray.init still does it
        return None
    return canonicalize_bootstrap_address(None)


def default_job_name(job: Any) -> str:
    """What an error calls a job: ``episode N`` for the jobs eval and collect send (an episode
    index, or a tuple that starts with one)."""
    index = job[0] if isinstance(job, tuple) and job else job
    if isinstance(index, int) and not isinstance(index, bool):
        return f"episode {index}"
    return f"job {job!r}"


class EpisodeActor:
    """One worker on the cluster: the state built once by ``init``, then one job per call.
    Wrapped by ``ray.remote`` at run time, so that importing this module never imports Ray."""

    def __init__(self, init: Callable[..., Any], init_args: tuple, work: Callable[[Any, Any], Any], cwd: str):
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self._work = work
        self._state: Any = None
        self._error: BaseException | None = None
        try:
            quiet_torch_threads()
            self._state = init(*init_args)
        except Exception as exc:  # noqa: BLE001 - raised by the first job, like a local worker's
            self._error = portable(exc)

    def run(self, job: Any) -> Any:
        if self._error is not None:
            raise self._error
        try:
            return self._work(self._state, job)
        except Exception as exc:  # noqa: BLE001 - every failure travels to the driver
            raise portable(exc)

    def close(self) -> None:
        if self._state is not None:
            state, self._state = self._state, None
            close_state(state)


def _job_error(name: str, exc: BaseException) -> WorkerError:
    """The one-line error of job ``name`` for what ``ray.get`` raised: the remote exception's own
    line (and exit code) for a failing job, a short one for an actor that died. Raised from
    ``exc``, whose text is the remote traceback that ``--debug`` shows."""
    import ray.exceptions

    if isinstance(exc, ray.exceptions.RayTaskError):
        f = classify(getattr(exc, "cause", None) or exc)
        return WorkerError(f.type_name, f"{name}: {f.message}", f.exit_code, f.expected)
    first = one_line(str(exc)).split(". ")[0][:300]
    return WorkerError(type(exc).__name__, f"{name}: the Ray actor running it failed ({first})", EXIT_FAILED, True)


class RayBackend:
    """Runs ``run_jobs``' jobs on Ray actors. Built, it checks what it can at once (Ray installed,
    something listening at the address), so a command reports a missing cluster before it writes
    anything; ``run`` connects (or starts the local instance) and disconnects at its end."""

    def __init__(self, address: str = AUTO, progress: bool = True, job_name: Callable[[Any], str] = default_job_name):
        self.address = check_address(address)
        self.progress = progress
        self.job_name = job_name
        self._ray = import_ray()
        self._owned = False
        self._local = False
        if not self._ray.is_initialized():
            target = _existing_cluster(self._ray, self.address)
            if target is not None:
                _probe(target)

    def _say(self, line: str) -> None:
        if self.progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            self._say(f"ray: using this process's Ray connection ({self.cpus():g} CPUs)")
            return
        target = _existing_cluster(ray, self.address)
        if target is None:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
            self._owned = self._local = True
            self._say(f"ray: no running cluster found; started a local Ray instance ({self.cpus():g} CPUs) for this run")
            return
        # ray.init prefers RAY_ADDRESS even to the address it is given: the one given here wins.
        hidden = os.environ.pop("RAY_ADDRESS", None)
        try:
            ray.init(address=target, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError("--ray", "ray", f"cannot connect to the Ray cluster at {target}: {one_line(exc)}") from None
        finally:
            if hidden is not None:
                os.environ["RAY_ADDRESS"] = hidden
        self._owned = True
        where = getattr(ray.get_runtime_context(), "gcs_address", None) or target
        self._say(f"ray: connected to the Ray cluster at {where} ({self.cpus():g} CPUs)")

    def cpus(self) -> float:
        return float(self._ray.cluster_resources().get("CPU", 0))

    def close(self) -> None:
        """Disconnect, or stop the local instance, when this backend made the connection."""
        if self._owned:
            self._owned = False
            self._ray.shutdown()

    def _start_actors(self, workers: int, init: Callable[..., Any], init_args: tuple,
                      work: Callable[[Any, Any], Any]) -> list[Any]:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError("--workers", "workers", f"expected a positive number of Ray actors, got {workers!r}")
        cpus = self.cpus()
        share = 1.0
        if workers > cpus:
            if not self._local:
                raise ConfigError("--workers", "workers", f"{workers} Ray actors need a CPU each; the cluster has {cpus:g}")
            # This machine's own instance: as many actors as asked, as local workers would be
            # (Ray counts CPUs in steps of 1e-4).
            share = math.floor(cpus / workers * 1e4) / 1e4
        actor = self._ray.remote(num_cpus=share)(EpisodeActor)
        return [actor.remote(init, init_args, work, os.getcwd()) for _ in range(workers)]

    def run(self, jobs: Iterable[Any], workers: int, init: Callable[..., Any], work: Callable[[Any, Any], Any],
            init_args: tuple = ()) -> Iterator[Any]:
        """``work(state, job)`` for each job, in job order, on ``workers`` actors."""
        actors: list[Any] = []
        finished = False
        try:
            self._connect()
            actors = self._start_actors(workers, init, init_args, work)
            yield from self._dispatch(actors, jobs)
            finished = True
        finally:
            self._stop(actors, graceful=finished)
            self.close()

    def _dispatch(self, actors: list[Any], jobs: Iterable[Any]) -> Iterator[Any]:
        """Keeps every actor busy with the next jobs in order, and yields results in job order;
        at most ``AHEAD_PER_ACTOR`` jobs per actor run ahead of the one yielded next."""
        ray = self._ray
        todo = iter(enumerate(jobs))
        window = AHEAD_PER_ACTOR * len(actors)
        in_flight: dict[Any, tuple[int, Any, Any]] = {}  # ref -> (position, job, actor)
        load = {id(a): 0 for a in actors}
        done: dict[int, Any] = {}
        next_out = 0
        exhausted = False

        def submit() -> None:
            nonlocal exhausted
            while not exhausted and len(in_flight) + len(done) < window:
                try:
                    position, job = next(todo)
                except StopIteration:
                    exhausted = True
                    return
                actor = min(actors, key=lambda a: load[id(a)])
                load[id(actor)] += 1
                in_flight[actor.run.remote(job)] = (position, job, actor)

        submit()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            position, job, actor = in_flight.pop(ready[0])
            load[id(actor)] -= 1
            try:
                done[position] = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                raise _job_error(self.job_name(job), exc) from exc
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            submit()

    def _stop(self, actors: list[Any], graceful: bool) -> None:
        """Close each actor's state (after a complete run), then end the actors."""
        ray = self._ray
        if graceful and actors:
            try:
                ray.get([a.close.remote() for a in actors], timeout=30)
            except Exception:  # noqa: BLE001 - the actors end below either way
                pass
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - an actor that is gone already
                pass
