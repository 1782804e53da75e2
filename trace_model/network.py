"""The TRACE denoiser: MONAI ``DiffusionModelUNet`` on frame pairs with multimodal conditioning.

eps_theta(x_t^{(i,j)}, t | m_i, m_j, f_{i->j}, text, E(r_i), E(r_j)) : R^{(2C+2) x h x w} -> R^{2C x h x w}   (eq. 6), C = 1

* anatomy: the two mask (or guidance) channels are concatenated to the noisy pair (eq. 6);
* flow: ``FlowAdapter`` features added to the first feature map (after ``conv_in``);
* text: frozen CLIP hidden states h_t -> h_t + v'_t (``TextAdapter``) -> the UNet's cross-attention context;
* positions: Concat(E(r_i), E(r_j)) (eq. 7) -> MLP -> added to the timestep embedding.

Why MONAI rather than diffusers: MONAI (installed, maintained, medical-imaging oriented) ships the
2-D/3-D ``DiffusionModelUNet`` with cross-attention and the DDIM scheduler, separate from each other as
in diffusers; diffusers is not installed and would add a large dependency for the same pieces.
The forward below re-runs the UNet's own sub-modules (MONAI 1.6 ``DiffusionModelUNet.forward``,
``monai/networks/nets/diffusion_model_unet.py``) so that the flow features and the position embedding
can be injected and blocks can be gradient-checkpointed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn
from torch.utils.checkpoint import checkpoint

from .conditioning import FlowAdapter, PositionConditioner, TextAdapter
from .config import TraceConfig

FRAME_CHANNELS = 1  # C: CT slices are grey


class TextEncoder(Protocol):
    def encode_text_hidden(self, texts: list[str]) -> torch.Tensor: ...


class TraceUNet(nn.Module):
    def __init__(self, cfg: TraceConfig):
        super().__init__()
        self.cfg = cfg
        m, c = cfg.model, cfg.conditioning
        self.in_channels = 2 * FRAME_CHANNELS + 2
        self.out_channels = 2 * FRAME_CHANNELS
        self.use_text = c.text != "none"
        self.use_flow = c.flow != "none"
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=self.in_channels, out_channels=self.out_channels,
            num_res_blocks=m.num_res_blocks, channels=tuple(m.channels), attention_levels=tuple(m.attention_levels),
            norm_num_groups=m.norm_num_groups, num_head_channels=m.num_head_channels,
            with_conditioning=self.use_text, cross_attention_dim=c.text_dim if self.use_text else None,
            use_flash_attention=m.flash_attention)
        emb_dim = m.channels[0] * 4  # MONAI's time_embed_dim
        self.position = PositionConditioner(m.pos_dim, m.pos_lambda, emb_dim)
        self.flow_adapter = FlowAdapter(m.channels[0]) if self.use_flow else None
        self.text_adapter = TextAdapter(c.text_dim) if self.use_text else None
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, positions: torch.Tensor,
                flow: torch.Tensor | None = None, text_hidden: torch.Tensor | None = None,
                pass_cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """x: noisy pair (B, 2C, H, W); t: (B,) timesteps; cond: (B, 2, H, W) masks M / guidance maps G
        of the two slices; positions: (B, 2) relative positions (r_i, r_j); flow: (B, 2, H, W) or None
        (null flow); text_hidden: (B, L, W) frozen CLIP hidden states or None. Returns eps (B, 2C, H, W).

        ``pass_cache``: an empty dict shared by the calls of one DDIM pass (same cond, positions, flow and
        text, only x and t change). The position embedding, flow features, text context and the cast
        mask channels are computed by the first call and reused: the same operations on the same inputs,
        so the outputs are bit-identical to calls without it. Never share one across different inputs."""
        B = x.shape[0]
        if x.shape[1] != self.out_channels or cond.shape != (B, 2, *x.shape[2:]):
            raise ValueError(f"Expected x (B, {self.out_channels}, H, W) and cond (B, 2, H, W), "
                             f"got {tuple(x.shape)} and {tuple(cond.shape)}")
        if positions.shape != (B, 2):
            raise ValueError(f"Expected positions (B, 2), got {tuple(positions.shape)}")
        u = self.unet
        memo = _Memo(pass_cache)
        h_in = torch.cat([x, memo("cond", lambda: cond.to(x.dtype))], dim=1)  # (B, 2C + 2, H, W), eq. 6
        emb = u.time_embed(get_timestep_embedding(t, u.block_out_channels[0]).to(x.dtype))
        emb = emb + memo("pos", lambda: self.position(positions)).to(emb.dtype)  # E(r_i), E(r_j), eq. 7
        context = None
        if self.use_text:
            if text_hidden is None:
                raise ValueError("this model is text-conditioned: pass text_hidden (B, L, W)")
            context = memo("text", lambda: self.text_adapter(text_hidden.to(x.dtype)))  # h_t + v'_t
        h = u.conv_in(h_in)
        if self.use_flow and flow is not None:
            h = h + memo("flow", lambda: self.flow_adapter(flow.to(h.dtype)))
        res: list[torch.Tensor] = [h]
        for block in u.down_blocks:
            h, r = self._run(block, hidden_states=h, temb=emb, context=context)
            res.extend(r)
        h = self._run(u.middle_block, hidden_states=h, temb=emb, context=context)
        for block in u.up_blocks:
            n = len(block.resnets)
            skip, res = res[-n:], res[:-n]
            h = self._run(block, hidden_states=h, res_hidden_states_list=skip, temb=emb, context=context)
        return u.out(h)

    def _run(self, block: nn.Module, **kw: Any) -> Any:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, use_reentrant=False, **kw)
        return block(**kw)


class _Memo:
    """Values computed once per DDIM pass (see ``TraceUNet.forward``'s ``pass_cache``); a no-op without a dict."""

    def __init__(self, store: dict[str, torch.Tensor] | None):
        self.store = store

    def __call__(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.store is None:
            return make()
        v = self.store.get(key)
        if v is None:
            v = self.store[key] = make()
        return v


def load_text_encoder(cfg: TraceConfig, device: str | torch.device = "cpu",
                      path: str | None = None) -> TextEncoder | None:
    """The frozen CLIP text encoder named by ``conditioning.text`` (None for ``"none"``). Weights come from the
    trace-bench weights registry through ``trace_bench.networks.clip.load_clip_model``; missing weights
    raise ``WeightsError`` (never a randomly initialised encoder)."""
    if cfg.conditioning.text == "none":
        return None
    from trace_bench.networks.clip import load_clip_model  # the shared CLIP network

    return load_clip_model(name=cfg.conditioning.text, path=path, device=str(device))


def encode_prompts(encoder: TextEncoder | None, prompts: list[str], device: torch.device) -> torch.Tensor | None:
    if encoder is None:
        return None
    with torch.no_grad():
        return encoder.encode_text_hidden(list(prompts)).float().to(device)
