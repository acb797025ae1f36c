"""BC-RNN: an LSTM trained on short windows of demonstrations.

At run time the LSTM state is reset every ``seq_len`` steps, matching how it was
trained (robomimic's ``rnn_horizon`` rollout behaviour); without the reset, the state
drifts into a regime the network never saw.

Image keys' encoders train end to end with the LSTM (their weights are in the policy's optimiser),
each frame of a window cropped on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.algos.base import Algo, AlgoConfig, adam, masked_mse, register, step_optimizer
from robolearn.config import positive
from robolearn.models.nets import LSTMPolicy


@dataclass
class BCRNNConfig(AlgoConfig):
    hidden: int = positive(400)
    layers: int = positive(2)
    seq_len: int = positive(10)


@register("bc_rnn")
class BCRNN(Algo):
    Config = BCRNNConfig

    def __init__(self, cfg: BCRNNConfig, obs_spec, normalizers, action_dim: int):
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        self.net = LSTMPolicy(self.obs_dim, action_dim, cfg.hidden, cfg.layers)
        self.opt = adam([*self.net.parameters(), *self.encoder.parameters()], lr=cfg.lr)
        self._state = None
        self._t = 0

    def optimizers(self):
        return {"policy": self.opt}

    def train_step(self, data, gen):
        b = data.sequences(self.cfg.batch_size, self.cfg.seq_len, gen)
        pred, _ = self.net(self.encode(b["obs"], gen))
        loss = masked_mse(pred, b["action"], b["mask"])
        step_optimizer(self.opt, loss)
        return {"loss/policy": loss.item()}

    def reset_policy(self, gen=None):
        self._state, self._t = None, 0

    @torch.no_grad()
    def act(self, obs):
        if self._t % self.cfg.seq_len == 0:
            self._state = None
        self._t += 1
        a, self._state = self.net(obs[None, None], self._state)
        return a[0, 0]
