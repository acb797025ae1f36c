"""Diffusion Policy: the noise schedule and DDIM sampler against their definitions, both modes of a
bimodal action distribution learnt, and on real Graph Reach demos: training through the launch
file, exact checkpoint reloads, the action-chunk planning schedule, the observation history, and
``robolearn eval``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.algos.base import algo_class
from robolearn.cli import main
from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import Episode, load_folder
from robolearn.hal.pipelined import PipelinedReplanPolicy
from robolearn.models.diffusion import NoiseSchedule
from robolearn.paths import LAUNCH_DIR
from robolearn.policy import load_policy, save_checkpoint
from test_device import demos  # noqa: F401  (fixture: 4 suboptimal Graph Reach demos)
from test_image_policies import one_thread  # noqa: F401  (autouse: small convolutions run fastest on one thread)

#: A network small enough to train for a few hundred steps in seconds.
TINY = {"channels": [16], "step_embed_dim": 16, "groups": 4, "kernel_size": 3, "prediction_horizon": 8,
        "action_horizon": 4, "lr": 3e-3, "batch_size": 64}


# --- the diffusion maths ------------------------------------------------------------------------

def test_the_schedule_is_the_squared_cosine_one():
    T, s = 100, 0.008
    sched = NoiseSchedule(T)

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    acp = sched.alphas_cumprod.double()
    # alpha_bar(t) = f((t + 1) / T) / f(0) wherever no beta was capped (all but the last step)
    expected = torch.tensor([f((t + 1) / T) / f(0) for t in range(T - 1)], dtype=torch.float64)
    torch.testing.assert_close(acp[:-1], expected, rtol=1e-5, atol=1e-7)
    betas = 1 - acp / torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    assert float(betas.max()) <= 0.999 + 1e-6 and bool((acp[1:] < acp[:-1]).all())
    assert float(acp[0]) > 0.999 and float(acp[-1]) < 1e-4  # nearly clean at the first step, nearly pure noise at the last
    assert sched.ddim_timesteps(10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]


@pytest.mark.parametrize("steps", [10, 3, 100])
def test_ddim_with_the_true_noise_recovers_the_clean_sample(steps):
    """For data that is one point x0, the true noise of x_t is (x_t - sqrt(a_t) x0) / sqrt(1 - a_t);
    DDIM given it lands on x0 exactly, whatever the number of denoising steps."""
    sched = NoiseSchedule(100)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand((3, 8, 2), generator=gen) * 1.8 - 0.9
    acp = sched.alphas_cumprod

    def true_eps(x, t):
        a = acp[t].reshape(-1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    start = sched.ddim_timesteps(steps)[0]
    x = sched.add_noise(x0, torch.randn(x0.shape, generator=gen), torch.full((3,), start))
    torch.testing.assert_close(sched.ddim_sample(true_eps, x, steps), x0, rtol=0, atol=1e-5)
    torch.testing.assert_close(sched.ddim_sample(true_eps, x, steps, clip=None), x0, rtol=0, atol=1e-5)


def bimodal_episodes(n: int = 40, seed: int = 0) -> list[Episode]:
    """Half the episodes act +0.5, half -0.5 (each +-0.15), whatever the observation says."""
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n):
        T, mode = 10, 0.5 if i % 2 else -0.5
        episodes.append(Episode(obs={"o": rng.uniform(-1, 1, (T + 1, 1)).astype(np.float32)},
                                actions=(mode + rng.uniform(-0.15, 0.15, (T, 1))).astype(np.float32),
                                rewards=np.zeros(T, np.float32), dones=np.zeros(T, bool), success=False))
    return episodes


def test_samples_land_in_both_modes_of_a_bimodal_action():
    """An L2 policy would answer the modes' mean, 0, which no demo does; the denoiser's samples
    fall in one mode or the other, in both, and hardly ever between (a model that had learnt
    nothing would put about 38 % of its samples in that gap)."""
    data = DemoDataset(bimodal_episodes(), ["o"])
    torch.manual_seed(0)
    cfg = {**TINY, "obs_horizon": 1, "prediction_horizon": 4, "action_horizon": 4, "batch_size": 128}
    algo = algo_class("diffusion_policy").build(cfg, data.obs_spec, data.normalizers, data.action_dim)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        algo.train_step(data, gen)
    algo.eval()
    algo.reset_policy(torch.Generator().manual_seed(1))
    window = algo.encode({"o": torch.tensor([[0.3]])})
    first = algo.sample_chunks(window, 200)[:, 0, 0].numpy()  # each chunk's action for the current step
    between = np.mean(np.abs(first) < 0.25)
    assert between < 0.1, np.histogram(first, bins=13, range=(-0.65, 0.65))[0]
    assert 0.25 < np.mean(first > 0) < 0.75, np.histogram(first, bins=13, range=(-0.65, 0.65))[0]
    assert np.all(np.abs(first) <= 0.65 + 1e-5)  # inside the demos' bounds: samples are clipped to [-1, 1] normalised


# --- on Graph Reach demos -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(demos, tmp_path_factory) -> Path:
    """The launch file's training, 40 steps of a tiny network."""
    out = tmp_path_factory.mktemp("runs") / "dp"
    sets = [f"data.path={demos}", "train.steps=40", "train.checkpoint_every=20", "train.log_every=5", "train.threads=1",
            "train.lr_schedule=constant"] + [f"algo.{k}={json.dumps(v)}" for k, v in TINY.items()]
    argv = ["train", str(LAUNCH_DIR / "graph_reach_diffusion_policy.yaml"), "--out", str(out), "--seed", "0", "--quiet"]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    return out


