"""Build a blinded, randomised reader-study packet: sample the items, hide where they came from,
shuffle them per rater, encode their pixels and keep the key apart.

What ``make_study`` leaves in ``STUDY/``:

* ``key.json`` -- the secret: item id -> method, case id, source file, ``is_real``; the raters,
  their item orders, the criteria and the settings. Its SHA-256 (of the exact file bytes) is the
  study's fingerprint.
* ``packets/<rater>.html`` -- one self-contained viewer per rater (:mod:`.viewer_html`), holding
  opaque item ids (``V001``...), the pixels, the criteria and the key's SHA-256, never a method
  name, a file path or a case id.
* ``study.json`` -- public bookkeeping: the key's SHA-256, the packets' files and SHA-256s, counts.

Sampling (all seeded by ``seed``, Python's ``random.Random``, so the same inputs and seed give
byte-identical files): ``cases`` case ids among those every chosen method generated; every chosen
method's volume of each is an item; ``include_real`` reference volumes are mixed in as controls
(cases not already sampled first). Item ids are given after one seeded shuffle of all items; each
rater's order is a second shuffle seeded by ``f"{seed}:{rater}"``.

Pixels (documented cap, so packets stay mailable): at most ``slices`` axial slices (default 64)
chosen evenly along z with no interpolation (so a discontinuity between generated slices stays
as visible as it is), and in-plane at most ``size`` pixels on the longer side (default 160;
Gaussian anti-aliasing with sigma = (1/f - 1)/2 before linear resampling by the factor f, never
upsampled; the rater chooses the size on screen). Each preset window is applied here, ``uint8 =
round(255 * clip((HU - (L - W/2)) / W, 0, 1))``, and encoded as images the browser decodes itself
(no script decoder): the axial slices as one sprite sheet (tiles on a 16-pixel pitch, so no
compression block straddles two slices), the coronal plane at mid-y and the sagittal plane at mid-x
(superior up). ``codec="webp"`` (default): lossy WebP at ``quality`` 90, on the demo chest CT about
43 dB PSNR (maximum error about 16 of 255 grey levels), 0.8 MB of HTML for a 160 x 160 x 61 item with
both windows (measured: :func:`encode_item` on ``lung2``); ``codec="png"``: lossless PNG, the grey
levels exactly as windowed, about 2 MB for the same item. Every item is encoded the same way, real or
generated.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, VolumeError
from .criteria import Criterion, criteria_from_json

KEY_FORMAT = "trace-bench-study-key/1"
STUDY_FORMAT = "trace-bench-study/1"
#: label of the reference (real) volumes in the key and the tables
REAL = "Real (control)"
#: the preset HU windows: (name, width, level)
WINDOWS: tuple[tuple[str, float, float], ...] = (("lung", 1500.0, -600.0), ("mediastinum", 400.0, 40.0))
DEFAULT_SIZE = 160
DEFAULT_SLICES = 64
#: image codecs of the packet's pixels: MIME type and Pillow format
CODECS = {"webp": ("image/webp", "WEBP"), "png": ("image/png", "PNG")}
DEFAULT_CODEC = "webp"
DEFAULT_QUALITY = 90
#: sprite tiles start on multiples of this many pixels (WebP's macroblock size)
TILE_PITCH = 16
_RATER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True)
class Source:
    """Where one item came from (key only; never written into a packet)."""

    method: str  # a method name, or REAL
    case_id: str
    path: str
    adapter: str
    is_real: bool


@dataclass(frozen=True)
class StudyPlan:
    """Which items, in which order for whom: everything the key records."""

    items: dict[str, Source]  # item id -> source, ids in ascending order
    orders: dict[str, list[str]]  # rater -> item ids in their order
    criteria: list[Criterion]
    seed: int
    settings: dict[str, Any]

    def method_of(self, item_id: str) -> str:
        """The method an item shows (:data:`REAL` for a reference volume)."""
        s = self.items[item_id]
        return REAL if s.is_real else s.method

    @property
    def methods(self) -> list[str]:
        """The generated methods sorted by name, then the real control (when real items are mixed in)."""
        seen = sorted({s.method for s in self.items.values() if not s.is_real})
        return seen + ([REAL] if any(s.is_real for s in self.items.values()) else [])

    def counts(self) -> str:
        """Items per method, as text (``A: 3, B: 3, Real (control): 2``)."""
        return ", ".join(f"{m}: {sum(1 for i in self.items if self.method_of(i) == m)}" for m in self.methods)


@dataclass(frozen=True)
class EncodedItem:
    """One item's pixels, ready for the viewer: shape (z, y, x), spacing (mm) after resampling, the
    image MIME type, the sprite sheet's layout (columns, tile height and width in pixels) and per
    preset window the base64 images ``{"axial": sprite, "coronal": plane, "sagittal": plane}``."""

    item_id: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    data: dict[str, dict[str, str]]
    mime: str = "image/webp"
    sprite: tuple[int, int, int] = (1, 16, 16)

    @property
    def n_bytes(self) -> int:
        """Characters of base64 image data the item adds to a packet."""
        return sum(len(x) for w in self.data.values() for x in w.values())


def parse_raters(text: str | Iterable[str]) -> list[str]:
    """``"R1,R2"`` -> ``["R1", "R2"]``; names become file names, so 1-40 letters, digits, '_.-'."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise ConfigError("--raters: give at least one rater name, e.g. --raters R1,R2")
    for n in names:
        if not _RATER.fullmatch(n):
            raise ConfigError(f"--raters: {n!r}: expected 1-40 letters, digits or '_.-', starting with a letter or digit")
    if len({n.lower() for n in names}) != len(names):
        raise ConfigError(f"--raters: a name is given twice ({', '.join(names)})")
    return names


