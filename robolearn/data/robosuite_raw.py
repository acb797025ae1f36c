"""Import robosuite's raw ``demo.hdf5`` (from ``DataCollectionWrapper`` +
``gather_demonstrations_as_hdf5``) into a demo folder.

That file holds only flattened MuJoCo states, actions and the model XML per demo::

    data/          attrs: env (name), env_info (JSON kwargs for suite.make), repository_version, date, time
      demo_N/      attrs: model_file (MJCF XML)
        states     (N, S)   state *before* each action
        actions    (N, A)

Observations are not stored, so we rebuild them the way robomimic's
``dataset_states_to_obs`` does: load the demo's own model XML, set each recorded state
and read the observation; the final observation comes from playing the last action from
the last state. Observations rebuilt from a state are forward kinematics at that state;
robosuite's own ``step()`` reports kinematics from before its last physics substep, so
they can differ from what the operator saw online by one substep of motion (~1 mm), just
as robomimic's converted datasets do. Rewards are the task's sparse reward evaluated at each next state, and
success is the task's own success test at the end.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoWriter, ObsFieldSpec
from robolearn.data.robomimic import _attr_str, _number, _open_hdf5, _read_dataset, sorted_demo_names, task_from_env_name
from robolearn.data.staging import staged_dir
from robolearn.sim_compat import import_robosuite

#: robomimic's low-dimensional observation keys -> robosuite's observation names.
DEFAULT_OBS = {
    "robot0_eef_pos": "robot0_eef_pos",
    "robot0_eef_quat": "robot0_eef_quat",
    "robot0_gripper_qpos": "robot0_gripper_qpos",
    "object": "object-state",
}


def make_replay_env(env_name: str, env_info: dict[str, Any]):
    """A headless robosuite env built from the recorded kwargs (no renderer, no cameras)."""
    suite = import_robosuite()
    kwargs = {k: v for k, v in env_info.items() if k != "env_name"}
    kwargs.update(has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False, ignore_done=True, reward_shaping=False)
    kwargs.setdefault("control_freq", 20)
    return suite.make(env_name, **kwargs)


def _robosuite_obs(env) -> dict[str, np.ndarray]:
    return env._get_observations(force_update=True)  # what robomimic's EnvRobosuite.get_observation uses


def replay_states(env, model_xml: str | None, states: np.ndarray, actions: np.ndarray, obs_map: dict[str, str]) -> dict[str, Any]:
    """Rebuild T+1 observations, sparse rewards and success for one raw demo."""
    env.reset()
    if model_xml:
        env.reset_from_xml_string(env.edit_model_xml(model_xml))
        env.sim.reset()
    T = actions.shape[0]
    rows: dict[str, list[np.ndarray]] = {k: [] for k in obs_map}
    rewards = np.zeros(T, np.float32)

    def grab(o):
        for k, src in obs_map.items():
            rows[k].append(np.asarray(o[src]))

    for t in range(T):
        env.sim.set_state_from_flattened(states[t])
        env.sim.forward()
        grab(_robosuite_obs(env))
        if t > 0:
            rewards[t - 1] = float(env.reward(actions[t - 1]))
    env.sim.set_state_from_flattened(states[T - 1])
    env.sim.forward()
    _, r, _, _ = env.step(actions[T - 1])
    env.sim.forward()  # same convention as the other rows: kinematics at the state reached
    grab(_robosuite_obs(env))
    rewards[T - 1] = float(r)
    success = bool(env._check_success())
    return {"obs": {k: np.stack(v) for k, v in rows.items()}, "rewards": rewards, "success": success}


def import_robosuite_raw(
    src: str | os.PathLike, dst: str | os.PathLike, obs_keys: list[str] | None = None, progress: bool = True,
    obs_dtype: str | None = None,
) -> Path:
    """Convert a robosuite raw demo.hdf5 into a new demo folder (staged, renamed at the end).

    ``obs_dtype`` defaults to float32, the dtype of the lift/can tasks' observations, so the
    result merges with folders recorded by ``robolearn collect``."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    with _open_hdf5(src) as f:
        if "data" not in f:
            raise DemoFormatError(src, "data", "missing group; expected robosuite's demo.hdf5")
        data = f["data"]
        if "env_info" not in data.attrs and "env" not in data.attrs:
            raise DemoFormatError(src, "data.attrs.env", "missing; robosuite's demo.hdf5 records the env name and env_info")
        try:
            env_info = json.loads(_attr_str(data.attrs["env_info"])) if "env_info" in data.attrs else {}
        except json.JSONDecodeError as exc:
            raise DemoFormatError(src, "data.attrs.env_info", f"expected a JSON string of suite.make kwargs ({exc})") from None
        if not isinstance(env_info, dict):
            raise DemoFormatError(src, "data.attrs.env_info", f"expected a JSON object of suite.make kwargs, got {env_info!r}")
        control_hz = _number(src, "data.attrs.env_info.control_freq", env_info.get("control_freq", 20.0), positive=True)
        env_name = env_info.get("env_name") or (_attr_str(data.attrs["env"]) if "env" in data.attrs else None)
        if not env_name or not isinstance(env_name, str):
            raise DemoFormatError(src, "data.attrs.env", "missing env name")
        names = sorted_demo_names(src, data)
        # Read and check everything before the (slow) simulation starts.
        demos = []
        for name in names:
            g = data[name]
            states = _read_dataset(src, g, "states", f"data/{name}")
            actions = _read_dataset(src, g, "actions", f"data/{name}")
            if actions.ndim != 2:
                raise DemoFormatError(src, f"data/{name}/actions", f"expected shape (N, A), got {actions.shape}")
            if states.ndim != 2 or states.shape[0] != actions.shape[0]:
                raise DemoFormatError(src, f"data/{name}/states", f"expected ({actions.shape[0]}, S) to match actions, got {states.shape}")
            if actions.shape[0] == 0:
                raise DemoFormatError(src, f"data/{name}/actions", "demo has no steps")
            if demos and actions.shape[1] != demos[0][2].shape[1]:
                raise DemoFormatError(src, f"data/{name}/actions", f"action dim {actions.shape[1]} differs from the first demo's")
            xml = _attr_str(g.attrs["model_file"]) if "model_file" in g.attrs else None
            demos.append((name, states, actions, xml))
        repo_version = _attr_str(data.attrs.get("repository_version", ""))
    obs_map = {k: DEFAULT_OBS.get(k, k) for k in obs_keys} if obs_keys else dict(DEFAULT_OBS)
    env = make_replay_env(env_name, env_info)
    try:
        probe = _robosuite_obs(env)
        missing = [src_key for src_key in obs_map.values() if src_key not in probe]
        if missing:
            raise DemoFormatError(src, "obs_keys", f"robosuite env {env_name} has no observation {missing}; it has {sorted(probe)}")
        obs_spec = {k: ObsFieldSpec(shape=tuple(np.asarray(probe[s]).shape), dtype=obs_dtype or "float32") for k, s in obs_map.items()}
        meta = DemoMeta(
            task=task_from_env_name(env_name),
            control_hz=control_hz,
            obs_spec=obs_spec,
            action_spec=ActionSpec(dim=int(demos[0][2].shape[1])),
            robot=(env_info.get("robots") or [None])[0] if isinstance(env_info.get("robots"), list) else env_info.get("robots"),
            controller=(env_info.get("controller_configs") or {}).get("type"),
            source=f"robosuite_raw:{src.name}",
            extra={"env_args": {"env_name": env_name, "type": 1, "env_kwargs": env_info}, "robosuite_version": repo_version},
        )
        with staged_dir(dst) as tmp:
            writer = DemoWriter(tmp, meta)
            for name, states, actions, xml in tqdm(demos, desc=f"replay {src.name}", disable=not progress, unit="demo"):
                ep = replay_states(env, xml, states, actions, obs_map)
                extra = {"robomimic_demo": np.asarray(name)}
                if xml:
                    extra["model_file"] = np.asarray(xml)
                try:
                    writer.write_episode(actions=actions, states=states, extra=extra, **ep)
                except DemoFormatError as exc:
                    raise DemoFormatError(src, f"data/{name}/{exc.field}", exc.problem) from None
    finally:
        env.close()
    return dst
