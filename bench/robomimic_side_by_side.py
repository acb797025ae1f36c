"""robomimic and robolearn side by side: gradient steps per second and peak memory of BC-RNN and
IRIS with robomimic's paper networks on Lift's low-dimensional shapes, measured in the same run
with the same batch, threads and timing protocol, so that the speed target (robolearn at least
2x robomimic's step rate) is checked against a rate taken on the same machine at the same time
rather than against figures copied from elsewhere.

    .venv/bin/python bench/robomimic_side_by_side.py [--rounds 3] [--quick] [--threads 2]
        [--robomimic-python /work/rmvenv/bin/python] [--json bench/results/robomimic_side_by_side.json]

Why two interpreters: robomimic's networks import torchvision at import time
(``robomimic/models/base_nets.py``, ``obs_core.py``), and PyPI's torchvision is a CUDA build that
does not import beside the project's CPU torch. robomimic therefore runs in a virtual environment
of its own outside the repository (robomimic from PyPI, with PyPI's torch and the torchvision
built for it, of the same torch release as the project's: the same source commit, MKL and oneDNN,
so the CPU kernels are the same code; the JSON records both environments' versions). Set it up with::

    python3.11 -m venv /work/rmvenv
    /work/rmvenv/bin/pip install --isolated torch==<the project's torch release> torchvision==<its match> numpy==1.26.4
    /work/rmvenv/bin/pip install robomimic==0.3.0 six

(``--isolated`` where a local wheel folder offers a ``+cpu`` torch, which PyPI's torchvision
cannot load; robomimic 0.3.0's config module imports ``six`` without declaring it.)

What is timed, on each side:

- robolearn: ``bench/throughput.py``'s own measurement (``run_config``, its ``paper_bc_rnn`` and
  ``paper_iris`` configurations: the Lift launch files with the ``PAPER`` overrides), in a process
  of its own: ``algo.train_step`` (sampler, encoder, every learner's forward, backward and
  optimiser step), warm-up then the median of windows (``SIZES``: 5 windows of 10 steps after 5
  warm-up steps in full mode). Its peak memory (``VmHWM``) is that process's, which after timing
  also saved, loaded and ran the policy (throughput.py's latency rows), so it is if anything an
  over-estimate of training alone.
- robomimic: the body of ``robomimic.utils.train_utils.run_epoch`` per step: the next batch from a
  ``torch.utils.data.DataLoader`` over robomimic's ``SequenceDataset`` (built by
  ``train_utils.load_data_for_training`` as ``scripts/train.py`` does, the paper's low-dim settings:
  ``hdf5_cache_mode="all"``, no data workers), ``process_batch_for_training``,
  ``postprocess_batch_for_training``, ``train_on_batch`` and ``log_info``; the same warm-up and
  windows, in a process of its own, ``torch.set_num_threads`` as robolearn's. The share of each
  part is recorded (``parts_ms``).
- memory: PyPI's CUDA torch build keeps about 450 MiB more resident after ``import torch`` than
  the CPU build, whether or not a GPU is used, so ``peak_rss_mib`` is also given less each side's
  peak right after its imports (``import_rss_mib``, measured in a fresh process of each
  interpreter): ``peak_above_imports_mib``, what the algorithm itself adds. Not timed: ``run_epoch``'s tqdm bar and the per-epoch
  ``on_epoch_end`` (learning-rate schedulers, once per 100 steps in the paper's runs).
- the data on both sides are the same synthetic episodes (``throughput.synthetic_episodes``: Lift's
  keys robot0_eef_pos 3, robot0_eef_quat 4, robot0_gripper_qpos 2, object 10; actions 7; random
  walks; a success reward on the last step), written as a robomimic hdf5 file for robomimic.
- rounds: each configuration is measured ``--rounds`` times, robomimic and robolearn alternating
  (the order reverses every round), so a change in the machine's load hits both. Reported: the
  median steps/s of each over the rounds, their ratio robolearn / robomimic, the worst round's
  ratio (each round's robolearn rate over the same round's robomimic rate), and peak MiB.

The networks, built through robomimic's own config factory (``robomimic.config.config_factory``,
then ``scripts/generate_paper_configs.py``'s ``modify_config_for_default_low_dim_exp`` and its
per-algorithm modifier for Lift, ``ph``, ``low_dim``, then ``robomimic.algo.algo_factory``):

- ``bc_rnn``: robomimic's paper BC-RNN with its GMM head turned off. Matches robolearn's
  ``PAPER["bc_rnn"]`` network for network: LSTM 2 x 400 over sequences of 10, no MLP between the
  LSTM and a linear output with tanh, an L2 loss over every step of the window, low-dim keys
  concatenated (no encoder layers), Adam, batch 100: the same 1,959,607 parameters on both sides.
  Differs: robomimic's learning rate is the paper's 1e-4, robolearn's launch file's 1e-3 (no
  effect on speed); robolearn normalises observations, robomimic's low-dim paper runs do not (a
  few element-wise operations).
- ``bc_rnn_gmm``: robomimic's paper configuration for Lift (proficient-human and multi-human
  data) as it is: the same LSTM with a 5-mode GMM head (means, scales, logits: 400 -> 5 x 7 x 2 + 5)
  trained by log-likelihood. robolearn has no GMM head (an L2 head, docs/decisions.md), so this
  row compares robolearn's paper BC-RNN with robomimic's paper BC-RNN as published rather than
  network for network.
- ``iris``: robomimic's paper IRIS for Lift, as robomimic 0.3.0 builds it. Matches robolearn's
  ``PAPER["iris"]``: goal cVAE encoder and decoder 1024 x 1024, subgoal horizon 10; BCQ value with
  2 critics 300 x 400 (and their targets) and an action cVAE (encoder and decoder 300 x 400,
  latent 16; the same parameter count on both sides) sampling 10 next actions for the target; a
  low-level LSTM 2 x 400 over windows of 10 with a linear head; batch 100. Differs: (1)
  robomimic's low-level LSTM is not goal-conditioned: its input is the observation alone (19
  wide, the same 1,959,607 parameters as BC-RNN), because robomimic's HBC/IRIS put the planner's
  subgoal keys in the actor's ``obs_config.goal`` while ``Algo._create_shapes`` reads goal keys
  from ``obs_config.modalities.goal``; robolearn's reads observation and goal (38 wide), as the
  IRIS paper's does. (2) robomimic's goal cVAE has a learned, observation-conditioned 10-mode
  GMM prior (a third 1024 x 1024 MLP: 3.59 M parameters against robolearn's 2.23 M) and latent
  14, robolearn's an N(0, I) prior and latent 16. (3) robomimic trains the goal cVAE, the value
  and the low level from one batch of 10-step sequences per step, robolearn samples each
  learner's batch separately (goal pairs, goal windows, transitions), and its value target adds
  its return-to-go floor and clip (element-wise).
- ``iris_goal_conditioned``: the same with the subgoal keys also put where ``Algo`` reads them
  (``observation.actor.modalities.goal``), so robomimic's low-level LSTM is goal-conditioned (38
  wide, 1,990,007 parameters, as robolearn's); only difference (2) and (3) remain.

``params`` in the JSON counts every parameter each side built, target critics included on both.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Imports only the standard library at module level: usable from robomimic's interpreter too.
from bench import throughput as tp  # noqa: E402

DEFAULT_ROBOMIMIC_PYTHON = "/work/rmvenv/bin/python"

#: robomimic configurations: its config factory's algorithm, the paper modifier in
#: ``robomimic/scripts/generate_paper_configs.py`` applied for Lift ph low_dim, whether the GMM head
#: stays on, and the robolearn configuration (``throughput.configurations()``) it is compared with.
ROBOMIMIC_CONFIGS: dict[str, dict[str, Any]] = {
    "bc_rnn": {"algo": "bc", "modifier": "modify_bc_rnn_config_for_dataset", "gmm": False, "robolearn": "paper_bc_rnn"},
    "bc_rnn_gmm": {"algo": "bc", "modifier": "modify_bc_rnn_config_for_dataset", "gmm": True, "robolearn": "paper_bc_rnn"},
    "iris": {"algo": "iris", "modifier": "modify_iris_config_for_dataset", "gmm": None, "robolearn": "paper_iris"},
    "iris_goal_conditioned": {"algo": "iris", "modifier": "modify_iris_config_for_dataset", "gmm": None,
                              "actor_goal": True, "robolearn": "paper_iris"},
}


# --- the robomimic side (runs in robomimic's interpreter) ------------------------------------------

def write_robomimic_hdf5(npz_path: Path, hdf5_path: Path) -> None:
    """The synthetic episodes saved by ``save_episodes`` as a robomimic dataset: data/demo_i with
    obs/<key>, next_obs/<key>, actions, rewards, dones and the num_samples attribute."""
    import h5py
    import numpy as np

    arrays = np.load(npz_path)
    meta = json.loads(str(arrays["meta"]))
    with h5py.File(hdf5_path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = sum(meta["lengths"])
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for i, n in enumerate(meta["lengths"]):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = n
            for key in meta["keys"]:
                obs = arrays[f"{i}/obs/{key}"]
                demo.create_dataset(f"obs/{key}", data=obs[:-1])
                demo.create_dataset(f"next_obs/{key}", data=obs[1:])
            for name in ("actions", "rewards", "dones"):
                demo.create_dataset(name, data=arrays[f"{i}/{name}"])


def robomimic_config(name: str, data_path: str):
    """robomimic's paper configuration for Lift low-dim, through its own config factory and paper
    modifiers, pointed at ``data_path`` without validation or rollouts."""
    from robomimic.config import config_factory
    from robomimic.scripts import generate_paper_configs as paper

    spec = ROBOMIMIC_CONFIGS[name]
    config = config_factory(algo_name=spec["algo"])
    config = paper.modify_config_for_default_low_dim_exp(config)
    config = getattr(paper, spec["modifier"])(config, task_name="lift", dataset_type="ph", hdf5_type="low_dim")
    with config.values_unlocked():
        config.train.data = data_path
        config.train.hdf5_filter_key = None
        config.train.hdf5_validation_filter_key = None
        config.experiment.validate = False
        config.experiment.rollout.enabled = False
        config.experiment.save.enabled = False
        if spec["gmm"] is not None:
            config.algo.gmm.enabled = spec["gmm"]
    if spec.get("actor_goal"):
        # Where robomimic's Algo looks for goal keys (``obs_config.modalities.goal``; HBC and IRIS write
        # the planner's subgoal keys to ``obs_config.goal``, which it does not read).
        with config.observation.values_unlocked():
            config.observation.actor.modalities.goal.low_dim = list(config.observation.value_planner.planner.modalities.subgoal.low_dim)
    return config


def module_params(model) -> dict[str, int]:
    """Parameter counts of every ``nets`` ModuleDict under ``model`` (IRIS nests its planner, value
    and actor algorithms), by path; each parameter counted once."""
    import torch

    seen: set[int] = set()
    out: dict[str, int] = {}

    def walk(obj, path: str, depth: int) -> None:
        if depth > 4:
            return
        for attr, value in vars(obj).items():
            if isinstance(value, torch.nn.ModuleDict) and attr == "nets":
                for k, net in value.items():
                    n = sum(p.numel() for p in net.parameters() if id(p) not in seen)
                    seen.update(id(p) for p in net.parameters())
                    out[f"{path}{k}"] = n
            elif hasattr(value, "__dict__") and type(value).__module__.startswith("robomimic.algo"):
                walk(value, f"{path}{attr}.", depth + 1)

    walk(model, "", 0)
    return out


def network_summary(config) -> dict[str, Any]:
    """The settings that decide the step's cost, read back from the built config."""
    a, t = config.algo, config.train
    if config.algo_name == "bc":
        return {"batch_size": t.batch_size, "seq_length": t.seq_length, "rnn": [a.rnn.rnn_type, a.rnn.num_layers, a.rnn.hidden_dim],
                "actor_layer_dims": list(a.actor_layer_dims), "gmm": bool(a.gmm.enabled),
                "gmm_modes": a.gmm.num_modes if a.gmm.enabled else None, "lr": a.optim_params.policy.learning_rate.initial}
    planner, value, actor = a.value_planner.planner, a.value_planner.value, a.actor
    return {"batch_size": t.batch_size, "seq_length": t.seq_length, "subgoal_horizon": planner.subgoal_horizon,
            "goal_vae": {"encoder": list(planner.vae.encoder_layer_dims), "decoder": list(planner.vae.decoder_layer_dims),
                         "latent": planner.vae.latent_dim, "prior_learned": bool(planner.vae.prior.learn),
                         "prior_gmm_modes": planner.vae.prior.gmm_num_modes if planner.vae.prior.use_gmm else None,
                         "prior_layer_dims": list(planner.vae.prior_layer_dims) if planner.vae.prior.learn else None},
            "value": {"critic_layer_dims": list(value.critic.layer_dims), "critics": value.critic.ensemble.n,
                      "action_vae": {"encoder": list(value.action_sampler.vae.encoder_layer_dims),
                                     "decoder": list(value.action_sampler.vae.decoder_layer_dims),
                                     "latent": value.action_sampler.vae.latent_dim},
                      "target_action_samples": value.critic.num_action_samples, "actor": bool(value.actor.enabled)},
            "actor": {"rnn": [actor.rnn.rnn_type, actor.rnn.num_layers, actor.rnn.hidden_dim],
                      "actor_layer_dims": list(actor.actor_layer_dims)}}


