"""IRIS (Mandlekar et al., ICRA 2020): HBC plus a BCQ value selector.

Every T steps (its ``plan``) the goal cVAE proposes N candidate subgoals; each is scored by
V(g) = max over M actions sampled from the action cVAE of Q(g, a), where Q is learnt by
batch-constrained Q-learning on the low-level (state, action) transitions (``value.kind:
expectile`` scores by an in-sample V(g) instead: robolearn/algos/expectile_value.py). The best
candidate becomes the goal of the goal-conditioned LSTM. Because Q propagates the sparse
success reward backwards through every demo, the selector prefers subgoals that lie on
the fastest way to success seen in *any* demo: it stitches the best pieces of many
suboptimal demos together, which pure imitation (HBC, BC-RNN) cannot.

The value selector shares the policy's observation encoder rather than owning one: it reads the
goal keys' blocks of the same features the goal cVAE proposes and the low level is conditioned
on, so V is learnt on exactly the space candidates live in. A critic with its own (image)
encoder would have nothing to encode at planning time, since a proposed goal is goal-key
features and carries no image; goal keys are low-dimensional, so the critic's input has no
weights of its own to train and image keys reach the selector only through the goals the cVAE
proposes from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robolearn.algos.base import register
from robolearn.algos.bcq import BCQCritic, BCQCriticConfig
from robolearn.algos.expectile_value import ExpectileValue
from robolearn.algos.hbc import HBC, HBCConfig, SubgoalPlan
from robolearn.config import ConfigError, checked, positive


@dataclass
class IRISValueConfig(BCQCriticConfig):
    #: how candidates are scored: ``bcq``, the max over sampled actions of Q(g, a) (the paper's
    #: selector); ``expectile``, an in-sample V(g) fit to an upper expectile of Q at the recorded
    #: actions (robolearn/algos/expectile_value.py; it uses no action cVAE and samples nothing).
    kind: str = checked("bcq", choices=("bcq", "expectile"))
    #: the level ``expectile`` V fits: 0.5 the behaviour's mean value, towards 1 the best recorded action's.
    expectile: float = checked(0.9, check="open_unit")


@dataclass
class IRISConfig(HBCConfig):
    value: IRISValueConfig = field(default_factory=IRISValueConfig)
    #: candidate subgoals proposed per re-plan.
    num_goal_samples: int = positive(100)
    #: actions sampled per candidate to take the max over in V(g).
    num_value_action_samples: int = positive(100)
    #: re-planning after a stall (None: off). When a re-plan finds the goal keys' features within
    #: this distance (standardised units) of where the pursued goal was planned from, the low
    #: level could not approach that goal from here; the candidates nearer to it than to the
    #: current state are then passed over, so the selector does not pick the same unreachable goal
    #: again (N more candidates are drawn from the full prior then). Acting only: training is unchanged.
    stall_tolerance: float | None = positive(None)


@register("iris")
class IRIS(HBC):
    Config = IRISConfig

    def __init__(self, cfg: IRISConfig, obs_spec, normalizers, action_dim: int):
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        if cfg.stall_tolerance is not None and not self.goals_observed:
            raise ConfigError("algo", "stall_tolerance", f"needs the state's goal features when acting, and goal_only_keys "
                              f"{cfg.goal_only_keys} are not observed then: drop one of the two")
        # The value scores goals, so it is learnt on the goal keys' features of each state (``encode_goal``:
        # low-dimensional keys, no weights to pass to its optimiser).
        if cfg.value.kind == "expectile":
            self.value = ExpectileValue(cfg.value, self.goal_dim, action_dim, cfg.value.expectile)
        else:
            self.value = BCQCritic(cfg.value, self.goal_dim, action_dim)
        self.last_scores: torch.Tensor | None = None
        #: (origin, goal) of the plan being pursued: where it was planned from, and its goal.
        self._pursued: tuple[torch.Tensor, torch.Tensor] | None = None

    def optimizers(self):
        return {**super().optimizers(), **self.value.optimizers()}

    def train_step(self, data, gen):
        metrics = super().train_step(data, gen)
        metrics.update(self.value.update(self.value.sample(data, self.high_batch_size, gen, self.encode_goal), gen))
        return metrics

    @torch.no_grad()
    def score_goals(self, goals: torch.Tensor) -> torch.Tensor:
        """V(g) for each candidate goal (N, goal_dim) -> (N,)."""
        return self.value.state_value(goals, self.cfg.num_value_action_samples, self._gen)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> SubgoalPlan:
        """N candidates from the goal cVAE, each scored by V; the best one is the goal.

        After a stall (``stall_tolerance``), N more candidates come from the cVAE's full prior, and
        the goal is the best of those nearer to the current state than to the goal the low level
        did not approach (the best of all when none is)."""
        goals = self.sample_goals(obs, self.cfg.num_goal_samples)
        scores = self.score_goals(goals)
        here = self.goal_features(obs)
        failed = self._failed_goal(here)
        if failed is None:
            best = int(scores.argmax())
        else:
            # The clipped proposals from a state the low level is stuck in tend to lie in one cluster
            # round the goal it could not reach; the full prior's reach further.
            wide = self.sample_goals(obs, self.cfg.num_goal_samples, clip=False)
            goals, scores = torch.cat([goals, wide]), torch.cat([scores, self.score_goals(wide)])
            away = torch.linalg.vector_norm(goals - failed, dim=-1) > torch.linalg.vector_norm(goals - here, dim=-1)
            best = int(scores.masked_fill(~away, float("-inf")).argmax()) if bool(away.any()) else int(scores.argmax())
        self.last_scores = scores
        return SubgoalPlan(goal=goals[best], candidates=goals, scores=scores, origin=here)

    def _failed_goal(self, here: torch.Tensor) -> torch.Tensor | None:
        """The pursued goal when the state is still within ``stall_tolerance`` of where it was planned
        (the low level did not approach it), else None."""
        pursued, tol = self._pursued, self.cfg.stall_tolerance
        if tol is None or pursued is None or here is None:
            return None
        origin, goal = pursued
        return goal if float(torch.linalg.vector_norm(here - origin)) < tol else None

    def adopt(self, plan: SubgoalPlan) -> None:
        super().adopt(plan)
        self._pursued = None if plan.origin is None else (plan.origin, plan.goal)

    def reset_policy(self, gen=None):
        super().reset_policy(gen)
        self._pursued = None

    def choose_goal(self, obs):
        return self.plan(obs).goal
