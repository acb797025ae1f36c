"""Where a training process runs: its device, its rank, and data-parallel training across ranks.

One training run may be several processes ("ranks") on ``torch.distributed``: ``robolearn train
LAUNCH --nproc N`` starts N local ranks (``spawn_ranks``), and ``torchrun ... -m robolearn
train`` starts them on one or more nodes and says so in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). The rules:

- The launch file's ``algo.batch_size`` is the global batch; rank r samples its share
  (``Ranks.share``: the batch split as evenly as it goes) from its own generator
  (``rank_generator``: derived from the one seed and the rank, so shares are independent
  draws and a seed gives one run). Every rank starts from rank 0's weights (``broadcast_state``).
- Gradients are averaged explicitly (``GradientAverage``), inside the one optimiser step every
  algorithm takes (``robolearn.algos.base.step_optimizer``), between ``backward()`` and
  ``step()``, each rank's gradient weighted by its share of the global batch: the average is
  the gradient of the global batch's mean loss.

Why an explicit average and not ``DistributedDataParallel``: DDP reduces the gradients of one
module's ``forward()`` during ``backward()``. IRIS steps four optimisers within one training
step (the goal cVAE, the low-level LSTM, the critic's action cVAE and its Q ensemble), on losses computed by methods other than ``forward`` (``ConditionalVAE.loss``,
the critic's target under ``no_grad``), and steps the goal cVAE before the low level's loss
exists. Each learner would need its own DDP wrapper and every algorithm would have to call
through them. Averaging in ``step_optimizer`` covers every optimiser of every algorithm,
present and future, with no change to the algorithms; what it gives up is DDP's overlap of
communication with the backward pass, which on these networks (one flat buffer of at most a few
million numbers per optimiser and step) costs little.

Since every rank applies the same averaged gradient to the same weights, the weights stay
identical on every rank (so do target networks moved towards them; a buffer that training
updates from each rank's own batch, like BatchNorm's statistics, would not, and the image
encoders use GroupNorm, which has none); rank 0 alone writes checkpoints, TensorBoard scalars and metrics
(``robolearn.train``), with every rank's generator state, so ``--resume`` restores each rank.
The backend is gloo on the CPU and NCCL on CUDA.
"""
from __future__ import annotations

import contextlib
import datetime
import multiprocessing as mp
import os
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import distributed as dist

from robolearn.config import ConfigError
from robolearn.errors import WorkerError, portable
from robolearn.launch import TrainConfig, parse_device

#: Where rank errors about the environment a launcher set point to.
ENVIRONMENT = "environment"
#: How long a collective waits for a rank that stopped answering before failing (a rank that
#: crashes is noticed at once by ``spawn_ranks``; under torchrun, by its agent).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a training run: one process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0, the one that writes the run folder."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def share(self, batch: int) -> int:
        """This rank's share of a global batch: ``batch // world``, one more for the first
        ``batch % world`` ranks."""
        return batch // self.world + (1 if self.rank < batch % self.world else 0)