def measure_robomimic(spec: dict[str, Any]) -> dict[str, Any]:
    """Build robomimic's ``spec["name"]`` configuration and time ``run_epoch``'s per-step body."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    import robomimic
    import robomimic.utils.file_utils as FileUtils
    import robomimic.utils.obs_utils as ObsUtils
    import robomimic.utils.train_utils as TrainUtils
    import torchvision
    from robomimic.algo import algo_factory

    size = tp.SIZES[spec["mode"]]
    torch.set_num_threads(spec["threads"])
    hdf5_path = Path(spec["tmp"]) / f"{spec['name']}.hdf5"
    write_robomimic_hdf5(Path(spec["npz"]), hdf5_path)
    config = robomimic_config(spec["name"], str(hdf5_path))
    np.random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    ObsUtils.initialize_obs_utils_with_config(config)
    shape_meta = FileUtils.get_shape_metadata_from_dataset(dataset_path=config.train.data, all_obs_keys=config.all_obs_keys)
    model = algo_factory(algo_name=config.algo_name, config=config, obs_key_shapes=shape_meta["all_shapes"],
                         ac_dim=shape_meta["ac_dim"], device=torch.device("cpu"))
    trainset, _ = TrainUtils.load_data_for_training(config, obs_keys=shape_meta["all_obs_keys"])
    sampler = trainset.get_dataset_sampler()
    loader = DataLoader(dataset=trainset, sampler=sampler, batch_size=config.train.batch_size, shuffle=(sampler is None),
                        num_workers=config.train.num_data_workers, drop_last=True)
    model.set_train()
    it = [iter(loader)]
    parts: dict[str, list[float]] = {"data": [], "process": [], "train_on_batch": [], "log_info": []}

    def step(epoch: int = 1) -> None:
        """One pass of ``run_epoch``'s loop body."""
        t0 = time.perf_counter()
        try:
            batch = next(it[0])
        except StopIteration:
            it[0] = iter(loader)
            batch = next(it[0])
        t1 = time.perf_counter()
        input_batch = model.process_batch_for_training(batch)
        input_batch = model.postprocess_batch_for_training(input_batch, obs_normalization_stats=None)
        t2 = time.perf_counter()
        info = model.train_on_batch(input_batch, epoch, validate=False)
        t3 = time.perf_counter()
        model.log_info(info)
        t4 = time.perf_counter()
        for k, a, b in (("data", t0, t1), ("process", t1, t2), ("train_on_batch", t2, t3), ("log_info", t3, t4)):
            parts[k].append(b - a)

    for _ in range(size["warmup"]):
        step()
    for v in parts.values():
        v.clear()
    rates, cpu = [], []
    for _ in range(size["windows"]):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(size["window_steps"]):
            step()
        rates.append(size["window_steps"] / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / size["window_steps"])
    params = module_params(model)
    return {"name": spec["name"], "side": "robomimic", "algo_name": config.algo_name, "threads": torch.get_num_threads(),
            "networks": network_summary(config), "params": int(sum(params.values())), "params_by_net": params,
            "steps_per_s": round(statistics.median(rates), 3), "window_steps_per_s": [round(r, 3) for r in rates],
            "cpu_ms_per_step": round(1e3 * statistics.median(cpu), 2),
            "parts_ms": {k: round(1e3 * statistics.median(v), 2) for k, v in parts.items()},
            "dataset_samples": len(trainset), "peak_rss_mib": tp.peak_rss_mib(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
                         "numpy": np.__version__, "robomimic": robomimic.__version__,
                         "torch_git": torch.version.git_version, "torch_cuda_build": torch.version.cuda}}


