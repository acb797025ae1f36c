"""HBC: hierarchical behaviour cloning, IRIS without the value.

High level: a goal cVAE p(s_{t+T} | s_t) proposes the state T steps ahead.
Low level: a goal-conditioned LSTM imitates the T-step window that led to that state.
The high level re-plans every T steps (or every ``replan_every``, still aiming T steps ahead)
and the low level's LSTM state resets with it.

Acting follows the planning interface (``robolearn.algos.base``): ``needs_plan`` is the re-plan
schedule, ``plan`` proposes a ``SubgoalPlan``, ``adopt`` installs its goal and resets the LSTM,
``act_on_plan`` runs the low level; ``act`` composes them synchronously.

A goal is the features of ``goal_keys`` (every low-dimensional observation key by default, the
state T steps ahead as a whole): the goal cVAE proposes goal features from the current
observation's features and the low level reads both. Naming fewer keys (the object's pose, not
the arm's) makes the goal only what must be reached. Goals are made of low-dimensional keys
only (proprioception, an object pose), never raw pixels, so an image key in ``goal_keys`` is
refused. A goal key may be one the policy does not read (``goal_only_keys``): recorded in the
demos, read by training alone. A policy acting from cameras can then propose and score goals that
hold the object's pose, which the cell need not observe: a proposed goal is pursued, never
compared with the state (so IRIS's ``stall_tolerance``, which compares them, is refused with it).

With image keys in the observation, their encoder is trained by the low level's action loss
(its weights are in the low level's optimiser, as in BC-RNN). The goal cVAE conditions on the
same features without shaping them: a second objective on the encoder (a reconstruction of goal
keys plus a KL) would need a weighting against the action loss that nothing here has measured.

HBC samples one goal; IRIS (``iris.py``) plans by sampling many and keeping the one its value
function prefers. Everything else is shared, so the comparison between the two isolates
exactly what the value selector adds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robolearn.algos.base import Algo, AlgoConfig, adam, masked_mse, register, step_optimizer
from robolearn.config import ConfigError, non_negative, positive
from robolearn.models.encoders import ObservationEncoder
from robolearn.models.nets import ConditionalVAE, LSTMPolicy




@dataclass
class HBCConfig(AlgoConfig):
    #: subgoal horizon T: goal = observation T steps ahead; re-plan every T steps.
    subgoal_horizon: int = positive(10)
    goal_vae_latent: int = positive(16)
    goal_vae_hidden: list[int] = positive(default_factory=lambda: [1024, 1024])
    goal_vae_kl: float = non_negative(5e-4)
    goal_vae_lr: float = positive(1e-3)
    #: samples per update of the goal cVAE (and of IRIS's value), None: ``batch_size``. With image
    #: keys the low level's windows are the expensive part (T frames a sample through the encoder,
    #: with gradients); the cVAE encodes one frame a sample without gradients and the value reads
    #: low-dimensional goals only, so the high level can see as many samples as it does without
    #: cameras for a small share of the step.
    goal_batch_size: int | None = positive(None)
    #: clip of the latent when sampling goals (None: sample the full prior).
    goal_latent_clip: float | None = positive(None)
    #: steps between re-plans at run time (None: every T steps). Goals stay T steps ahead, so a
    #: shorter interval lets the high level correct a low level that strays from its goal
    #: (robomimic's ``subgoal_update_interval``). Acting only: training is unchanged.
    replan_every: int | None = positive(None)
    low_hidden: int = positive(400)
    low_layers: int = positive(2)
    #: low-dimensional observation keys whose features make up a goal, in this order (None: every
    #: low-dimensional key, in the observation's order).
    goal_keys: list[str] | None = None
    #: goal keys the policy does not read (not in ``data.obs_keys``): recorded in the demo folder
    #: for training only. With cameras for eyes, the object's recorded pose can be part of every
    #: goal, so the goal cVAE learns where the object will be and the value scores it, while acting
    #: reads only the cameras and proprioception: goals are proposed and scored, never observed.
    goal_only_keys: list[str] | None = None


@dataclass
class SubgoalPlan:
    """A re-plan's outcome: the chosen subgoal's features (G,), and the candidates (N, G) it was
    chosen from with their scores (N,) when the planner scored several (IRIS)."""

    goal: torch.Tensor
    candidates: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    #: the goal keys' features of the state it was planned from (IRIS: to tell a stall).
    origin: torch.Tensor | None = None


@register("hbc")
class HBC(Algo):
    Config = HBCConfig
    plans = True
    #: ``offset`` (the low level seeing goal minus observation) was measured and not adopted
    #: (docs/decisions.md); checkpoints from before that state the default still load.
    retired = {"low_goal_input": "goal"}

    @classmethod
    def training_only_keys(cls, cfg: HBCConfig) -> list[str]:
        return list(cfg.goal_only_keys or [])

    def __init__(self, cfg: HBCConfig, obs_spec, normalizers, action_dim: int):
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        self.goal_keys = self.checked_goal_keys(cfg.goal_keys)
        # Goals have their own (low-dimensional, weightless) encoder: goal-only keys are not the policy's inputs.
        self.goal_encoder = ObservationEncoder({k: obs_spec[k] for k in self.goal_keys}, normalizers)
        self.goal_dim = self.goal_encoder.out_dim
        self.goal_vae = ConditionalVAE(self.goal_dim, self.obs_dim, cfg.goal_vae_latent, cfg.goal_vae_hidden)
        self.low = LSTMPolicy(self.obs_dim + self.goal_dim, action_dim, cfg.low_hidden, cfg.low_layers)
        self.goal_opt = adam(self.goal_vae.parameters(), lr=cfg.goal_vae_lr)
        self.low_opt = adam([*self.low.parameters(), *self.encoder.parameters()], lr=cfg.lr)
        self._gen = torch.Generator().manual_seed(0)
        self._goal: torch.Tensor | None = None
        self._state = None
        self.steps = 0

    def checked_goal_keys(self, keys: list[str] | None) -> list[str]:
        """``goal_keys`` (default: the low-dimensional keys, then the goal-only ones), each a
        low-dimensional observation key or one of ``goal_only_keys``, which are goal keys recorded
        in the demos (low-dimensional too)."""
        images = self.encoder.keys_of_kind("image")
        only = list(self.cfg.goal_only_keys or [])
        if len(set(only)) != len(only) or any(k not in self.training_only_spec for k in only):
            raise ConfigError("algo", "goal_only_keys", f"expected distinct keys recorded in the demos and not in "
                              f"data.obs_keys {self.encoder.keys}, got {only}")
        pictures = [k for k in only if self.training_only_spec[k].kind != "low_dim"]
        if pictures:
            raise ConfigError("algo", "goal_only_keys", f"{pictures[0]!r} is an image key; goals are low-dimensional")
        if keys is None:
            keys = self.encoder.keys_of_kind("low_dim") + only
            if not keys:
                raise ConfigError("algo", "goal_keys", f"the observation has only image keys {images}; goals are made of "
                                  "low-dimensional keys (proprioception, object pose): add one to data.obs_keys")
        keys = list(keys)
        unknown = [k for k in keys if k not in self.encoder.spec and k not in only]
        if unknown or not keys or len(set(keys)) != len(keys):
            raise ConfigError("algo", "goal_keys", f"expected distinct keys of the observation {self.encoder.keys} or of "
                              f"goal_only_keys {only}, got {keys}")
        named = [k for k in keys if k in images]
        if named:
            raise ConfigError("algo", "goal_keys", f"{named[0]!r} is an image key; goals are made of low-dimensional keys a "
                              "cell can observe (proprioception, object pose), never raw pixels")
        unused = [k for k in only if k not in keys]
        if unused:
            raise ConfigError("algo", "goal_only_keys", f"{unused[0]!r} is not one of goal_keys {keys}")
        return keys

    @property
    def goals_observed(self) -> bool:
        """Whether every goal key is an input, so the current state's goal features can be read when acting."""
        return not self.cfg.goal_only_keys

    def optimizers(self):
        return {"goal_vae": self.goal_opt, "low": self.low_opt}

    def train_step(self, data, gen):
        T = self.cfg.subgoal_horizon
        pairs = data.goal_pairs(self.high_batch_size, T, gen)
        with torch.no_grad():
            cond = self.encode(pairs["obs"], gen)
        goal_loss, info = self.goal_vae.loss(self.encode_goal(pairs["goal"]), cond, self.cfg.goal_vae_kl, gen)
        step_optimizer(self.goal_opt, goal_loss)
        w = data.goal_windows(self.cfg.batch_size, T, gen)
        goal_seq = self.encode_goal(w["goal"]).unsqueeze(1).expand(-1, T, -1)
        pred, _ = self.low(self.low_input(self.encode(w["obs"], gen), goal_seq))
        low_loss = masked_mse(pred, w["action"], w["mask"])
        step_optimizer(self.low_opt, low_loss)
        return {"loss/goal_vae": goal_loss.item(), "goal_vae/kl": info["kl"].item(), "loss/low": low_loss.item()}

    @property
    def high_batch_size(self) -> int:
        """Samples per update of the high level (the goal cVAE, IRIS's value)."""
        return int(self.cfg.goal_batch_size or self.cfg.batch_size)

    def goal_features(self, features: torch.Tensor) -> torch.Tensor | None:
        """The goal keys' part of observation features (..., obs_dim) -> (..., goal_dim); None with
        goal-only keys, which acting does not observe."""
        return self.encoder.select(features, self.goal_keys) if self.goals_observed else None

    def encode_goal(self, obs, gen: torch.Generator | None = None) -> torch.Tensor:
        """An observation dict's goal features (what ``goal_features`` selects from its features,
        without encoding the other keys)."""
        return self.goal_encoder(obs)

    def decode_goal(self, goal: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Goal features back to a dict of the goal keys in recorded units."""
        return self.goal_encoder.decode(goal)

    def low_input(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The low level's input: observation features and goal features, on the last axis."""
        return torch.cat([obs, goal], -1)

    # --- acting -------------------------------------------------------------------------
    def sample_goals(self, obs: torch.Tensor, n: int, clip: bool = True) -> torch.Tensor:
        """``n`` goals from the cVAE, the latent clipped to ``goal_latent_clip`` (``clip=False``: the full prior)."""
        return self.goal_vae.sample(obs[None], n, self._gen, clip_z=self.cfg.goal_latent_clip if clip else None)[0]

    def choose_goal(self, obs: torch.Tensor) -> torch.Tensor:
        return self.sample_goals(obs, 1)[0]

    def reset_policy(self, gen=None):
        if gen is not None:
            self._gen = gen
        self._goal, self._state, self.steps = None, None, 0

    @property
    def replan_interval(self) -> int:
        """Steps between re-plans: ``replan_every``, else the subgoal horizon T."""
        return int(self.cfg.replan_every or self.cfg.subgoal_horizon)

    def needs_plan(self, step: int) -> bool:
        return step % self.replan_interval == 0

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> SubgoalPlan:
        return SubgoalPlan(goal=self.choose_goal(obs))

    def adopt(self, plan: SubgoalPlan) -> None:
        """A new goal, and the LSTM starts afresh toward it (as it was trained: one window per goal)."""
        self._goal = plan.goal
        self._state = None

    @torch.no_grad()
    def act_on_plan(self, obs: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        a, self._state = self.low(self.low_input(obs, self._goal)[None, None], self._state)
        return a[0, 0]

    @torch.no_grad()
    def act(self, obs):
        return self.act_planned(obs)

    def current_goal(self):
        return self._goal
