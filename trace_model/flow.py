"""Optical flow f_{i->j} between the two frames of a pair (section 3.2.1).

Kinds (``conditioning.flow``):

* ``raft-small`` / ``raft-large``: torchvision RAFT, weights through the trace-bench weights registry
  (``resolve_weights("raft-small" | "raft-large")``); missing weights -> ``WeightsError`` (never a
  random RAFT). Inputs below 128 px are upsampled to 128 px (RAFT's minimum) and the flow scaled back.
* ``farneback``: OpenCV's classical Farneback flow; weight-free, used by the offline demo.
* ``none``: no flow conditioning (the flow adapter is not built).

Flows are returned in units of the image width (pixels / W), so they do not depend on resolution.
At inference the next frame does not exist yet; ``sampler.py`` decides which flow is fed
(``conditioning.inference_flow``: zero | previous | refine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trace_bench.errors import ConfigError, WeightsError


class FlowEstimator:
    """``FlowEstimator(kind)(a, b)``: frames (B, 1, H, W) in [-1, 1] -> flow a->b, (B, 2, H, W), units of W."""

    def __init__(self, kind: str, device: str | torch.device = "cpu", weights_path: str | Path | None = None,
                 raft_updates: int = 12):
        self.kind, self.device, self.raft_updates = kind, torch.device(device), raft_updates
        self.net = None
        if kind in ("raft-small", "raft-large"):
            from trace_bench.optional import require
            from trace_bench.weights import resolve_weights
            from trace_bench.weights_load import load_state_dict

            resolved = resolve_weights(kind, weights_path)
            flow_models = require("torchvision.models.optical_flow", f"{kind} optical flow")
            net = (flow_models.raft_small if kind == "raft-small" else flow_models.raft_large)(weights=None,
                                                                                              progress=False)
            state = load_state_dict(resolved.path, kind)
            try:
                net.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError) as e:
                raise WeightsError(f"{resolved.path}: not a torchvision {kind} state dict ({e})") from None
            self.net = net.eval().to(self.device).requires_grad_(False)
        elif kind == "farneback":
            try:
                import cv2  # noqa: F401
            except ImportError:
                raise ConfigError("flow 'farneback' needs OpenCV: pip install opencv-python-headless") from None
        elif kind != "none":
            raise ConfigError(f"unknown flow kind {kind!r}; expected raft-small, raft-large, farneback or none")

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 1:
            raise ValueError(f"Expected two (B, 1, H, W) frame batches, got {tuple(a.shape)} and {tuple(b.shape)}")
        B, _, H, W = a.shape
        if self.kind == "none":
            return torch.zeros(B, 2, H, W, device=a.device)
        if self.kind == "farneback":
            return self._farneback(a, b)
        return self._raft(a, b)

    def _farneback(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        import cv2

        W = a.shape[-1]
        to8 = lambda t: np.ascontiguousarray(((t.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy())
        A, Bn = to8(a[:, 0]), to8(b[:, 0])
        out = np.stack([cv2.calcOpticalFlowFarneback(A[i], Bn[i], None, 0.5, 3, 9, 3, 5, 1.1, 0)
                        for i in range(A.shape[0])])  # (B, H, W, 2) pixels, (dx, dy)
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().to(a.device) / W

    def _raft(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        H, W = a.shape[-2:]
        s = max(128, ((max(H, W) + 7) // 8) * 8)
        dev_in = a.device
        a3 = F.interpolate(a.float(), size=(s, s), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1).to(self.device)
        b3 = F.interpolate(b.float(), size=(s, s), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1).to(self.device)
        flow = self.net(a3.clamp(-1, 1), b3.clamp(-1, 1), num_flow_updates=self.raft_updates)[-1]  # pixels at s
        flow = F.interpolate(flow, size=(H, W), mode="bilinear", align_corners=False) / s
        return flow.to(dev_in)