def resolve_input(path: str | None, folder: Path) -> str | None:
    """A path from a config file, against the config file's ``folder`` when relative (the working
    directory's copy is kept only when it exists and the folder's does not: configs written by older
    runs hold paths relative to where they were run)."""
    if path is None or Path(path).is_absolute():
        return path
    here = folder / path
    if not here.exists() and Path(path).exists():
        return str(path)
    return str(here)


def config_inputs(config: str | Path) -> tuple[str | None, str, dict[str, str]]:
    """(reference, reference format, {method: "DIR:FORMAT"}) of a run's ``config.toml``, with relative
    paths resolved against the config file's folder (:func:`resolve_input`)."""
    from ..config import load_config

    cfg = load_config(config)
    folder = Path(config).resolve().parent
    run = cfg.folders()
    specs = {name: f"{resolve_input(str(f.path), folder)}:{f.format}" for name, f in run.methods.items()}
    if run.reference is None:
        return None, cfg.reference_format, specs
    return resolve_input(str(run.reference.path), folder), run.reference.format, specs


def plan_study(reference: str | Path | None, methods: dict[str, tuple[str, str]], *, reference_format: str = "nifti",
               raters: list[str], criteria: list[Criterion], cases: int | None = None,
               include_real: int | None = None, seed: int = 0, settings: dict[str, Any] | None = None) -> StudyPlan:
    """Pair the inputs (:func:`trace_bench.cases.pair_cases`) and sample the study's items (see the
    module docstring). ``include_real=None`` mixes in one real volume per five generated items (at
    least one, at most the references available; none without a reference folder)."""
    from ..cases import pair_cases

    if not methods:
        raise ConfigError("study: no generated volumes: give --method NAME=DIR[:FORMAT] or --config OUT/config.toml")
    if not raters:
        raise ConfigError("study: no raters")
    if REAL in methods:
        raise ConfigError(f"study: method name {REAL!r} is reserved for the real control volumes; rename the method")
    pairing = pair_cases(reference, methods, reference_adapter=reference_format)
    eligible = sorted(c.case_id for c in pairing.cases if all(m in c.generated for m in methods))
    if not eligible:
        raise ConfigError(f"study: no case id has a volume from every method ({', '.join(methods)}); "
                          "check the folders or choose methods with --methods")
    rng = random.Random(seed)
    if cases is not None:
        if cases < 1:
            raise ConfigError(f"--cases {cases}: expected at least 1")
        if cases > len(eligible):
            raise ConfigError(f"--cases {cases}: only {len(eligible)} case(s) have a volume from every method")
        pool = list(eligible)
        rng.shuffle(pool)
        chosen = sorted(pool[:cases])
    else:
        chosen = eligible
    by_id = {c.case_id: c for c in pairing.cases}
    sources: list[Source] = []
    for cid in chosen:
        for m in methods:
            cf = by_id[cid].generated[m]
            sources.append(Source(m, cid, str(cf.path), cf.adapter, False))
    refs = sorted(c.case_id for c in pairing.cases if c.reference is not None)
    n_real = include_real
    if n_real is None:
        n_real = min(len(refs), max(1, round(len(sources) / 5))) if refs else 0
    if n_real < 0:
        raise ConfigError(f"--include-real {n_real}: expected 0 or more")
    if n_real > len(refs):
        raise ConfigError(f"--include-real {n_real}: only {len(refs)} reference volume(s) available"
                          + ("" if reference is not None else " (give --reference DIR)"))
    fresh = [c for c in refs if c not in set(chosen)]
    seen = [c for c in refs if c in set(chosen)]
    rng.shuffle(fresh)
    rng.shuffle(seen)
    for cid in sorted((fresh + seen)[:n_real]):
        cf = by_id[cid].reference
        assert cf is not None
        sources.append(Source(REAL, cid, str(cf.path), cf.adapter, True))
    rng.shuffle(sources)
    width = max(3, len(str(len(sources))))
    items = {f"V{i + 1:0{width}d}": s for i, s in enumerate(sources)}
    orders: dict[str, list[str]] = {}
    for r in raters:
        order = list(items)
        random.Random(f"{seed}:{r}").shuffle(order)
        orders[r] = order
    return StudyPlan(items, orders, list(criteria), seed, dict(settings or {}))