def _env_count(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(ENVIRONMENT, name, f"expected an integer >= {minimum}, got {raw!r}")
    return value


def ranks_from_environment(env: Mapping[str, str] | None = None) -> Ranks:
    """The ranks torchrun (or ``spawn_ranks``) states in the environment; one process without them."""
    env = os.environ if env is None else env
    world = _env_count(env, "WORLD_SIZE", 1, 1)
    rank = _env_count(env, "RANK", 0, 0)
    local_rank = _env_count(env, "LOCAL_RANK", rank, 0)
    local_world = _env_count(env, "LOCAL_WORLD_SIZE", world, 1)
    if rank >= world:
        raise ConfigError(ENVIRONMENT, "RANK", f"{rank} is not below WORLD_SIZE {world}")
    if local_rank >= local_world:
        raise ConfigError(ENVIRONMENT, "LOCAL_RANK", f"{local_rank} is not below LOCAL_WORLD_SIZE {local_world}")
    return Ranks(rank, world, local_rank, local_world)


# --- the machine: cores and devices -----------------------------------------------------------

def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, which honours
    ``taskset`` and container limits), else every core the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def training_threads(train: TrainConfig, ranks: Ranks) -> int:
    """``train.threads``, or by default the available cores divided between the local ranks."""
    if train.threads is not None:
        return int(train.threads)
    return max(1, available_cores() // ranks.local_world)


def resolve_device(train: TrainConfig, source: str, ranks: Ranks = Ranks()) -> torch.device:
    """The device ``train.device`` names for this rank, refusing one torch cannot use here and
    mixed precision anywhere but CUDA (a ConfigError naming the field)."""
    kind, index = parse_device(train.device, source)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        device = _cuda_device(train.device, index, source, ranks)
    elif kind == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(source, "train.device", "mps: this torch build or machine has no Apple GPU (MPS); use cpu or auto")
        if ranks.parallel:
            raise ConfigError(source, "train.device", "mps trains in one process; drop --nproc")
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if train.amp and device.type != "cuda":
        raise ConfigError(source, "train.amp", f"mixed precision runs on CUDA only and this run trains on {device}; "
                          "set train.amp=false (or train on cuda)")
    return device


def _cuda_device(text: str, index: int | None, source: str, ranks: Ranks) -> torch.device:
    if not torch.cuda.is_available():
        raise ConfigError(source, "train.device", f"{text!r}: torch sees no CUDA device (torch {torch.__version__}, "
                          f"CUDA build {torch.version.cuda}); use cpu or auto")
    if index is not None and ranks.parallel:
        raise ConfigError(source, "train.device", f"{text!r} names one GPU for {ranks.world} ranks; use cuda "
                          "(each rank takes the GPU of its local rank)")
    index = ranks.local_rank if index is None else index
    count = torch.cuda.device_count()
    if index >= count:
        needs = f"rank {ranks.rank} needs cuda:{index}" if ranks.parallel else f"cuda:{index} does not exist"
        raise ConfigError(source, "train.device", f"{needs}; torch sees {count} CUDA device(s)")
    return torch.device("cuda", index)


def autocast(train: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for one training step (``train.amp``), or nothing."""
    if not train.amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, train.amp_dtype))


def gradient_scalers(train: TrainConfig, optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """One GradScaler per optimiser for float16 mixed precision (bfloat16 has float32's range and
    needs none): each scales its own loss and skips its own steps with overflowed gradients."""
    if not (train.amp and train.amp_dtype == "float16"):
        return {}
    return {name: torch.amp.GradScaler("cuda") for name in optimizers}


# --- the process group -----------------------------------------------------------------------

@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Joins the run's process group for the duration (nothing for one process): gloo on the CPU,
    NCCL on CUDA, rendezvous at ``MASTER_ADDR:MASTER_PORT`` (torchrun's ``env://``)."""
    if not ranks.parallel or dist.is_initialized():
        yield
        return
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ConfigError(ENVIRONMENT, name, f"missing: WORLD_SIZE is {ranks.world}, so the ranks need a rendezvous "
                              "address (torchrun sets it; or use robolearn train --nproc)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=ranks.rank, world_size=ranks.world,
                            timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Every rank waits here for the others (nothing for one process)."""
    if dist.is_initialized():
        dist.barrier()


def rank_generator(seed: int, ranks: Ranks) -> torch.Generator:
    """The sampler's generator of this rank: the seed itself for one process (single-process runs
    draw what they always drew); for several, a seed derived from (seed, rank) by numpy's
    SeedSequence, whose spawned streams are independent, so each rank's share is its own draw."""
    if not ranks.parallel:
        return torch.Generator().manual_seed(int(seed))
    state = np.random.SeedSequence(int(seed), spawn_key=(ranks.rank,)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _collective_device(device: torch.device) -> torch.device:
    """NCCL moves CUDA tensors only; gloo, CPU ones."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_state(module: torch.nn.Module, device: torch.device) -> None:
    """Rank 0's weights and buffers on every rank (the same seed builds the same networks; this
    makes it so whatever the initialisation did)."""
    if not dist.is_initialized():
        return
    via = _collective_device(device)
    for tensor in module.state_dict().values():
        moved = tensor.to(via)
        dist.broadcast(moved, src=0)
        if moved is not tensor:
            tensor.copy_(moved)


class GradientAverage:
    """The global batch's gradient on every rank: each rank's gradients weighted by its share
    of the batch (``weight``), summed over the ranks in one flat buffer per optimiser step.

    Every rank runs the same code on a batch share of the same shapes, so the parameters holding
    gradients are the same on every rank, in the same order."""

    def __init__(self, weight: float):
        self.weight = float(weight)

    def __call__(self, params: Sequence[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]).mul_(self.weight)
        via = _collective_device(flat.device)
        moved = flat.to(via)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        flat = moved.to(flat.device)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g)
            offset += n


def average_metrics(metrics: Mapping[str, float], weight: float, device: torch.device) -> dict[str, float]:
    """The global batch's metrics: each rank's weighted by its share and summed, identical on
    every rank (so a NaN on any rank stops every rank at the same step)."""
    if not dist.is_initialized():
        return dict(metrics)
    names = sorted(metrics)
    values = torch.tensor([metrics[k] for k in names], dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(values.mul_(weight), op=dist.ReduceOp.SUM)
    return dict(zip(names, values.tolist()))


def generator_states(gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """Every rank's sampler state, in rank order, on every rank ([gen's] for one process)."""
    state = gen.get_state()
    if not dist.is_initialized():
        return [state]
    via = _collective_device(device)
    gathered = [torch.empty_like(state, device=via) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, state.to(via))
    return [t.cpu() for t in gathered]


def every_rank(value: int, device: torch.device) -> list[int]:
    """``value`` as each rank has it, in rank order ([value] for one process)."""
    if not dist.is_initialized():
        return [int(value)]
    mine = torch.tensor([int(value)], dtype=torch.int64, device=_collective_device(device))
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return [int(t.item()) for t in gathered]


class RankShare:
    """A dataset whose samplers draw this rank's share of each global batch.

    The samplers are ``DemoDataset``'s methods whose first argument is the batch size
    (``SAMPLERS``; tests/test_distributed.py holds the list to the dataset's signatures); every
    other attribute is the dataset's own."""

    SAMPLERS = ("transitions", "sequences", "goal_windows", "goal_pairs")

    def __init__(self, data: Any, ranks: Ranks):
        self._data, self._ranks = data, ranks

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._data, name)
        if name not in self.SAMPLERS:
            return attr

        def share(batch: int, *args: Any, **kwargs: Any) -> Any:
            return attr(self._ranks.share(batch), *args, **kwargs)

        return share


