"""Network building blocks shared by the algorithms: MLP, goal/action conditional VAE,
LSTM sequence policy and Q ensembles.

Kept free of training bookkeeping (d3rlpy's split): each block is pure torch maths,
and the algorithms in ``robolearn/algos`` own optimisers, targets and schedules.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), activation()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class ConditionalVAE(nn.Module):
    """p(x | c) as a conditional VAE with an N(0, I) prior.

    Used twice by IRIS: as the goal proposer (x = state T steps ahead, c = current state)
    and as BCQ's action model (x = action, c = state), whose samples bound the max over
    next actions to actions the data supports.
    """

    def __init__(self, x_dim: int, cond_dim: int, latent_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp(x_dim + cond_dim, hidden, 2 * latent_dim)
        self.decoder = mlp(latent_dim + cond_dim, hidden, x_dim)

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(torch.cat([x, cond], -1)).chunk(2, -1)
        return mu, logvar.clamp(-8.0, 8.0)

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, cond], -1))

    def loss(self, x: torch.Tensor, cond: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x, cond)
        # Drawn on the generator's device (training generators live on the CPU), then moved.
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + eps * (0.5 * logvar).exp()
        recon = self.decode(z, cond)
        recon_loss = F.mse_loss(recon, x, reduction="none").sum(-1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        return recon_loss + kl_weight * kl, {"recon": recon_loss.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, n: int, generator: torch.Generator | None = None, clip_z: float | None = None):
        """``n`` samples per row of ``cond``: returns (B, n, x_dim)."""
        B = cond.shape[0]
        z = torch.randn((B, n, self.latent_dim), generator=generator, dtype=cond.dtype).to(cond.device)
        if clip_z is not None:
            z = z.clamp(-clip_z, clip_z)
        c = cond.unsqueeze(1).expand(B, n, cond.shape[-1])
        return self.decode(z, c)


class LSTMPolicy(nn.Module):
    """LSTM over a sequence of inputs with a deterministic action head (L2 loss).

    A plain L2 head at lr 1e-3 beats robomimic's GMM head at the budgets people actually
    run (docs/decisions.md, ``algo.lr``); we use the former.
    """

    def __init__(self, in_dim: int, action_dim: int, hidden: int, layers: int, head_hidden: Sequence[int] = ()):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True)
        self.head = mlp(hidden, head_hidden, action_dim)
        #: ``_step_weights``'s: (the parameters' storage and versions, the fused weights per layer).
        self._step_cache: tuple[tuple, list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def forward(self, x: torch.Tensor, state=None):
        if x.shape[1] == 1 and x.device.type == "cpu" and not torch.is_grad_enabled():
            out, state = self.one_step(x, state)
        else:
            out, state = self.lstm(x, state)
        return torch.tanh(self.head(out)), state

    def one_step(self, x: torch.Tensor, state=None):
        """One time step of ``self.lstm`` (x: (B, 1, in)), layer by layer: acting on the CPU.

        ``nn.LSTM`` there runs oneDNN's kernel, which sets up its primitive on every call (5-8 ms
        per step of a 2 x 400 LSTM on one thread). At batch 1 a step is a matrix-vector product
        per layer, bound by reading the weights, so each layer's ``[W_ih W_hh]`` is kept
        transposed and contiguous (``_step_weights``) and applied to ``[x h]`` in one ``addmm``:
        0.6 ms a step for 2 x 400 on one thread against 0.9 ms through ``torch.lstm_cell``, which
        multiplies by the two untransposed matrices apart (bench/throughput.py). The same maths;
        outputs differ from ``nn.LSTM``'s in float rounding only."""
        lstm = self.lstm
        if state is None:
            zeros = x.new_zeros(lstm.num_layers, x.shape[0], lstm.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        inp, hs, cs = x[:, 0], [], []
        for layer, (w, b) in enumerate(self._step_weights()):
            gates = torch.addmm(b, torch.cat([inp, h0[layer]], 1), w)
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c0[layer] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
            inp = h
        return inp.unsqueeze(1), (torch.stack(hs), torch.stack(cs))

    def _step_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, ``[W_ih W_hh]`` transposed ((in + H) x 4H, contiguous) and ``b_ih + b_hh``.

        Rebuilt whenever a weight changes (an optimiser step or a ``load_state_dict`` bumps its
        version counter; ``.to`` or a copy gives new storage), so a policy acted with between
        training steps always acts with the current weights."""
        key = tuple((p.data_ptr(), p._version) for p in self.lstm.parameters())
        if self._step_cache is None or self._step_cache[0] != key:
            with torch.no_grad():
                fused = [(torch.cat([w_ih, w_hh], 1).t().contiguous(), b_ih + b_hh)
                         for w_ih, w_hh, b_ih, b_hh in self.lstm.all_weights]
            self._step_cache = (key, fused)
        return self._step_cache[1]


class QEnsemble(nn.Module):
    """N independent critics Q(s, a); returns (N, B)."""

    def __init__(self, s_dim: int, a_dim: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.critics = nn.ModuleList([mlp(s_dim + a_dim, hidden, 1) for _ in range(n)])

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([s, a], -1)
        return torch.stack([c(x).squeeze(-1) for c in self.critics], 0)
