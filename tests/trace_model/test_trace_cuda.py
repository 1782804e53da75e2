"""CUDA paths of the TRACE model (bf16 autocast, gradient checkpointing, batched sampling). Skipped without a GPU.
Networks are small and randomly initialised: these tests check plumbing and numerics, not image quality."""

from __future__ import annotations

import pytest
import torch

from trace_model.config import TraceConfig
from trace_model.network import TraceUNet
from trace_model.sampler import SamplerOptions, make_scheduler, sample_volumes
from trace_model.train import training_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cfg(**cond) -> TraceConfig:
    return TraceConfig().replace(
        model={"image_size": 64, "channels": [32, 64, 64], "attention_levels": [False, False, True],
               "num_res_blocks": 1, "num_head_channels": 32, "norm_num_groups": 16},
        conditioning={"flow": "none", "text": "none", **cond}, train={"batch_size": 8})


def _batch(B: int, S: int, g: torch.Generator) -> dict:
    return {"frames": torch.rand(B, 2, S, S, generator=g) * 2 - 1, "masks": (torch.rand(B, 2, S, S, generator=g) > 0.5).float(),
            "flow": torch.zeros(B, 2, S, S), "positions": torch.rand(B, 2, generator=g)}


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = TraceUNet(_cfg()).cuda().train()
    b = _batch(4, 64, torch.Generator().manual_seed(1))
    grads = []
    for ckpt in (False, True):
        model.gradient_checkpointing = ckpt
        model.zero_grad()
        loss = training_loss(model, b, make_scheduler(model.cfg), torch.Generator().manual_seed(2), torch.device("cuda"))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_bf16_training_reduces_loss():
    torch.manual_seed(0)
    model = TraceUNet(_cfg()).cuda().train()
    model.gradient_checkpointing = True
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    b = _batch(8, 64, torch.Generator().manual_seed(1))
    losses = []
    for step in range(40):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = training_loss(model, b, make_scheduler(model.cfg), torch.Generator().manual_seed(step % 4), torch.device("cuda"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8


def test_batched_sampling_matches_single_volume_and_is_deterministic():
    torch.manual_seed(0)
    model = TraceUNet(_cfg()).cuda().eval()
    masks = (torch.rand(3, 7, 64, 64, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    opts = SamplerOptions(steps=4, bf16=False)
    full = sample_volumes(model, masks, lengths=[7, 5, 6], seeds=[10, 11, 12], options=opts).frames
    again = sample_volumes(model, masks, lengths=[7, 5, 6], seeds=[10, 11, 12], options=opts).frames
    assert torch.equal(full, again)
    alone = sample_volumes(model, masks[1:2, :5], seeds=[11], options=opts).frames
    assert torch.allclose(full[1, :5], alone[0], atol=2e-3)
    bf = sample_volumes(model, masks, lengths=[7, 5, 6], seeds=[10, 11, 12], options=SamplerOptions(steps=4)).frames
    assert torch.isfinite(bf).all() and (bf - full).abs().mean() < 0.1