def import_rss(side: str) -> dict[str, Any]:
    """Peak resident memory right after importing what each side's measurement imports before it
    builds anything: the part of ``peak_rss_mib`` that is the interpreter and its libraries (PyPI's
    CUDA torch build maps more than the CPU build), not the algorithm."""
    import torch

    if side == "robomimic":
        import robomimic.algo  # noqa: F401  (imports torchvision)
        import robomimic.utils.train_utils  # noqa: F401
    else:
        import robolearn.algos.base  # noqa: F401
        import robolearn.data.dataset  # noqa: F401
    return {"side": side, "torch": torch.__version__, "import_rss_mib": tp.peak_rss_mib()}


def run_import_rss(python: str, side: str) -> dict[str, Any]:
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--import-rss", side], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"side": side, "error": last_error(proc.stderr, proc.returncode)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the orchestrating side (the project's interpreter) ---------------------------------------------

def save_episodes(path: Path, mode: str) -> None:
    """``throughput.synthetic_episodes`` of Lift (the data robolearn's measurement trains on) as an
    npz that robomimic's interpreter turns into its hdf5 format."""
    import numpy as np

    size = tp.SIZES[mode]
    episodes = tp.synthetic_episodes("lift", size["episodes"], size["length"])
    keys = list(tp.TASK_SHAPES["lift"][0])
    arrays: dict[str, Any] = {}
    for i, ep in enumerate(episodes):
        for k in keys:
            arrays[f"{i}/obs/{k}"] = ep.obs[k]
        arrays[f"{i}/actions"] = ep.actions
        arrays[f"{i}/rewards"] = ep.rewards
        arrays[f"{i}/dones"] = ep.dones.astype(np.int64)
    arrays["meta"] = np.array(json.dumps({"keys": keys, "lengths": [len(ep.actions) for ep in episodes]}))
    np.savez(path, **arrays)


