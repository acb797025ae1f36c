"""Data-parallel training on torch.distributed with two CPU ranks (gloo) on a tiny Graph Reach
demo folder: the loss curves follow single-process training at the same global batch, the
averaged gradient is the global batch's, the ranks' weights stay identical, rank 0 alone writes
the run folder, ``--resume`` restores every rank, and a failing rank stops the others.

All multi-process work happens in ONE spawn of two ranks (the ``two_ranks`` fixture): starting
a rank imports torch afresh, which costs more than the training itself. Inside, each rank runs
the real command line, ``robolearn train``, several times, as torchrun would (the environment
names its rank); the ranks share one process group for those runs. ``robolearn train --nproc``
is the same launcher (``spawn_ranks``) with ``train`` as the target; its checks before
spawning are tested here without spawning.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

from conftest import collect_graph_reach
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import distributed as dist

from robolearn.algos.base import OptimizerStep, algo_class, optimizer_steps
from robolearn.cli import main
from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import load_folder
from robolearn.distributed import (GradientAverage, RankShare, Ranks, process_group, rank_generator,
                                   ranks_from_environment, spawn_ranks)
from robolearn.errors import Failure, classify
from robolearn.paths import LAUNCH_DIR
from test_pipeline import TINY  # the same tiny networks as the pipeline tests

STEPS = 30
ALGOS = ("bc_rnn", "iris")
#: Relative difference allowed between the mean losses of 2-rank and 1-process training over each
#: window of 10 steps. Both start from the same weights and see batches of the same size from the
#: same data, but not the same batches (each rank draws its share from its own generator), so the
#: curves are two samples of one random process. Measured on this data: one batch's loss varies by
#: about 5 % from batch to batch, and the 10-step means of the two kinds of run differed by at most
#: 7.5 % (IRIS's action cVAE, last window) and by 2-5 % for every other loss. 15 % is twice the
#: largest difference seen, and less than the losses fall over the 30 steps (about 20 %, the
#: critic's 75 %), so a 2-rank run that stopped learning fails it. That the averaged gradient is
#: exactly the global batch's is checked without noise, in ``check_gradient_average``.
CURVE_TOLERANCE = 0.15
WINDOW = 10


def train_argv(algo: str, demos: Path, run: Path, steps: int = STEPS) -> list[str]:
    sets = [f"data.path={demos}", f"train.steps={steps}", "train.checkpoint_every=15", "train.log_every=1",
            "train.threads=1", "train.device=cpu"] + TINY[algo]
    return ["train", str(LAUNCH_DIR / f"graph_reach_{algo}.yaml"), "--out", str(run), "--seed", "0", "--quiet"] + [
        x for s in sets for x in ("--set", s)]


def rank_runs(demos: Path, root: Path) -> list[list[str]]:
    """What every rank runs, in order: both algorithms for the curves, and an interrupted BC-RNN run
    resumed to the end, to compare with the uninterrupted one."""
    return [train_argv("bc_rnn", demos, root / "bc_rnn"), train_argv("iris", demos, root / "iris"),
            train_argv("bc_rnn", demos, root / "bc_rnn_resumed", steps=15),
            train_argv("bc_rnn", demos, root / "bc_rnn_resumed") + ["--resume"]]


def check_gradient_average(demos: Path, ranks: Ranks) -> None:
    """On each rank: the averaged gradient of uneven shares (3 + 2 of a global batch of 5) equals
    the gradient of the global batch's mean loss, which this rank recomputes from both ranks'
    draws (a rank's generator is derived from the seed and its rank alone, so any rank can
    redraw another's share)."""
    data = DemoDataset(load_folder(demos)[1], ["pos"])
    torch.manual_seed(0)
    net = torch.nn.Linear(data.obs["pos"].shape[-1], data.action_dim)

    def loss_of(batch):
        return ((net(batch["obs"]["pos"]) - batch["action"]) ** 2).sum(-1).mean()

    shares = [Ranks(r, 2).share(5) for r in range(2)]
    assert shares == [3, 2]
    mine = data.transitions(shares[ranks.rank], rank_generator(7, ranks))
    loss_of(mine).backward()
    GradientAverage(shares[ranks.rank] / 5)(list(net.parameters()))
    averaged = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    draws = [data.transitions(shares[r], rank_generator(7, Ranks(r, 2))) for r in range(2)]
    whole = {"obs": {"pos": torch.cat([d["obs"]["pos"] for d in draws])}, "action": torch.cat([d["action"] for d in draws])}
    loss_of(whole).backward()
    for got, want in zip(averaged, (p.grad for p in net.parameters())):
        assert torch.allclose(got, want, atol=1e-6), (got, want)


def check_weights_stay_identical(demos: Path, ranks: Ranks) -> None:
    """A few IRIS steps through the training's step path: every rank ends with the same weights."""
    data = DemoDataset(load_folder(demos)[1], ["pos"])
    torch.manual_seed(0)
    params = {"batch_size": 9, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1,
              "value": {"critic_hidden": [16], "action_vae_hidden": [16]}}
    algo = algo_class("iris").build(params, data.obs_spec, data.normalizers, data.action_dim)
    gen = rank_generator(0, ranks)
    with optimizer_steps(OptimizerStep(GradientAverage(ranks.share(9) / 9))):
        for _ in range(3):
            algo.train_step(RankShare(data, ranks), gen)
    flat = torch.cat([t.reshape(-1).float() for t in algo.state_dict().values()])
    gathered = [torch.empty_like(flat) for _ in range(ranks.world)]
    dist.all_gather(gathered, flat)
    assert all(torch.equal(gathered[0], g) for g in gathered[1:])


def rank_work(demos: Path, root: Path) -> None:
    """Every rank: the training runs, the checks, then rank 1 fails while rank 0 waits for it."""
    ranks = ranks_from_environment()
    with process_group(ranks, torch.device("cpu")):
        for argv in rank_runs(demos, root):
            code = main(argv)
            assert code == 0, f"rank {ranks.rank}: robolearn {' '.join(argv)} exited {code}"
        check_gradient_average(demos, ranks)
        check_weights_stay_identical(demos, ranks)
        if ranks.rank == 1:
            raise ConfigError("rank 1", "test", "stops here while rank 0 waits for it")
        dist.barrier()  # never answered: the launcher must stop this rank


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return collect_graph_reach(tmp_path_factory, episodes=6)


@pytest.fixture(scope="module")
def two_ranks(demos, tmp_path_factory) -> tuple[Path, Failure]:
    """The run folders the two ranks trained, and how the command line reports the error the
    launcher raised for rank 1."""
    root = tmp_path_factory.mktemp("ranks")
    with pytest.raises(Exception) as failed:
        spawn_ranks(rank_work, (demos, root), 2)
    return root, classify(failed.value)


def losses(run: Path) -> dict[str, np.ndarray]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {k: np.array([r[k] for r in rows]) for k in rows[0] if k.startswith("loss/")}


@pytest.mark.parametrize("algo", ALGOS)
def test_two_ranks_follow_the_single_process_loss_curve(algo, demos, two_ranks, tmp_path):
    root, _ = two_ranks
    single = tmp_path / "single"
    assert main(train_argv(algo, demos, single)) == 0
    one, two = losses(single), losses(root / algo)
    assert sorted(one) == sorted(two)
    for key in one:
        assert len(one[key]) == len(two[key]) == STEPS
        a, b = one[key].reshape(-1, WINDOW).mean(1), two[key].reshape(-1, WINDOW).mean(1)
        assert np.all(np.abs(a - b) <= CURVE_TOLERANCE * a), (key, a, b)
        assert b[-1] < b[0], (key, b)  # and the 2-rank run learns


def test_only_rank_zero_writes_the_run_folder(demos, two_ranks, tmp_path):
    root, _ = two_ranks
    run = root / "bc_rnn"
    single = tmp_path / "single"
    assert main(train_argv("bc_rnn", demos, single, steps=1)) == 0

    def names(folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder).parent if p.parent.name == "tb" else p.relative_to(folder))
                      for p in folder.rglob("*") if p.is_file() and "step_" not in str(p))

    assert names(run) == names(single)  # no file a second writer would add
    assert len(list((run / "tb").iterdir())) == 1  # one TensorBoard writer
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # each step logged once
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["device"] == "cpu" and summary["threads"] == 1
    ckpt = run / "checkpoints" / "step_0000030"
    assert json.loads((ckpt / "checkpoint.json").read_text())["meta"]["world_size"] == 2
    state = load_file(str(ckpt / "optim.safetensors"))
    assert not torch.equal(state["rng/train"], state["rng/train/rank_1"])  # every rank's sampler, each its own


