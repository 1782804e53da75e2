"""Conditioning of TRACE (paper section 3.2): anatomy mask channels, relative-position embeddings
(eq. 7), the optical-flow adapter, the text adapter, and the guidance map G(n) of section 3.3.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ConditioningConfig


# ------------------------------------------------------------------------- (a) anatomy masks
def encode_labels(labels: np.ndarray | torch.Tensor, cfg: ConditioningConfig) -> torch.Tensor:
    """Label map (integers, 0 = background) -> one mask channel M in [0, 1] per slice (eq. 6 has one
    channel per frame, so classes are encoded as evenly spaced levels).

    * granularity ``"2"``: M = 1 on any label > 0 (body), 0 on background;
    * ``"3"`` (paper's best): background 0, lungs (``lung_labels``) 0.5, every other label 1;
    * ``"full"``: M = label / ``max_label`` (every class its own level).
    """
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    g = cfg.mask_granularity
    if g == "2":
        return (lab > 0).float()
    if g == "3":
        lung = torch.zeros_like(lab, dtype=torch.bool)
        for v in cfg.lung_labels:
            lung |= lab == int(v)
        out = (lab > 0).float()
        out[lung] = 0.5
        return out
    return (lab.float() / float(max(cfg.max_label, 1))).clamp(0.0, 1.0)


# ------------------------------------------------------------------------- (d) positions, eq. 7
def relative_position_embedding(r: torch.Tensor, dim: int = 64, lam: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of the relative slice position r = (f_i - f_0) / (f_N - f_0) in [0, 1] (eq. 7):

        E(r)_{2k} = sin(lam * r / 10000^{2k/d}),   E(r)_{2k+1} = cos(lam * r / 10000^{2k/d}).

    Reading of the scaling factor: eq. 7 prints the denominator as "10000 lambda^{2k/d}"; taken
    literally with r in [0, 1] every angle is below 1e-4 rad, so we read lambda as the factor that
    stretches r (lambda = 1 is the plain transformer embedding of r). ``r``: (...,) -> (..., dim).
    """
    k = torch.arange(dim // 2, dtype=torch.float32, device=r.device)
    freq = torch.exp(-math.log(10000.0) * 2.0 * k / dim)  # 1 / 10000^{2k/d}
    ang = lam * r.float()[..., None] * freq
    out = torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1)  # interleave: 2k -> sin, 2k+1 -> cos
    return out.flatten(-2)


class PositionConditioner(nn.Module):
    """Concat(E(r_i), E(r_j)) -> MLP -> added to the UNet's timestep embedding (section 3.2.3)."""

    def __init__(self, dim: int, lam: float, emb_dim: int):
        super().__init__()
        self.dim, self.lam = dim, lam
        self.mlp = nn.Sequential(nn.Linear(2 * dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:  # (B, 2) -> (B, emb_dim)
        e = relative_position_embedding(positions, self.dim, self.lam)  # (B, 2, d)
        return self.mlp(e.flatten(1))


# ------------------------------------------------------------------------- (b) flow adapter
class FlowAdapter(nn.Module):
    """Trainable adapter for the optical flow f_{i->j} (section 3.2.1): (B, 2, H, W) flow in units of the
    image width -> features added to the UNet's first feature map. The last conv starts at zero, so an
    untrained adapter leaves the denoiser unchanged (ControlNet-style zero init)."""

    def __init__(self, out_channels: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2, hidden, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(hidden, out_channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        return self.net(flow)


# ------------------------------------------------------------------------- (c) text adapter
class TextAdapter(nn.Module):
    """v'_t = phi_2(W_2 phi_1(W_1 v_t)); the encoder hidden states become h_t + v'_t (section 3.2.2).
    phi_1 = GELU, phi_2 = tanh (bounded, so the residual cannot swamp the frozen CLIP states)."""

    def __init__(self, dim: int):
        super().__init__()
        self.w1, self.w2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        nn.init.zeros_(self.w2.weight)
        nn.init.zeros_(self.w2.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        return hidden + torch.tanh(self.w2(F.gelu(self.w1(hidden))))


# ------------------------------------------------------------------------- guidance map, section 3.3
def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def guidance_map(x: torch.Tensor, mask: torch.Tensor, *, gamma: float = 2.0, sigma: float = 1.5,
                 norm: str = "minmax") -> torch.Tensor:
    """G(n) = M(n) + [1 - M(n)] * F(H(x(n)^gamma))   (Algorithm 1, lines 6 and 9).

    ``x``: generated slice(s) in [-1, 1], (B, 1, H, W), mapped to u = (x + 1) / 2 in [0, 1] before the power.
    gamma: u^gamma amplifies high intensities (gamma > 1 darkens soft tissue relative to bone/contrast).
    H: Gaussian smoothing (``sigma`` pixels) applied only where the mask is background (M = 0);
    anatomy pixels keep their sharp values.
    F: ``"minmax"`` rescales each slice to [0, 1]; ``"none"`` leaves the values (already in [0, 1]).
    ``mask``: M(n) in [0, 1], (B, 1, H, W). The result lies in [0, 1] like a mask channel.
    """
    u = ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0) ** gamma
    bg = (mask <= 0).float()
    h = bg * _gaussian_blur(u, sigma) + (1.0 - bg) * u  # H: smooth the background only
    if norm == "minmax":
        lo = h.amin(dim=(1, 2, 3), keepdim=True)
        hi = h.amax(dim=(1, 2, 3), keepdim=True)
        h = (h - lo) / (hi - lo).clamp_min(1e-6)
    return mask + (1.0 - mask) * h