def last_error(stderr: str, returncode: int) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {returncode}"


def run_robomimic(name: str, python: str, npz: Path, tmp: Path, threads: int, mode: str) -> dict[str, Any]:
    """``measure_robomimic`` in robomimic's interpreter, a process of its own; a failure (a
    configuration that does not build) is recorded with its error rather than stopping the run."""
    spec = {"name": name, "npz": str(npz), "tmp": str(tmp), "threads": threads, "mode": mode}
    before = tp.load_average()
    t0 = time.perf_counter()
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--robomimic-one", json.dumps(spec)], cwd=REPO,
                          capture_output=True, text=True)
    wall = round(time.perf_counter() - t0, 1)
    load = {"before": before, "after": tp.load_average()}
    if proc.returncode != 0:
        return {"name": name, "side": "robomimic", "error": last_error(proc.stderr, proc.returncode),
                "stderr_tail": proc.stderr.strip().splitlines()[-15:], "load_average": load, "process_wall_s": wall}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_average"], result["process_wall_s"] = load, wall
    return result


def run_robolearn(name: str, threads: int, mode: str) -> dict[str, Any]:
    """``throughput.run_config`` of the named configuration (``throughput.configurations()``)."""
    config = next(c for c in tp.configurations() if c["name"] == name)
    t0 = time.perf_counter()
    try:
        result = tp.run_config(config, threads, mode)
    except RuntimeError as exc:
        return {"name": name, "side": "robolearn", "error": str(exc), "process_wall_s": round(time.perf_counter() - t0, 1)}
    keep = ("name", "algo", "networks", "overrides", "threads", "batch_size", "params", "steps_per_s", "window_steps_per_s",
            "cpu_ms_per_step", "gflop_per_step", "peak_rss_mib", "load_average")
    out = {k: result[k] for k in keep if k in result}
    out["side"], out["process_wall_s"] = "robolearn", round(time.perf_counter() - t0, 1)
    return out


