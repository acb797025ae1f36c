"""Diffusion Policy (Chi et al., RSS 2023): action chunks sampled by denoising, conditioned on a
short observation history.

Why users pick it: demos that solve one situation in several ways (left or right round an
obstacle, a pause or none) give an L2-trained policy the average of the ways, which is often
none of them. A denoising model learns the whole distribution of action sequences and a sample
lands in one mode; predicting a chunk of ``prediction_horizon`` actions at once and executing
``action_horizon`` of them keeps one mode for that long instead of dithering between modes.

Training (``train_step``): a window of the demos around a random step c, the observations of
steps c - To + 1 .. c and the actions of steps c - To + 1 .. c - To + Tp (steps before an
episode's start repeat its first step, past its end its last, as diffusion_policy's
SequenceSampler pads), actions normalised to [-1, 1] by the dataset's per-dimension bounds.
The model is the conditional 1-D temporal U-Net (``robolearn.models.temporal_unet``) with
FiLM conditioning on the flattened observation features and the diffusion step; it predicts
the noise added at a random step of the squared-cosine DDPM schedule (``robolearn.models.
diffusion``), with an L2 loss. An exponential moving average of the network's (and image
encoder's) weights is kept after every step; the averaged copy is what acts, and both copies
are in checkpoints (the live one to resume training, the averaged one to act).

Acting follows the planning interface (``robolearn.algos.base``): ``needs_plan`` every
``action_horizon`` steps; ``plan`` samples a chunk by DDIM with ``inference_steps`` denoising
steps from the observation history ending at its observation; ``adopt`` makes it the chunk in
use; ``act_on_plan`` plays the chunk's action for the current step (chunk index To - 1 is the
action for the planning observation's step) and records the observation in the history.
``act`` composes them synchronously.

The observation history holds the features of the last observations acted on, each with its
episode step, and is reset per episode; a history shorter than To (the first steps) is padded
by repeating its oldest observation, as training pads at episode starts. ``plan(obs)`` takes
the history ending at ``obs``: when ``obs`` is one the policy has already acted on (a runner
that plans after the step, from that step's observation, as ``robolearn.hal.pipelined`` does in
its background thread) the recorded history up to it; otherwise the recorded history and then
``obs``. The two are told apart by value, so an observation exactly equal to the last one acted
on (an arm that has not moved at all) counts as that one. A chunk planned from an earlier step's
observation and adopted later is played from the action for the current step, not from its
first, as diffusion_policy's real-robot runner drops actions whose time has passed; past the
chunk's end its last action is held.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from robolearn.algos.base import Algo, AlgoConfig, optimizer, register, step_optimizer
from robolearn.config import ConfigError, non_negative, positive, probability
from robolearn.models.diffusion import EMA, NoiseSchedule
from robolearn.models.temporal_unet import ConditionalUnet1D

#: Smallest half-range of an action dimension's bounds: a dimension the demos never vary stays
#: at its one value instead of dividing by zero.
MIN_HALF_RANGE = 1e-3


@dataclass
class DiffusionPolicyConfig(AlgoConfig):
    #: AdamW's step size; 1e-4 is the reference setting (with its cosine schedule and warm-up).
    lr: float = positive(1e-4)
    #: AdamW's decoupled weight decay (the reference's 1e-6).
    weight_decay: float = non_negative(1e-6)
    #: To: observations the policy conditions on (the current one and To - 1 before it).
    obs_horizon: int = positive(2)
    #: Tp: actions each sample predicts, from step c - To + 1 on.
    prediction_horizon: int = positive(16)
    #: Ta: actions executed from each chunk before the next plan; at most Tp - To + 1.
    action_horizon: int = positive(8)
    #: the U-Net's channels per resolution, finest first; Tp must halve len - 1 times.
    channels: list[int] = positive(default_factory=lambda: [256, 512, 1024])
    #: width of the diffusion step's embedding.
    step_embed_dim: int = positive(128)
    #: temporal convolution width (odd: the sequence keeps its length).
    kernel_size: int = positive(5)
    #: GroupNorm groups; every entry of ``channels`` must divide by it.
    groups: int = positive(8)
    #: DDPM forward-process steps of the squared-cosine schedule.
    train_diffusion_steps: int = positive(100)
    #: DDIM denoising steps per plan (each one U-Net pass); at most ``train_diffusion_steps``.
    inference_steps: int = positive(10)
    #: EMA warm-up power: decay at update k is 1 - (1 + k) ** -power.
    ema_power: float = positive(0.75)
    #: the EMA decay's cap; below 1 (at 1 the averaged weights never leave their initialisation).
    ema_max_decay: float = probability(0.9999)


@dataclass
class ActionChunk:
    """A plan: Tp actions (Tp, A) in the dataset's units, and the episode step of the newest
    observation they were predicted from (index To - 1 of ``actions`` is that step's action)."""

    actions: torch.Tensor
    step: int


def check_config(cfg: DiffusionPolicyConfig) -> None:
    """The relations between settings that each field's own check cannot see."""
    To, Tp, Ta = cfg.obs_horizon, cfg.prediction_horizon, cfg.action_horizon
    if To > Tp:
        raise ConfigError("algo", "obs_horizon", f"{To} is longer than prediction_horizon {Tp}: the predicted window "
                          "starts at the oldest observation and must reach the current step")
    if Ta > Tp - To + 1:
        raise ConfigError("algo", "action_horizon", f"{Ta} actions from step To - 1 = {To - 1} on do not fit in "
                          f"prediction_horizon {Tp}; at most {Tp - To + 1}")
    halvings = len(cfg.channels) - 1
    if Tp % (2 ** halvings):
        raise ConfigError("algo", "prediction_horizon", f"{Tp} does not halve {halvings} times (one per resolution below the "
                          f"first of channels {cfg.channels}); use a multiple of {2 ** halvings}")
    for i, c in enumerate(cfg.channels):
        if c % cfg.groups:
            raise ConfigError("algo", f"channels[{i}]", f"{c} does not divide into groups={cfg.groups} GroupNorm groups")
    if cfg.kernel_size % 2 == 0:
        raise ConfigError("algo", "kernel_size", f"{cfg.kernel_size} is even; an odd width keeps the sequence's length")
    if cfg.step_embed_dim % 2:
        raise ConfigError("algo", "step_embed_dim", f"{cfg.step_embed_dim} is odd; the embedding is sines and cosines in pairs")
    if cfg.inference_steps > cfg.train_diffusion_steps:
        raise ConfigError("algo", "inference_steps", f"{cfg.inference_steps} is more than train_diffusion_steps "
                          f"{cfg.train_diffusion_steps}; DDIM visits a subset of the trained steps")
    if cfg.ema_max_decay >= 1.0:
        raise ConfigError("algo", "ema_max_decay", "expected a number below 1: at 1 the averaged weights, which act, "
                          "never leave their initialisation")


@register("diffusion_policy")
class DiffusionPolicy(Algo):
    Config = DiffusionPolicyConfig
    plans = True

    def __init__(self, cfg: DiffusionPolicyConfig, obs_spec, normalizers, action_dim: int):
        check_config(cfg)
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        self.unet = ConditionalUnet1D(action_dim, cfg.obs_horizon * self.obs_dim, cfg.channels, cfg.step_embed_dim,
                                      cfg.kernel_size, cfg.groups)
        self.schedule = NoiseSchedule(cfg.train_diffusion_steps)
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False)
        self.ema_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.ema = EMA(cfg.ema_power, cfg.ema_max_decay)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # Per-dimension centre and half-range of the demos' actions, fitted on the first training step.
        self.register_buffer("action_center", torch.zeros(action_dim))
        self.register_buffer("action_half_range", torch.ones(action_dim))
        self.register_buffer("action_bounds_fitted", torch.zeros(()))  # 1 once fitted (float: every backend broadcasts it)
        self.opt = optimizer([*self.unet.parameters(), *self.encoder.parameters()],
                             lambda params: torch.optim.AdamW(params, lr=cfg.lr, betas=(0.95, 0.999),
                                                              weight_decay=cfg.weight_decay))
        self._gen = torch.Generator().manual_seed(0)
        self._history: tuple[tuple[int, torch.Tensor], ...] = ()
        self._chunk: ActionChunk | None = None
        self.steps = 0

    def optimizers(self):
        return {"policy": self.opt}

    # --- actions in [-1, 1] ---------------------------------------------------------------
    @torch.no_grad()
    def fit_action_bounds(self, data) -> None:
        """The demos' per-dimension action bounds, once: a resumed run keeps those it started with."""
        actions = data.actions[data.step_rows]
        lo, hi = actions.min(0).values, actions.max(0).values
        self.action_center.copy_((hi + lo) / 2)
        self.action_half_range.copy_(((hi - lo) / 2).clamp(min=MIN_HALF_RANGE))
        self.action_bounds_fitted.fill_(1.0)

    def normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.action_center) / self.action_half_range

    def unnormalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.action_half_range + self.action_center

    # --- training -------------------------------------------------------------------------
    def train_step(self, data, gen):
        cfg = self.cfg
        if not bool(self.action_bounds_fitted > 0):
            self.fit_action_bounds(data)
        To = cfg.obs_horizon
        b = data.sequences(cfg.batch_size, cfg.prediction_horizon, gen, history=To - 1, obs_steps=To)
        cond = self.encoder(b["obs"], gen).flatten(1)  # (B, To * obs_dim): live weights train
        x0 = self.normalize_actions(b["action"])
        # Drawn on the generator's device (training generators live on the CPU), then moved.
        noise = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
        t = torch.randint(self.schedule.steps, (x0.shape[0],), generator=gen).to(x0.device)
        pred = self.unet(self.schedule.add_noise(x0, noise, t), t, cond)
        loss = F.mse_loss(pred, noise)
        step_optimizer(self.opt, loss)
        updates = int(self.ema_updates)
        self.ema.update(self.ema_unet, self.unet, updates)
        self.ema.update(self.ema_encoder, self.encoder, updates)
        self.ema_updates += 1
        return {"loss/policy": loss.item(), "train/ema_decay": self.ema.decay(updates)}

    # --- acting ---------------------------------------------------------------------------
    def encode(self, obs, gen=None):
        """Features for acting: the averaged encoder's (training encodes with the live one)."""
        return self.ema_encoder(obs, gen)

    def reset_policy(self, gen=None):
        if gen is not None:
            self._gen = gen
        self._history, self._chunk, self.steps = (), None, 0

    @property
    def history_length(self) -> int:
        """Observations kept: To for the next plan, plus Ta - 1 more for a plan started from an
        observation up to Ta - 1 steps old (the most a pipelined runner may lead by)."""
        return self.cfg.obs_horizon + self.cfg.action_horizon - 1

    def needs_plan(self, step: int) -> bool:
        return step % self.cfg.action_horizon == 0

    def observation_window(self, obs: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The To features (To, obs_dim) of the history ending at ``obs``, and ``obs``'s step."""
        history = self._history  # one read: the acting thread replaces, never mutates, it
        for j in range(len(history) - 1, -1, -1):
            if torch.equal(history[j][1], obs):
                frames, step = [f for _, f in history[:j + 1]], history[j][0]
                break
        else:
            frames, step = [f for _, f in history] + [obs], (history[-1][0] + 1 if history else 0)
        To = self.cfg.obs_horizon
        frames = frames[-To:]
        frames = [frames[0]] * (To - len(frames)) + frames
        return torch.stack(frames), step

    @torch.no_grad()
    def sample_chunks(self, window: torch.Tensor, n: int = 1) -> torch.Tensor:
        """``n`` action chunks (n, Tp, A) in the dataset's units for one observation window
        (To, obs_dim), by DDIM with the averaged network, noise from the policy's generator."""
        cond = window.reshape(1, -1).expand(n, -1)
        x = torch.randn((n, self.cfg.prediction_horizon, self.action_dim), generator=self._gen).to(cond.device, cond.dtype)
        x = self.schedule.ddim_sample(lambda xt, t: self.ema_unet(xt, t, cond), x, self.cfg.inference_steps)
        return self.unnormalize_actions(x)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> ActionChunk:
        window, step = self.observation_window(obs)
        return ActionChunk(actions=self.sample_chunks(window)[0], step=step)

    def adopt(self, plan: ActionChunk) -> None:
        self._chunk = plan

    @torch.no_grad()
    def act_on_plan(self, obs: torch.Tensor) -> torch.Tensor:
        if self._chunk is None:
            raise RuntimeError("diffusion_policy: act_on_plan before any chunk was adopted (plan at step 0 first)")
        To, Tp = self.cfg.obs_horizon, self.cfg.prediction_horizon
        index = min(max(To - 1 + self.steps - self._chunk.step, To - 1), Tp - 1)
        self._history = ((*self._history, (self.steps, obs.detach().clone())))[-self.history_length:]
        self.steps += 1
        return self._chunk.actions[index]

    @torch.no_grad()
    def act(self, obs):
        return self.act_planned(obs)
