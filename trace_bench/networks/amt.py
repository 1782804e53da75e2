"""AMT-S frame interpolation network (Li et al., "AMT: All-Pairs Multi-Field Transforms for Efficient
Frame Interpolation", CVPR 2023), written for trace-bench.

Architecture as in VBench's copy of AMT (Vchitect/VBench ``vbench/third_party/amt``:
``networks/AMT-S.py``, ``networks/blocks/{feat_enc,ifrnet,multi_flow,raft}.py``, config
``cfgs/AMT-S.yaml``: ``corr_radius 3, corr_lvls 4, num_flows 3``; channels 20/32/44/56, skip 20).
Module and parameter names equal the original ones, so the published ``amt-s.pth``
(``{"state_dict": ...}``) loads with ``strict=True`` (:func:`load_amt_s`).

``forward(img0, img1, embt)`` takes RGB in [0, 1], (B, 3, H, W) with H, W multiples of 16, and
``embt`` (B, 1, 1, 1) the time step (0.5 for the midpoint); it returns the interpolated frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsError


# ----------------------------------------------------------------------------- utilities
def resize(x: torch.Tensor, scale_factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False)


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp of ``img`` by pixel ``flow`` (bilinear, border padding, align_corners=True)."""
    b, _, h, w = flow.shape
    xx = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, -1, h, -1)
    yy = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, -1, -1, w)
    grid = torch.cat([xx, yy], 1).to(img)
    norm = torch.cat([flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    return F.grid_sample(img, (grid + norm).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def coords_grid(batch: int, ht: int, wd: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(ht, device=device), torch.arange(wd, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=0).float()[None].repeat(batch, 1, 1, 1)


def bilinear_sampler(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` at pixel coordinates ``coords`` (..., 2) = (x, y), align_corners=True."""
    h, w = img.shape[-2:]
    x, y = coords.split([1, 1], dim=-1)
    grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


def convrelu(cin: int, cout: int, k: int = 3, s: int = 1, p: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, bias=True), nn.PReLU(cout))


# ----------------------------------------------------------------------------- feature encoder (RAFT small)
class BottleneckBlock(nn.Module):
    """RAFT bottleneck with instance norm (no affine parameters)."""

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes // 4, 1, padding=0)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, 1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = nn.InstanceNorm2d(planes // 4)
        self.norm2 = nn.InstanceNorm2d(planes // 4)
        self.norm3 = nn.InstanceNorm2d(planes)
        self.downsample = None
        if stride != 1:
            self.norm4 = nn.InstanceNorm2d(planes)
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride), self.norm4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class SmallEncoder(nn.Module):
    """RAFT small feature encoder, 1/8 resolution, ``output_dim`` channels (84 in AMT-S)."""

    def __init__(self, output_dim: int = 84) -> None:
        super().__init__()
        self.norm1 = nn.InstanceNorm2d(32)
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BottleneckBlock(32, 32, 1), BottleneckBlock(32, 32, 1))
        self.layer2 = nn.Sequential(BottleneckBlock(32, 64, 2), BottleneckBlock(64, 64, 1))
        self.layer3 = nn.Sequential(BottleneckBlock(64, 96, 2), BottleneckBlock(96, 96, 1))
        self.conv2 = nn.Conv2d(96, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


# ----------------------------------------------------------------------------- IFRNet-style blocks
class ResBlock(nn.Module):
    def __init__(self, cin: int, side: int) -> None:
        super().__init__()
        self.side_channels = side
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1), nn.PReLU(cin))
        self.conv2 = nn.Sequential(nn.Conv2d(side, side, 3, 1, 1), nn.PReLU(side))
        self.conv3 = nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1), nn.PReLU(cin))
        self.conv4 = nn.Sequential(nn.Conv2d(side, side, 3, 1, 1), nn.PReLU(side))
        self.conv5 = nn.Conv2d(cin, cin, 3, 1, 1)
        self.prelu = nn.PReLU(cin)

    def _side(self, out: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        s = self.side_channels
        return torch.cat([out[:, :-s], conv(out[:, -s:])], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self._side(self.conv1(x), self.conv2))
        out = self.conv5(self._side(out, self.conv4))
        return self.prelu(x + out)


class Encoder(nn.Module):
    """Four-level image pyramid (strides 2, 4, 8, 16)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels = channels
        prev = 3
        for i, ch in enumerate(channels, 1):
            self.register_module(f"pyramid{i}", nn.Sequential(convrelu(prev, ch, 3, 2, 1), convrelu(ch, ch, 3, 1, 1)))
            prev = ch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i in range(len(self.channels)):
            x = getattr(self, f"pyramid{i + 1}")(x)
            out.append(x)
        return out


class InitDecoder(nn.Module):
    def __init__(self, cin: int, cout: int, skip: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(convrelu(cin * 2 + 1, cin * 2), ResBlock(cin * 2, skip),
                                       nn.ConvTranspose2d(cin * 2, cout + 4, 4, 2, 1, bias=True))

    def forward(self, f0: torch.Tensor, f1: torch.Tensor, embt: torch.Tensor):
        h, w = f0.shape[2:]
        out = self.convblock(torch.cat([f0, f1, embt.repeat(1, 1, h, w)], 1))
        flow0, flow1 = torch.chunk(out[:, :4], 2, 1)
        return flow0, flow1, out[:, 4:]


class IntermediateDecoder(nn.Module):
    def __init__(self, cin: int, cout: int, skip: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(convrelu(cin * 3 + 4, cin * 3), ResBlock(cin * 3, skip),
                                       nn.ConvTranspose2d(cin * 3, cout + 4, 4, 2, 1, bias=True))

    def forward(self, ft: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor, flow0_in: torch.Tensor,
                flow1_in: torch.Tensor):
        out = self.convblock(torch.cat([ft, warp(f0, flow0_in), warp(f1, flow1_in), flow0_in, flow1_in], 1))
        flow0, flow1 = torch.chunk(out[:, :4], 2, 1)
        flow0 = flow0 + 2.0 * resize(flow0_in, 2.0)
        flow1 = flow1 + 2.0 * resize(flow1_in, 2.0)
        return flow0, flow1, out[:, 4:]


class MultiFlowDecoder(nn.Module):
    def __init__(self, cin: int, skip: int, num_flows: int = 3) -> None:
        super().__init__()
        self.num_flows = num_flows
        self.convblock = nn.Sequential(convrelu(cin * 3 + 4, cin * 3), ResBlock(cin * 3, skip),
                                       nn.ConvTranspose2d(cin * 3, 8 * num_flows, 4, 2, 1, bias=True))

    def forward(self, ft, f0, f1, flow0, flow1):
        n = self.num_flows
        out = self.convblock(torch.cat([ft, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        d0, d1, mask, img_res = torch.split(out, [2 * n, 2 * n, n, 3 * n], 1)
        flow0 = d0 + 2.0 * resize(flow0, 2.0).repeat(1, n, 1, 1)
        flow1 = d1 + 2.0 * resize(flow1, 2.0).repeat(1, n, 1, 1)
        return flow0, flow1, torch.sigmoid(mask), img_res


def multi_flow_combine(comb_block: nn.Module, img0, img1, flow0, flow1, mask, img_res, mean):
    """Warp both frames by each of the ``num_flows`` flow pairs, blend by the masks, add the residual
    and the removed mean, average the candidates and add ``comb_block``'s correction."""
    b, c, h, w = flow0.shape
    n = c // 2
    flow0 = flow0.reshape(b * n, 2, h, w)
    flow1 = flow1.reshape(b * n, 2, h, w)
    mask = mask.reshape(b * n, 1, h, w)
    img_res = img_res.reshape(b * n, 3, h, w)
    img0 = torch.stack([img0] * n, 1).reshape(-1, 3, h, w)
    img1 = torch.stack([img1] * n, 1).reshape(-1, 3, h, w)
    mean = torch.stack([mean] * n, 1).reshape(-1, 1, 1, 1)
    warps = mask * warp(img0, flow0) + (1 - mask) * warp(img1, flow1) + mean + img_res
    warps = warps.reshape(b, n, 3, h, w)
    return warps.mean(1) + comb_block(warps.view(b, -1, h, w))


# ----------------------------------------------------------------------------- correlation + update
class SmallUpdateBlock(nn.Module):
    def __init__(self, cdim: int, hidden_dim: int, flow_dim: int, corr_dim: int, fc_dim: int,
                 corr_levels: int = 4, radius: int = 3, scale_factor: int | None = None) -> None:
        super().__init__()
        planes = corr_levels * (2 * radius + 1) ** 2
        self.scale_factor = scale_factor
        self.convc1 = nn.Conv2d(2 * planes, corr_dim, 1, padding=0)
        self.convf1 = nn.Conv2d(4, flow_dim * 2, 7, padding=3)
        self.convf2 = nn.Conv2d(flow_dim * 2, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, fc_dim, 3, padding=1)

        def head(cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
                                 nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(hidden_dim, cout, 3, padding=1))

        self.gru = nn.Sequential(nn.Conv2d(fc_dim + 4 + cdim, hidden_dim, 3, padding=1),
                                 nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1))
        self.feat_head = head(cdim)
        self.flow_head = head(4)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, net: torch.Tensor, flow: torch.Tensor, corr: torch.Tensor):
        if self.scale_factor is not None:
            net = resize(net, 1 / self.scale_factor)
        cor = self.lrelu(self.convc1(corr))
        flo = self.lrelu(self.convf2(self.lrelu(self.convf1(flow))))
        inp = self.lrelu(self.conv(torch.cat([cor, flo], 1)))
        out = self.gru(torch.cat([inp, flow, net], 1))
        delta_net, delta_flow = self.feat_head(out), self.flow_head(out)
        if self.scale_factor is not None:
            delta_net = resize(delta_net, self.scale_factor)
            delta_flow = self.scale_factor * resize(delta_flow, self.scale_factor)
        return delta_net, delta_flow


class BidirCorrBlock:
    """All-pairs correlation volume of two 1/8 feature maps and its transpose, ``num_levels``
    average-pooled levels, looked up in a (2r+1)^2 window around given coordinates."""

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor, num_levels: int = 4, radius: int = 3) -> None:
        self.num_levels, self.radius = num_levels, radius
        b, dim, h, w = fmap0.shape
        corr = torch.matmul(fmap0.view(b, dim, h * w).transpose(1, 2), fmap1.view(b, dim, h * w))
        corr = corr.view(b, h, w, 1, h, w) / torch.sqrt(torch.tensor(dim).float())
        corr_t = corr.clone().permute(0, 4, 5, 3, 1, 2).reshape(b * h * w, 1, h, w)
        corr = corr.reshape(b * h * w, 1, h, w)
        self.pyramid, self.pyramid_t = [corr], [corr_t]
        for _ in range(num_levels - 1):
            corr, corr_t = F.avg_pool2d(corr, 2, stride=2), F.avg_pool2d(corr_t, 2, stride=2)
            self.pyramid.append(corr)
            self.pyramid_t.append(corr_t)

    def __call__(self, coords0: torch.Tensor, coords1: torch.Tensor):
        r = self.radius
        c0, c1 = coords0.permute(0, 2, 3, 1), coords1.permute(0, 2, 3, 1)
        b, h, w, _ = c0.shape
        d = torch.linspace(-r, r, 2 * r + 1, device=coords0.device)
        delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        out, out_t = [], []
        for i in range(self.num_levels):
            out.append(bilinear_sampler(self.pyramid[i], c0.reshape(b * h * w, 1, 1, 2) / 2 ** i + delta).view(b, h, w, -1))
            out_t.append(bilinear_sampler(self.pyramid_t[i], c1.reshape(b * h * w, 1, 1, 2) / 2 ** i + delta).view(b, h, w, -1))
        return (torch.cat(out, -1).permute(0, 3, 1, 2).contiguous().float(),
                torch.cat(out_t, -1).permute(0, 3, 1, 2).contiguous().float())


# ----------------------------------------------------------------------------- AMT-S
class AMTS(nn.Module):
    """AMT-S (``networks.AMT-S.Model`` of the AMT code base)."""

    def __init__(self, corr_radius: int = 3, corr_lvls: int = 4, num_flows: int = 3,
                 channels: tuple[int, ...] = (20, 32, 44, 56), skip_channels: int = 20) -> None:
        super().__init__()
        self.radius, self.corr_levels, self.num_flows = corr_radius, corr_lvls, num_flows
        ch = list(channels)
        self.feat_encoder = SmallEncoder(output_dim=84)
        self.encoder = Encoder(ch)
        self.decoder4 = InitDecoder(ch[3], ch[2], skip_channels)
        self.decoder3 = IntermediateDecoder(ch[2], ch[1], skip_channels)
        self.decoder2 = IntermediateDecoder(ch[1], ch[0], skip_channels)
        self.decoder1 = MultiFlowDecoder(ch[0], skip_channels, num_flows)
        self.update4 = self._update(44)
        self.update3 = self._update(32, 2)
        self.update2 = self._update(20, 4)
        self.comb_block = nn.Sequential(nn.Conv2d(3 * num_flows, 6 * num_flows, 3, 1, 1), nn.PReLU(6 * num_flows),
                                        nn.Conv2d(6 * num_flows, 3, 3, 1, 1))

    def _update(self, cdim: int, scale_factor: int | None = None) -> SmallUpdateBlock:
        return SmallUpdateBlock(cdim=cdim, hidden_dim=76, flow_dim=20, corr_dim=64, fc_dim=68,
                                scale_factor=scale_factor, corr_levels=self.corr_levels, radius=self.radius)

    @staticmethod
    def _lookup(corr_fn, coord, flow0, flow1, embt, downsample: int = 1):
        # linear motion: flow t->0 rescaled to 1->0 and t->1 rescaled to 0->1
        if downsample != 1:
            inv = 1 / downsample
            flow0, flow1 = inv * resize(flow0, inv), inv * resize(flow1, inv)
        corr0, corr1 = corr_fn(coord + flow1 * (1.0 / embt), coord + flow0 * (1.0 / (1.0 - embt)))
        return torch.cat([corr0, corr1], 1), torch.cat([flow0, flow1], 1)

    def _refine(self, update, corr_fn, coord, flow0, flow1, ft, embt, downsample):
        corr, flow = self._lookup(corr_fn, coord, flow0, flow1, embt, downsample)
        d_ft, d_flow = update(ft, flow, corr)
        d0, d1 = torch.chunk(d_flow, 2, 1)
        return flow0 + d0, flow1 + d1, ft + d_ft

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, embt: torch.Tensor, scale_factor: float = 1.0) -> torch.Tensor:
        mean_ = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean_, img1 - mean_
        i0 = resize(img0, scale_factor) if scale_factor != 1.0 else img0
        i1 = resize(img1, scale_factor) if scale_factor != 1.0 else img1
        b, _, h, w = i0.shape
        coord = coords_grid(b, h // 8, w // 8, img0.device)
        fmap0, fmap1 = torch.split(self.feat_encoder(torch.cat([i0, i1], 0)), [b, b], dim=0)
        corr_fn = BidirCorrBlock(fmap0, fmap1, radius=self.radius, num_levels=self.corr_levels)
        f0_1, f0_2, f0_3, f0_4 = self.encoder(i0)
        f1_1, f1_2, f1_3, f1_4 = self.encoder(i1)

        flow0, flow1, ft = self.decoder4(f0_4, f1_4, embt)
        flow0, flow1, ft = self._refine(self.update4, corr_fn, coord, flow0, flow1, ft, embt, 1)
        flow0, flow1, ft = self.decoder3(ft, f0_3, f1_3, flow0, flow1)
        flow0, flow1, ft = self._refine(self.update3, corr_fn, coord, flow0, flow1, ft, embt, 2)
        flow0, flow1, ft = self.decoder2(ft, f0_2, f1_2, flow0, flow1)
        flow0, flow1, ft = self._refine(self.update2, corr_fn, coord, flow0, flow1, ft, embt, 4)
        flow0, flow1, mask, img_res = self.decoder1(ft, f0_1, f1_1, flow0, flow1)
        if scale_factor != 1.0:
            inv = 1.0 / scale_factor
            flow0, flow1 = resize(flow0, inv) * inv, resize(flow1, inv) * inv
            mask, img_res = resize(mask, inv), resize(img_res, inv)
        pred = multi_flow_combine(self.comb_block, img0, img1, flow0, flow1, mask, img_res, mean_)
        return torch.clamp(pred, 0, 1)


def amt_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """The network weights from an AMT checkpoint (``{"state_dict": ...}`` as published, or a bare
    state dict; ``module.`` prefixes of DDP training removed)."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict):
        raise WeightsError("AMT checkpoint: expected a dict with 'state_dict'")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_amt_s(path: str | Path, device: str = "cpu", name: str = "amt-s") -> AMTS:
    """AMT-S with the weights of ``path`` loaded strictly, in eval mode."""
    from ..weights_load import load_state_dict, load_strict

    model = AMTS()
    load_strict(model, amt_state_dict(load_state_dict(path, name)), path, name, "AMT-S")
    return model.to(device).eval()


def load_backbone(path: str, device: str, name: str, ctx: Any) -> AMTS:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``amt-s``)."""
    return load_amt_s(path, device, name)