def schedule(names: list[str], rounds: int) -> list[list[tuple[str, str]]]:
    """Per round, the (side, configuration) measurements: each robomimic configuration and the
    robolearn one it is compared with, robolearn once per round; the order reverses every round."""
    order: list[tuple[str, str]] = []
    for name in names:
        order.append(("robomimic", name))
        rl = ROBOMIMIC_CONFIGS[name]["robolearn"]
        if ("robolearn", rl) not in order:
            order.append(("robolearn", rl))
    return [order if r % 2 == 0 else order[::-1] for r in range(rounds)]


def summarise(name: str, rounds: list[dict[tuple[str, str], dict[str, Any]]]) -> dict[str, Any]:
    rl_name = ROBOMIMIC_CONFIGS[name]["robolearn"]
    rm = [r[("robomimic", name)] for r in rounds]
    rl = [r[("robolearn", rl_name)] for r in rounds]
    out: dict[str, Any] = {"robomimic": name, "robolearn": rl_name, "rounds": len(rounds)}
    errors = [m["error"] for m in rm + rl if "error" in m]
    if errors:
        out["error"] = errors[0]
        return out
    per_round = [b["steps_per_s"] / a["steps_per_s"] for a, b in zip(rm, rl)]
    rm_rate = statistics.median(m["steps_per_s"] for m in rm)
    rl_rate = statistics.median(m["steps_per_s"] for m in rl)
    out.update({
        "robomimic_steps_per_s": round(rm_rate, 3), "robolearn_steps_per_s": round(rl_rate, 3),
        "ratio": round(rl_rate / rm_rate, 3), "worst_round_ratio": round(min(per_round), 3),
        "round_ratios": [round(x, 3) for x in per_round],
        "robomimic_round_steps_per_s": [m["steps_per_s"] for m in rm], "robolearn_round_steps_per_s": [m["steps_per_s"] for m in rl],
        "robomimic_peak_rss_mib": max(m["peak_rss_mib"] for m in rm), "robolearn_peak_rss_mib": max(m["peak_rss_mib"] for m in rl),
        "robomimic_params": rm[0]["params"], "robolearn_params": rl[0]["params"],
        "robomimic_cpu_ms_per_step": statistics.median(m["cpu_ms_per_step"] for m in rm),
        "robolearn_cpu_ms_per_step": statistics.median(m["cpu_ms_per_step"] for m in rl),
        "robomimic_parts_ms": {k: round(statistics.median(m["parts_ms"][k] for m in rm), 2) for k in rm[0]["parts_ms"]},
    })
    return out