def test_resume_restores_every_rank(two_ranks):
    root, _ = two_ranks
    straight = load_file(str(root / "bc_rnn" / "checkpoints" / "step_0000030" / "model.safetensors"))
    resumed = load_file(str(root / "bc_rnn_resumed" / "checkpoints" / "step_0000030" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    summary = json.loads((root / "bc_rnn_resumed" / "train_summary.json").read_text())
    assert summary["resumed_from"] == 15


def test_resuming_on_another_number_of_ranks_is_refused(demos, two_ranks, capsys):
    root, _ = two_ranks
    assert main(train_argv("bc_rnn", demos, root / "bc_rnn", steps=40) + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on 2 rank(s); resume it with --nproc 2 (or 2 torchrun processes), not on 1" in err[0], err


def test_a_single_process_run_resumes_only_in_one_process(demos, tmp_path, capsys):
    """Refused before any rank starts."""
    run = tmp_path / "run"
    assert main(train_argv("bc_rnn", demos, run, steps=2)) == 0
    assert main(train_argv("bc_rnn", demos, run, steps=4) + ["--resume", "--nproc", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on 1 rank(s); resume it with --nproc 1" in err[0], err


def test_a_failing_rank_stops_the_others(two_ranks):
    """Rank 1's error comes back as raised, and rank 0, waiting for it in a barrier, was stopped
    (else the fixture would have waited out the collective timeout)."""
    _, failure = two_ranks
    assert failure.message == "rank 1: field 'test': stops here while rank 0 waits for it"
    assert failure.exit_code == 2  # a ConfigError's, as if raised in this process


# --- without spawning ------------------------------------------------------------------------

def test_rank_share_splits_every_sampler_of_the_dataset(demos):
    data = DemoDataset(load_folder(demos)[1], ["pos"])
    samplers = [name for name, fn in inspect.getmembers(DemoDataset, inspect.isfunction)
                if not name.startswith("_") and list(inspect.signature(fn).parameters)[1:2] == ["batch"]]
    assert sorted(samplers) == sorted(RankShare.SAMPLERS)  # a new sampler must be split too
    shares = [RankShare(data, Ranks(r, 3)) for r in range(3)]
    assert [len(s.transitions(100, torch.Generator())["action"]) for s in shares] == [34, 33, 33]
    assert shares[2].sequences(100, 4, torch.Generator())["action"].shape[:2] == (33, 4)
    assert shares[1].goal_windows(10, 4, torch.Generator())["goal"]["pos"].shape[0] == 3
    assert shares[0].goal_pairs(10, 4, torch.Generator())["obs"]["pos"].shape[0] == 4
    assert shares[0].action_dim == data.action_dim  # everything else is the dataset's


def test_rank_generators_are_the_seed_for_one_process_and_distinct_for_several():
    def draw(gen):
        return torch.randint(1000, (8,), generator=gen)

    assert torch.equal(draw(rank_generator(3, Ranks())), draw(torch.Generator().manual_seed(3)))
    two = [draw(rank_generator(3, Ranks(r, 2))) for r in range(2)]
    assert not torch.equal(two[0], two[1])
    assert torch.equal(two[1], draw(rank_generator(3, Ranks(1, 2))))  # reproducible
    assert not torch.equal(two[0], draw(rank_generator(4, Ranks(0, 2))))


def test_ranks_come_from_the_environment():
    assert ranks_from_environment({}) == Ranks()
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert ranks_from_environment(env) == Ranks(3, 4, 1, 2)
    for bad, field in [({"WORLD_SIZE": "two"}, "WORLD_SIZE"), ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK"),
                       ({"WORLD_SIZE": "0"}, "WORLD_SIZE"), ({"RANK": "-1"}, "RANK")]:
        with pytest.raises(ConfigError) as err:
            ranks_from_environment(bad)
        assert err.value.field == field and "\n" not in str(err.value)


def test_several_ranks_need_a_rendezvous_address(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        with process_group(Ranks(0, 2, 0, 2), torch.device("cpu")):
            pass


@pytest.mark.parametrize("argv, env, words", [
    (["--nproc", "0"], {}, "--nproc: field 'nproc': expected a positive integer, got 0"),
    (["--nproc", "2"], {"WORLD_SIZE": "2", "RANK": "0"}, "already one of several ranks"),
    (["--nproc", "2", "--set", "algo.batch_size=1"], {}, "field 'algo.batch_size': 1 is less than the 2 ranks"),
    (["--nproc", "2", "--set", "train.device=cuda:0"], {}, "field 'train.device'"),
])
def test_nproc_is_checked_before_any_rank_starts(argv, env, words, demos, tmp_path, capsys, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(train_argv("bc_rnn", demos, tmp_path / "run", steps=2) + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "run").exists()


def test_nproc_refuses_a_goal_batch_the_ranks_cannot_share_like_the_batch(demos, tmp_path, capsys):
    assert main(train_argv("iris", demos, tmp_path / "run", steps=2) + ["--nproc", "2", "--set", "algo.goal_batch_size=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'algo.goal_batch_size': 7 and batch_size" in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_nproc_trains_on_two_gpus_with_nccl(demos, tmp_path):
    """``--nproc 2`` on CUDA: one GPU per rank, NCCL; the checkpoint is in CPU layout."""
    run = tmp_path / "run"
    argv = [a if a != "train.device=cpu" else "train.device=cuda" for a in train_argv("bc_rnn", demos, run, steps=4)]
    assert main(argv + ["--nproc", "2"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["device"] == "cuda:0"
    state = load_file(str(run / "checkpoints" / "step_0000004" / "optim.safetensors"))
    assert "rng/train/rank_1" in state
