"""SMALL RANDOMLY INITIALISED video networks saved to temporary weight files, and the crops they score: a
TorchScript I3D with the call signature of StyleGAN-V's i3d_torchscript.pt and a CLIP of OpenAI's layout at reduced
width (the published weights cannot be downloaded here). They test loading, preprocessing, clip sampling, states and
formulas, never published numbers. Fixtures (``i3d_file``, ``i3d_script``, ``clip_file``) are imported by
tests/metrics/test_fvd_clip.py and tests/metrics/test_kid_prdc.py (no tests here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trace_bench.protocol import FrameProtocol
from trace_bench.volume import Volume

SMALL = FrameProtocol(size=64)  # smaller frames keep the random-network tests fast


def ct_crop_volume(seed: int, z: int = 40) -> Volume:
    rng = np.random.default_rng(seed)
    a = rng.normal(-300, 400, size=(z, 32, 32)).astype(np.float32)
    return Volume(a, (5.0, 1.0, 1.0), np.eye(4), {})


class TinyStyleGANVI3D(torch.nn.Module):
    """Random stand-in with the call signature of StyleGAN-V's i3d_torchscript.pt."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            n, c, t, h, w = x.shape
            x = F.interpolate(x, size=(t, 32, 32), mode="trilinear", align_corners=False)
        return self.fc(self.conv(x).mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "i3d_torchscript.pt"
    torch.jit.script(TinyStyleGANVI3D().eval()).save(str(p))
    return p


@pytest.fixture()
def i3d_script(i3d_file):
    """The small random TorchScript I3D, pinned as the registry's published file during the test (a
    TorchScript file runs only when its sha256 is the pinned one; the real entry pins none yet)."""
    from helpers.pinned_weights import pinned_weights

    with pinned_weights("i3d-torchscript", i3d_file):
        yield i3d_file


# ----------------------------------------------------------------------------- CLIP
def tiny_clip(quick_gelu: bool = True):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    # OpenAI layout infers heads = width // 64, so widths are multiples of 64
    return CLIP(32, CLIPVisionCfg(layers=1, width=64, patch_size=16, image_size=64, head_width=64),
                CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
                quick_gelu=quick_gelu).eval()


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    m = tiny_clip()
    sd = dict(m.state_dict())
    sd.update(input_resolution=torch.tensor(64), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    p = tmp_path_factory.mktemp("clip") / "tiny-openai.pt"
    torch.save(sd, p)
    return m, p