def fmt_mib(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def table(result: dict[str, Any]) -> str:
    lines = ["| robomimic config | robolearn config | robomimic steps/s | robolearn steps/s | robolearn / robomimic | "
             "worst round | robomimic peak MiB | robolearn peak MiB | above imports: robomimic / robolearn MiB | robomimic params | "
             "robolearn params |", "|" + "---|" * 11]
    for row in result["comparisons"]:
        if "error" in row:
            lines.append(f"| {row['robomimic']} | {row['robolearn']} | not measured: {row['error']} |" + " |" * 8)
            continue
        lines.append(f"| {row['robomimic']} | {row['robolearn']} | {row['robomimic_steps_per_s']:.2f} | {row['robolearn_steps_per_s']:.2f} | "
                     f"{row['ratio']:.2f}x | {row['worst_round_ratio']:.2f}x | {row['robomimic_peak_rss_mib']:.0f} | "
                     f"{row['robolearn_peak_rss_mib']:.0f} | {fmt_mib(row['robomimic_peak_above_imports_mib'])} / "
                     f"{fmt_mib(row['robolearn_peak_above_imports_mib'])} | {row['robomimic_params']:,} | {row['robolearn_params']:,} |")
    lines.append("")
    for row in result["comparisons"]:
        if "error" not in row:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in row["robomimic_parts_ms"].items())
            lines.append(f"{row['robomimic']}: robomimic ms/step by part: {parts}; cpu ms/step robomimic "
                         f"{row['robomimic_cpu_ms_per_step']:.0f}, robolearn {row['robolearn_cpu_ms_per_step']:.0f}")
    m = result["machine"]
    lines.append(f"{result['rounds']} rounds, {m['threads']} threads, mode {result['mode']}; robomimic {m['robomimic_env'].get('robomimic')} "
                 f"(torch {m['robomimic_env'].get('torch')}, torchvision {m['robomimic_env'].get('torchvision')}); "
                 f"robolearn torch {m['torch']}")
    imp = result["import_rss_mib"]
    lines.append(f"peak MiB right after the imports, before building anything: robomimic {fmt_mib(imp['robomimic'])}, "
                 f"robolearn {fmt_mib(imp['robolearn'])}")
    lines.append(f"load average: {result['load_average']['before']} before, {result['load_average']['after']} after")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "robomimic_side_by_side.json"), help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="fewer and shorter windows on less data: checks the bench, not the speed")
    ap.add_argument("--rounds", type=int, default=3, help="alternating robomimic / robolearn rounds (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides (default 2)")
    ap.add_argument("--robomimic-python", default=DEFAULT_ROBOMIMIC_PYTHON, help="robomimic's interpreter (default %(default)s)")
    ap.add_argument("--configs", nargs="*", choices=sorted(ROBOMIMIC_CONFIGS), default=list(ROBOMIMIC_CONFIGS),
                    help="robomimic configurations to compare (default: all)")
    ap.add_argument("--robomimic-one", help=argparse.SUPPRESS)
    ap.add_argument("--import-rss", choices=("robomimic", "robolearn"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.import_rss:
        print(json.dumps(import_rss(args.import_rss)))
        return 0
    if args.robomimic_one:
        print(json.dumps(measure_robomimic(json.loads(args.robomimic_one))))
        return 0
    if args.rounds < 1 or args.threads < 1:
        ap.error("--rounds and --threads: expected positive integers")
    if not Path(args.robomimic_python).exists():
        ap.error(f"--robomimic-python: {args.robomimic_python} does not exist (see the module docstring for its set-up)")
    import numpy as np
    import torch

    mode = "quick" if args.quick else "full"
    size = tp.SIZES[mode]
    result: dict[str, Any] = {
        "mode": mode, "rounds": args.rounds,
        "protocol": {k: size[k] for k in ("warmup", "windows", "window_steps", "episodes", "length")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_git": torch.version.git_version, "numpy": np.__version__,
                    "threads": args.threads,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "robomimic_python": args.robomimic_python},
        "load_average": {"before": tp.load_average()},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    rounds: list[dict[tuple[str, str], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "episodes.npz"
        save_episodes(npz, mode)
        for r, order in enumerate(schedule(args.configs, args.rounds)):
            done: dict[tuple[str, str], dict[str, Any]] = {}
            for side, name in order:
                if side == "robomimic":
                    m = run_robomimic(name, args.robomimic_python, npz, Path(tmp), args.threads, mode)
                else:
                    m = run_robolearn(name, args.threads, mode)
                m["round"] = r
                done[(side, name)] = m
                rate = m.get("steps_per_s")
                print(f"round {r}: {side} {name}: " + (f"{rate:.2f} steps/s, {m['peak_rss_mib']:.0f} MiB" if rate else m["error"]),
                      file=sys.stderr, flush=True)
            rounds.append(done)
    result["load_average"]["after"] = tp.load_average()
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    env = next((m["versions"] for r in rounds for m in r.values() if "versions" in m), {})
    result["machine"]["robomimic_env"] = env
    result["import_rss_mib"] = {side: run_import_rss(python, side).get("import_rss_mib")
                                for side, python in (("robomimic", args.robomimic_python), ("robolearn", sys.executable))}
    result["comparisons"] = [summarise(name, rounds) for name in args.configs]
    for row in result["comparisons"]:
        for side in ("robomimic", "robolearn"):
            base, peak = result["import_rss_mib"][side], row.get(f"{side}_peak_rss_mib")
            row[f"{side}_peak_above_imports_mib"] = None if base is None or peak is None else round(peak - base, 1)
    result["measurements"] = [m for r in rounds for m in r.values()]
    print(table(result))
    from bench.protocol_cells import write_json

    write_json(Path(args.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