def observations(demos: Path, n: int = 10) -> list[dict[str, np.ndarray]]:
    """The first ``n`` observations of the first demo: distinct, as a rollout's are."""
    episode = load_folder(demos)[1][0]
    return [{k: v[i] for k, v in episode.obs.items()} for i in range(n)]


def test_training_lowers_the_loss_and_saves_the_averaged_weights(run):
    losses = [json.loads(line)["loss/policy"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    algo = load_policy(run).algo
    assert int(algo.ema_updates) == 40 and float(algo.action_bounds_fitted) == 1.0
    live, averaged = algo.unet.state_dict(), algo.ema_unet.state_dict()
    assert live.keys() == averaged.keys() and not all(torch.equal(live[k], averaged[k]) for k in live)
    assert bool((algo.action_half_range < 1.0).any())  # fitted from the demos (the suboptimal operator's speeds vary)


def test_a_reloaded_checkpoint_acts_identically_and_acts_with_the_averaged_weights(run, demos, tmp_path):
    policy = load_policy(run)
    save_checkpoint(tmp_path / "again", policy.algo, step=40, meta=policy.meta)
    reloaded = load_policy(tmp_path / "again")
    obs = observations(demos)
    policy.reset(seed=3)
    expected = [policy.act(o) for o in obs]
    reloaded.reset(seed=3)
    np.testing.assert_array_equal(np.stack(expected), np.stack([reloaded.act(o) for o in obs]))
    with torch.no_grad():
        for p in reloaded.algo.unet.parameters():
            p.zero_()  # the live network does not act
    reloaded.reset(seed=3)
    np.testing.assert_array_equal(np.stack(expected), np.stack([reloaded.act(o) for o in obs]))
    reloaded.reset(seed=4)
    assert not np.array_equal(np.stack(expected), np.stack([reloaded.act(o) for o in obs]))  # the seed draws the noise


def test_chunks_are_planned_every_action_horizon_steps_and_act_is_the_composition(run, demos):
    policy = load_policy(run)
    algo, Ta = policy.algo, TINY["action_horizon"]
    obs = observations(demos, 10)
    planned_at, plan = [], algo.plan

    def counted(x):
        planned_at.append(algo.steps)
        return plan(x)

    algo.plan = counted
    policy.reset(seed=5)
    composed = [policy.act(o) for o in obs]
    assert planned_at == [0, 4, 8] == [t for t in range(10) if algo.needs_plan(t)]
    policy.reset(seed=5)
    pieces = []
    for t, o in enumerate(obs):
        if policy.needs_plan(t):
            chunk = policy.plan(o)
            assert chunk.step == t and chunk.actions.shape == (TINY["prediction_horizon"], 2)
            policy.adopt(chunk)
        pieces.append(policy.act_on_plan(o))
        # the chunk's action for step t sits at index To - 1 + (t - the chunk's step)
        np.testing.assert_array_equal(pieces[-1], policy._command(chunk.actions[1 + t - chunk.step]))
    np.testing.assert_array_equal(np.stack(composed), np.stack(pieces))
    assert policy.steps == 10


def test_the_observation_history_is_the_steps_acted_on(run, demos):
    policy = load_policy(run)
    algo = policy.algo
    x = [policy.features(o) for o in observations(demos, 4)]
    algo.reset_policy(torch.Generator().manual_seed(0))
    window, step = algo.observation_window(x[0])
    assert step == 0 and torch.equal(window, torch.stack([x[0], x[0]]))  # padded with the oldest, as in training
    algo.act(x[0])
    algo.act(x[1])
    window, step = algo.observation_window(x[2])  # before acting on it (a synchronous plan)
    assert step == 2 and torch.equal(window, torch.stack([x[1], x[2]]))
    window, step = algo.observation_window(x[1])  # already acted on (a plan made after the step)
    assert step == 1 and torch.equal(window, torch.stack([x[0], x[1]]))
    algo.reset_policy()
    assert algo.observation_window(x[2])[1] == 0 and algo.steps == 0


def test_a_pipelined_chunk_plays_from_the_current_step(run, demos):
    """Planned two steps early from that step's observation, a chunk is adopted on schedule and
    played from the action it predicted for the step it is adopted at."""
    policy = load_policy(run)
    adopted, adopt = [], policy.algo.adopt

    def recorded(chunk):
        adopted.append((policy.algo.steps, chunk))
        adopt(chunk)

    policy.algo.adopt = recorded
    pipe = PipelinedReplanPolicy(policy, hz=10, lead=2, adaptive=False)
    pipe.reset(seed=0)
    obs = observations(demos, 10)
    pipe.prime(obs[0])
    actions = []
    for o in obs:
        actions.append(pipe.act(o))
    pipe.close()
    assert pipe.adopted_at == [0, 4, 8] and [s for s, _ in adopted] == [0, 4, 8]
    assert [c.step for _, c in adopted] == [0, 2, 6]
    for t, a in enumerate(actions):
        step, chunk = [(s, c) for s, c in adopted if s <= t][-1]
        np.testing.assert_array_equal(a, policy._command(chunk.actions[1 + t - chunk.step]))


def test_robolearn_eval_runs_the_policy(run, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--episodes", "2", "--seed", "0", "--json", str(out), "--horizon", "24", "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 2 and all(e["length"] <= 24 for e in result["per_episode"])


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,field,words", [
    ({"obs_horizon": 0}, "obs_horizon", "greater than 0"),
    ({"obs_horizon": True}, "obs_horizon", "expected int"),
    ({"obs_horizon": 10}, "obs_horizon", "longer than prediction_horizon 8"),
    ({"action_horizon": 8}, "action_horizon", "at most 7"),
    ({"prediction_horizon": 6, "channels": [16, 32, 64]}, "prediction_horizon", "multiple of 4"),
    ({"channels": [16, 30]}, "channels[1]", "groups=4"),
    ({"kernel_size": 4}, "kernel_size", "even"),
    ({"step_embed_dim": 15}, "step_embed_dim", "odd"),
    ({"inference_steps": 101}, "inference_steps", "train_diffusion_steps 100"),
    ({"ema_max_decay": 1.0}, "ema_max_decay", "below 1"),
    ({"ema_max_decay": 1.5}, "ema_max_decay", "[0, 1]"),
    ({"lr": float("nan")}, "lr", "finite"),
    ({"train_diffusion_steps": -5}, "train_diffusion_steps", "greater than 0"),
])
def test_bad_settings_are_one_line_errors_naming_the_field(bad, field, words):
    data = DemoDataset(bimodal_episodes(4), ["o"])
    with pytest.raises(ConfigError) as info:
        algo_class("diffusion_policy").build({**TINY, **bad}, data.obs_spec, data.normalizers, data.action_dim,
                                             "launch/x.yaml: algo")
    text = str(info.value)
    assert text.startswith(f"launch/x.yaml: algo: field '{field}': ") and words in text and "\n" not in text, text


def test_a_bad_setting_on_the_command_line_is_one_line(demos, tmp_path, capsys):
    argv = ["train", str(LAUNCH_DIR / "graph_reach_diffusion_policy.yaml"), "--out", str(tmp_path / "r"), "--quiet",
            "--set", f"data.path={demos}", "--set", "algo.action_horizon=40"]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graph_reach_diffusion_policy.yaml" in err[0] and "action_horizon" in err[0], err
    assert not (tmp_path / "r" / "checkpoints").exists()