def key_bytes(plan: StudyPlan) -> bytes:
    """The key file's exact bytes (sorted, indented JSON; deterministic)."""
    doc = {
        "format": KEY_FORMAT,
        "seed": plan.seed,
        "raters": list(plan.orders),
        "orders": plan.orders,
        "criteria": [c.to_json() for c in plan.criteria],
        "items": {iid: {"method": s.method, "case_id": s.case_id, "path": s.path, "adapter": s.adapter,
                        "is_real": s.is_real} for iid, s in plan.items.items()},
        "settings": plan.settings,
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_key(study_dir: str | Path) -> tuple[StudyPlan, str]:
    """Read ``STUDY/key.json``, check it against the SHA-256 recorded in ``STUDY/study.json`` (a key
    edited after the packets went out is refused) and return (plan, sha256)."""
    d = Path(study_dir)
    kp, sp = d / "key.json", d / "study.json"
    for p in (kp, sp):
        if not p.is_file():
            raise ConfigError(f"{p}: missing; is {d} a folder written by `trace-bench study make`?")
    raw = kp.read_bytes()
    sha = sha256_hex(raw)
    study, key = _json_file(sp, sp.read_bytes()), _json_file(kp, raw)
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        raise ConfigError(f"{sp}: not a study description (format {STUDY_FORMAT!r} expected)")
    if study.get("key_sha256") != sha:
        raise ConfigError(f"{kp}: SHA-256 {sha[:12]}... differs from {str(study.get('key_sha256'))[:12]}... recorded in "
                          f"{sp.name} and embedded in the packets: the key was modified; refusing to unblind")
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise ConfigError(f"{kp}: not a study key (format {KEY_FORMAT!r} expected)")
    try:
        items = {iid: Source(v["method"], v["case_id"], v["path"], v["adapter"], bool(v["is_real"]))
                 for iid, v in sorted(key["items"].items())}
        orders = {r: list(key["orders"][r]) for r in key["raters"]}
        crit = criteria_from_json(key["criteria"], source=str(kp))
        plan = StudyPlan(items, orders, crit, int(key["seed"]), dict(key.get("settings") or {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{kp}: malformed key ({type(e).__name__}: {e})") from None
    return plan, sha


def _json_file(path: Path, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a JSON study file ({' '.join(str(e).split())})") from None


def display_volume(array: np.ndarray, spacing: tuple[float, float, float], *, size: int = DEFAULT_SIZE,
                   slices: int = DEFAULT_SLICES) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reduce a (z, y, x) HU array to the packet's cap (see the module docstring): z by evenly spaced
    slice selection (``round(linspace(0, nz - 1, slices))``), y/x by Gaussian anti-aliasing and
    linear resampling so that max(y, x) <= ``size``. Returns the array and its new spacing (mm)."""
    from scipy import ndimage as ndi

    a = np.asarray(array, dtype=np.float32)
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"expected a non-empty (z, y, x) array, got shape {a.shape}")
    nz, ny, nx = a.shape
    dz, dy, dx = (float(s) for s in spacing)
    if nz > slices:
        idx = np.round(np.linspace(0, nz - 1, slices)).astype(int)
        a = a[idx]
        dz = dz * (nz - 1) / (slices - 1) if slices > 1 else dz * nz
    f = min(1.0, size / max(ny, nx))
    if f < 1.0:
        ty, tx = max(1, round(ny * f)), max(1, round(nx * f))
        sigma = (1.0 / f - 1.0) / 2.0
        a = ndi.gaussian_filter(a, sigma=(0.0, sigma, sigma), mode="nearest")
        a = ndi.zoom(a, (1.0, ty / ny, tx / nx), order=1, mode="nearest", grid_mode=False)
        dy, dx = dy * ny / a.shape[1], dx * nx / a.shape[2]
    return np.ascontiguousarray(a, dtype=np.float32), (dz, dy, dx)


def window_uint8(array: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU -> uint8 grey levels of the window (W, L): ``round(255 * clip((HU - (L - W/2)) / W, 0, 1))``."""
    g = np.clip((np.asarray(array, dtype=np.float64) - (level - width / 2.0)) / width, 0.0, 1.0)
    g = np.nan_to_num(g, nan=0.0)  # canonical volumes are finite; a NaN would otherwise cast arbitrarily
    return np.round(g * 255.0).astype(np.uint8)


def sprite_layout(nz: int, ny: int, nx: int) -> tuple[int, int, int]:
    """(columns, tile height, tile width) of the axial sprite sheet: tiles padded to :data:`TILE_PITCH`,
    about square overall (well inside WebP's 16383-pixel limit for any packet size)."""
    th, tw = -(-ny // TILE_PITCH) * TILE_PITCH, -(-nx // TILE_PITCH) * TILE_PITCH
    cols = max(1, math.ceil(math.sqrt(nz * th / tw)))
    return min(cols, nz), th, tw


def _image(arr: np.ndarray, codec: str, quality: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L")
    if codec == "webp":
        img.save(buf, format="WEBP", quality=int(quality), method=6)
    else:
        img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode_item(item_id: str, array: np.ndarray, spacing: tuple[float, float, float], *, size: int = DEFAULT_SIZE,
                slices: int = DEFAULT_SLICES, codec: str = DEFAULT_CODEC,
                quality: int = DEFAULT_QUALITY) -> EncodedItem:
    """Cap the volume and encode per preset window the axial sprite sheet and the coronal / sagittal
    mid-planes (superior up) as ``codec`` images (see the module docstring)."""
    if codec not in CODECS:
        raise ConfigError(f"study: codec {codec!r}: expected one of {', '.join(CODECS)}")
    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"study: quality {quality}: expected 1..100")
    a, sp = display_volume(array, spacing, size=size, slices=slices)
    nz, ny, nx = a.shape
    cols, th, tw = sprite_layout(nz, ny, nx)
    rows = math.ceil(nz / cols)
    data: dict[str, dict[str, str]] = {}
    for name, w, l in WINDOWS:
        g = window_uint8(a, w, l)
        sheet = np.zeros((rows * th, cols * tw), dtype=np.uint8)
        for z in range(nz):
            r, c = divmod(z, cols)
            tile = np.pad(g[z], ((0, th - ny), (0, tw - nx)), mode="edge")  # edge pixels: no false block edge
            sheet[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
        data[name] = {"axial": _image(sheet, codec, quality),
                      "coronal": _image(g[::-1, ny // 2, :], codec, quality),
                      "sagittal": _image(g[::-1, :, nx // 2], codec, quality)}
    spacing_out = tuple(round(s, 4) for s in sp)
    return EncodedItem(item_id, (int(nz), int(ny), int(nx)), spacing_out, data,  # type: ignore[arg-type]
                       CODECS[codec][0], (cols, th, tw))


def _read(src: Source) -> tuple[np.ndarray, tuple[float, float, float]]:
    from baselines import get_adapter

    try:
        vol = get_adapter(src.adapter).read(Path(src.path))
    except VolumeError:
        raise
    except Exception as e:  # noqa: BLE001 - a decoder failure still names the file
        raise VolumeError(src.path, f"{type(e).__name__}: {e}") from None
    return vol.array, vol.spacing


@dataclass(frozen=True)
class StudyFiles:
    """What :func:`make_study` wrote."""

    folder: Path
    key: Path
    key_sha256: str
    packets: dict[str, Path]
    n_items: int
    n_real: int


def make_study(out: str | Path, plan: StudyPlan, *, size: int = DEFAULT_SIZE, slices: int = DEFAULT_SLICES,
               force: bool = False, progress: Any = None, codec: str = DEFAULT_CODEC,
               quality: int = DEFAULT_QUALITY) -> StudyFiles:
    """Write ``key.json``, one packet per rater and ``study.json`` into ``out`` (see the module
    docstring). An existing key is never overwritten unless ``force`` (packets may be out already).
    ``codec`` / ``quality``: how the pixels are encoded ("webp" lossy, "png" lossless)."""
    from .viewer_html import render_packet

    if codec not in CODECS:
        raise ConfigError(f"study: codec {codec!r}: expected one of {', '.join(CODECS)}")
    if size < 16 or slices < 2:
        raise ConfigError(f"study: --size {size} / --slices {slices}: expected size >= 16 and slices >= 2")
    d = Path(out)
    if (d / "key.json").exists() and not force:
        raise ConfigError(f"{d / 'key.json'} exists: a study was already made there (its packets may be out); "
                          "choose another --out or pass --force")
    kb = key_bytes(plan)
    sha = sha256_hex(kb)
    encoded: dict[str, EncodedItem] = {}
    for i, (iid, src) in enumerate(plan.items.items()):
        arr, sp = _read(src)
        encoded[iid] = encode_item(iid, arr, sp, size=size, slices=slices, codec=codec, quality=quality)
        if progress is not None:
            progress(i + 1, len(plan.items))
    atomic_write_bytes(d / "key.json", kb)
    packets: dict[str, Path] = {}
    info: dict[str, Any] = {}
    for rater, order in plan.orders.items():
        html = render_packet(rater=rater, key_sha256=sha, criteria=plan.criteria,
                             items=[encoded[i] for i in order], windows=WINDOWS).encode("utf-8")
        p = atomic_write_bytes(d / "packets" / f"{rater}.html", html)
        packets[rater] = p
        info[rater] = {"file": f"packets/{rater}.html", "sha256": sha256_hex(html), "bytes": len(html)}
    study = {"format": STUDY_FORMAT, "key_sha256": sha, "raters": list(plan.orders), "packets": info,
             "n_items": len(plan.items), "n_real": sum(s.is_real for s in plan.items.values()),
             "criteria": [c.id for c in plan.criteria],
             "display": {"size": size, "slices": slices, "windows": [list(w) for w in WINDOWS], "codec": codec,
                         "quality": int(quality) if codec == "webp" else None,
                         "bytes_per_item": round(sum(v["bytes"] for v in info.values())
                                                 / max(len(info), 1) / max(len(plan.items), 1))}}
    atomic_write_bytes(d / "study.json", (json.dumps(study, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return StudyFiles(d, d / "key.json", sha, packets, len(plan.items), study["n_real"])