# --- launching local ranks -----------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, for rank 0's rendezvous store."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _rank_main(target: Callable[..., Any], args: tuple, rank: int, world: int, host: str, port: int, conn) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": host, "MASTER_PORT": str(port)})
    try:
        conn.send(("ok", target(*args)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the launcher, one line
        conn.send(("error", portable(exc)))
    finally:
        conn.close()


#: How long the launcher waits, after a rank failed in a collective (a peer went away), for the
#: report of the rank whose own error started it.
ROOT_CAUSE_WAIT_S = 5.0


def collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a rank noticing that another rank failed (a collective broken off), not
    a failure of its own."""
    if isinstance(exc, WorkerError):
        return exc.failure.type_name.startswith("Dist")
    return isinstance(exc, dist.DistError)


def spawn_ranks(target: Callable[..., Any], args: tuple, nproc: int, host: str = "127.0.0.1") -> Any:
    """Run ``target(*args)`` in ``nproc`` local ranks (spawned processes, rendezvous on a free
    port of ``host``) and return rank 0's result.

    A rank that fails stops the run: the others are terminated (one waiting in a collective for
    a dead peer would wait out the timeout) and the failure is raised here. The root cause is
    raised, not its echo: when the first report is a broken collective, the launcher waits
    briefly for the rank whose own error broke it."""
    ctx = mp.get_context("spawn")
    port = free_port(host)
    procs, pending = [], {}
    for rank in range(nproc):
        receive, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_rank_main, args=(target, args, rank, nproc, host, port, send), daemon=True,
                        name=f"robolearn-rank-{rank}")
        p.start()
        send.close()
        procs.append(p)
        pending[receive] = rank
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    deadline: float | None = None
    try:
        while pending and not any(not collective_failure(e) for e in errors):
            ready = wait(list(pending), None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for conn in ready:
                rank = pending.pop(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    procs[rank].join()
                    status, value = "error", RuntimeError(f"rank {rank} of {nproc} exited with code "
                                                          f"{procs[rank].exitcode} before reporting")
                if status == "ok":
                    results[rank] = value
                    continue
                errors.append(value)
                if deadline is None:
                    deadline = time.monotonic() + ROOT_CAUSE_WAIT_S
    finally:
        for p in procs:
            if p.is_alive() and (errors or len(results) < nproc):
                p.terminate()
        for p in procs:
            p.join()
    if errors:
        raise next((e for e in errors if not collective_failure(e)), errors[0])
    return results[0]
