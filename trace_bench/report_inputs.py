"""Case images for the report's slice viewer and per-case figures: the arrays of one volume
(:func:`case_arrays`, :func:`viewer_arrays`, :func:`viewer_labels`), which the per-case stage stores with
its plot case (``run.artifacts``), and :func:`viewer_stacks`, which reads them again from a run's input
volumes where the run did not store them (another ``--plot-case``, or runs made before plot-v2).

:func:`viewer_stacks` finds the input folders of ``OUT`` (``provenance.json``, else the manifest's
config; relative paths resolved by :func:`resolve_input`, so from any working directory), reads the
reference and the methods' volumes of the requested cases as the run read them (their adapter and the
recorded reading options, :func:`baselines.base.read_with_options`; ``spacing`` / ``layout = reference``
with the case's reference volume, read first), and returns per
case and method the arrays :func:`reports.render_report` accepts as ``viewer_stacks=``: the keys of
a run's ``_plot.npz`` (``view_axial`` / ``view_coronal`` / ``view_sagittal`` in HU, ``spacing``,
``flicker_mae``, ``labels_*`` and ``dice_z`` where a label map exists) plus a downsampled axial
stack for scrolling: ``stack`` (float16 HU, at most ``max_slices`` slices of at most ``max_px``
pixels), ``stack_z`` (z of each stacked slice in mm) and ``stack_labels`` (uint8). Label maps come
from the run's reference masks (segmenter ``provided``, reference only) or the weight-free threshold
segmenter (``threshold``, every volume, through the shared label-map disk cache); other segmenters
(VISTA3D) are not rerun here.

This module sits above the results layer (it reads volumes through ``baselines``); ``reports``
itself only receives arrays.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .read_options import ReadOptions
from .results import GT
from .results.layout import PLOT_ARTIFACT, case_dir

MAX_SLICES = 64
MAX_PX = 128


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_config(out: str | Path) -> dict[str, Any]:
    """The run's config as recorded (``provenance.json``, else the manifest's)."""
    o = Path(out)
    return _json(o / "provenance.json").get("config") or _json(o / "manifest.json").get("config") or {}


def resolve_input(path: str | None, out: str | Path) -> Path | None:
    """An input folder of the run in ``out`` as a path usable from the current working directory, or
    None when it no longer exists. A relative path is tried against, in order: ``out`` when the run
    wrote its paths relative to it (``--relative-paths``), the folder the run was started from
    (``provenance.json`` ``start_dir``), and, for runs that predate that record, the current
    working directory and ``out``."""
    if not path:
        return None
    q = Path(path).expanduser()
    if q.is_absolute():
        return q if q.is_dir() else None
    o = Path(out)
    prov = _json(o / "provenance.json")
    bases: list[Path] = []
    if (prov.get("config") or {}).get("relative_paths"):
        bases.append(o)
    if prov.get("start_dir"):
        bases.append(Path(prov["start_dir"]))
    else:
        bases += [Path.cwd(), o]
    for base in bases:
        if (base / q).is_dir():
            return base / q
    return None


def _reading(out: Path) -> dict[str, Any]:
    """The reading options the run recorded per folder (``provenance.json`` / ``manifest.json`` ``reading``)."""
    return _json(out / "provenance.json").get("reading") or _json(out / "manifest.json").get("reading") or {}


def _spec_parts(spec: Any, out: Path) -> tuple[Path | None, dict[str, Any]]:
    """A config folder spec (``"DIR[:FORMAT]"`` or a table with ``path`` and reading options) as (folder
    usable from here or None, reading options)."""
    if isinstance(spec, dict):
        return resolve_input(spec.get("path"), out), {k: v for k, v in spec.items() if k != "path"}
    if not isinstance(spec, str) or not spec:
        return None, {}
    if resolve_input(spec, out) is not None:
        return resolve_input(spec, out), {}
    d, sep, fmt = spec.rpartition(":")
    return (resolve_input(d, out), {"format": fmt}) if sep else (None, {})


def _options(recorded: Any, given: dict[str, Any], default_format: str) -> ReadOptions | None:
    """The folder's :class:`ReadOptions`: the recorded ones, else those of the config spec; None when invalid."""
    opts = dict(recorded) if isinstance(recorded, dict) and recorded else dict(given)
    opts.setdefault("format", default_format)
    try:
        return ReadOptions.parse(opts, "reading options")
    except ConfigError:
        return None


def input_folders(out: str | Path) -> dict[str, tuple[Path, ReadOptions]]:
    """``{method: (folder, reading options)}`` of a run, ``GT`` = the reference; folders that no longer exist
    are left out. The reading options are those the run recorded (provenance ``reading``: format,
    convention, spacing, layout) or, for older runs, those of the config's folder specs and tables."""
    o = Path(out)
    prov = _json(o / "provenance.json")
    cfg = run_config(o)
    reading = _reading(o)
    recorded = prov.get("input_folders") or {}
    found: dict[str, tuple[Path, ReadOptions]] = {}
    ref_dir, ref_given = _spec_parts(cfg.get("reference"), o)
    if isinstance(recorded.get(GT), str):
        ref_dir = resolve_input(recorded[GT], o) or ref_dir
    ref_opts = _options(reading.get(GT), ref_given, str(cfg.get("reference_format") or "nifti"))
    if ref_dir is not None and ref_opts is not None:
        found[GT] = (ref_dir, ref_opts)
    methods = dict(cfg.get("methods") or {})
    for m in [*[k for k in recorded if k != GT], *[k for k in methods if k not in recorded]]:
        d, given = _spec_parts(methods.get(m), o)
        rec = recorded.get(m)
        if isinstance(rec, dict):
            d = resolve_input(rec.get("folder"), o) or d
            given = {"format": rec.get("adapter") or "nifti", **{k: v for k, v in given.items() if k != "format"}}
        opts = _options(reading.get(m), given, "nifti")
        if d is not None and opts is not None:
            found[m] = (d, opts)
    return found


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    if f <= 1:
        return a
    h, w = (a.shape[-2] // f) * f, (a.shape[-1] // f) * f
    a = a[..., :h, :w]
    return a.reshape(*a.shape[:-2], h // f, f, w // f, f).mean(axis=(-3, -1))


def _block_mode(a: np.ndarray, f: int) -> np.ndarray:
    """Label maps downsampled by taking every f-th pixel (labels are never averaged)."""
    return a[..., ::f, ::f] if f > 1 else a


def _mid(a: np.ndarray) -> dict[str, np.ndarray]:
    z, y, x = a.shape
    return {"axial": a[z // 2], "coronal": a[:, y // 2, :], "sagittal": a[:, :, x // 2]}


def viewer_arrays(hu: np.ndarray, spacing: tuple[float, float, float], *, labels: np.ndarray | None = None,
                  ref_labels: np.ndarray | None = None, max_slices: int = MAX_SLICES,
                  max_px: int = MAX_PX) -> dict[str, np.ndarray]:
    """The slice viewer's arrays of one volume: ``stack`` (float16 HU, at most ``max_slices`` axial slices of
    at most ``max_px`` pixels, block means), ``stack_z`` (mm); with ``labels`` (same shape) ``labels_*`` mid
    planes and ``stack_labels`` (every f-th pixel); with ``ref_labels`` too (the reference's map, same shape)
    ``dice_z``, the foreground Dice per axial slice (NaN where neither map has foreground)."""
    hu = np.asarray(hu)
    out: dict[str, np.ndarray] = {}
    nz = hu.shape[0]
    idx = np.unique(np.round(np.linspace(0, nz - 1, min(nz, max_slices))).astype(int))
    f = max(1, math.ceil(max(hu.shape[1:]) / max_px))
    out["stack"] = _block_mean(np.asarray(hu[idx], dtype=np.float32), f).astype(np.float16)
    out["stack_z"] = idx.astype(np.float64) * float(spacing[0])
    if labels is not None and labels.shape == hu.shape:
        lab = np.asarray(labels).astype(np.uint8)
        for k, v in _mid(lab).items():
            out[f"labels_{k}"] = v.astype(np.int16)
        out["stack_labels"] = _block_mode(lab[idx], f)[:, : out["stack"].shape[1], : out["stack"].shape[2]]
        if ref_labels is not None and labels.shape == ref_labels.shape:
            a, b = labels > 0, ref_labels > 0
            inter = (a & b).sum(axis=(1, 2)).astype(np.float64)
            tot = (a.sum(axis=(1, 2)) + b.sum(axis=(1, 2))).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["dice_z"] = np.where(tot > 0, 2 * inter / np.where(tot > 0, tot, 1), np.nan)
    return out


def case_arrays(hu: np.ndarray, spacing: tuple[float, float, float], *, labels: np.ndarray | None = None,
                ref_labels: np.ndarray | None = None, frame_size: int = 256,
                hu_window: tuple[float, float] = (-1000.0, 1000.0), max_slices: int = MAX_SLICES,
                max_px: int = MAX_PX) -> dict[str, np.ndarray]:
    """The viewer / plot arrays of one volume (see the module docstring): mid planes, ``flicker_mae`` and
    :func:`viewer_arrays`."""
    from .protocol import hu_to_frames

    hu = np.asarray(hu, dtype=np.float32)
    out: dict[str, np.ndarray] = {"spacing": np.asarray(spacing, dtype=np.float64)}
    for k, v in _mid(hu).items():
        out[f"view_{k}"] = v.astype(np.float16)
    if hu.shape[0] >= 2:
        frames = hu_to_frames(hu, frame_size, hu_window).astype(np.int16)
        out["flicker_mae"] = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2), dtype=np.float64)
    else:
        out["flicker_mae"] = np.zeros(0)
    out.update(viewer_arrays(hu, spacing, labels=labels, ref_labels=ref_labels, max_slices=max_slices,
                             max_px=max_px))
    return out


def viewer_labels(volume: Any, segmenter: str, *, mask: np.ndarray | None = None, device: str = "cpu",
                  cache_dir: str | None = None) -> np.ndarray | None:
    """The label map the viewer overlays on ``volume``: ``mask`` (the provided map, rounded) for segmenter
    ``provided``; the weight-free ``threshold`` segmenter's 3-class map through the shared label-map disk
    cache (:class:`~trace_bench.cache.LabelMapCache`: the segmentation metric's map of the same volume when
    it ran with ``--classes 3``); None for other segmenters (VISTA3D is not rerun for a picture)."""
    if segmenter == "provided":
        return None if mask is None else np.asarray(mask).round().astype(np.int32)
    if segmenter != "threshold":
        return None
    from .cache import LabelMapCache, label_cache_root
    from .segmenters import get_segmenter

    seg = get_segmenter("threshold", device=device)
    return seg.segment_cached(volume, "3", LabelMapCache(label_cache_root(cache_dir))).labels


def _labels_for(vol: Any, cfg: dict, mask_path: Path | None) -> np.ndarray | None:
    seg = str(cfg.get("segmenter") or "threshold")
    mask = None
    if seg == "provided":
        if mask_path is None:
            return None
        from baselines import get_adapter

        try:
            mask = np.asarray(get_adapter("nifti").read(mask_path).array)
        except Exception:  # noqa: BLE001 - the overlay is optional
            return None
    return viewer_labels(vol, seg, mask=mask)


def stored_stack(out: str | Path, method: str, case: str) -> bool:
    """Whether the run stored the viewer's arrays of ``method``'s volume of ``case`` with its plot inputs
    (``cases/<method>/<case>/_plot.npz`` holds ``stack``: written by the per-case stage since plot-v2)."""
    p = case_dir(out, method, case) / f"{PLOT_ARTIFACT}.npz"
    try:
        with np.load(p, allow_pickle=False) as z:
            return "stack" in z.files
    except Exception:  # noqa: BLE001 - missing or unreadable: not stored
        return False


def viewer_stacks(out: str | Path, cases: list[str], *, required: bool = False, max_slices: int = MAX_SLICES,
                  max_px: int = MAX_PX) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{case: {method: arrays}}`` read again from the inputs, for the volumes of ``cases`` whose viewer
    arrays the run did not store (:func:`stored_stack`) and whose inputs are still readable.

    The run's own plot case (runs since plot-v2) needs nothing: every volume's arrays are in its
    ``_plot.npz``, and nothing is decoded or segmented here. Other cases (``--plot-case``) and runs made
    before plot-v2 read the volumes of the methods that lack them (and the reference, first: the
    ``reference`` reading options and ``dice_z`` need it); threshold label maps come through the shared
    label-map disk cache (:func:`viewer_labels`).

    ``required=True`` (``trace-bench report --plot-case``): a case with neither a stored plot artifact
    nor a readable input raises :class:`ConfigError` naming it. Otherwise unreadable cases are left
    out (the report says so)."""
    o = Path(out)
    folders = input_folders(o)
    methods = _json(o / "metrics.json").get("methods") or list(folders)
    methods = sorted(methods, key=lambda m: m != GT)  # the reference first: `reference` reading options need it
    need = {case: [m for m in methods if not stored_stack(o, m, case)] for case in cases}
    if not any(need.values()):
        return {}
    from baselines.base import read_with_options

    from .cases import discover

    cfg = run_config(o)
    listings: dict[str, dict[str, Any]] = {}
    wanted = {m for ms in need.values() for m in ms} | ({GT} if GT in folders else set())
    for m, (d, opts) in folders.items():
        if m not in wanted:
            continue
        try:
            listings[m] = discover(d, opts.format, label=m)[0]
        except Exception:  # noqa: BLE001 - a folder that cannot be listed simply has no images
            listings[m] = {}
    masks: dict[str, Path] = {}
    mdir = cfg.get("reference_masks") if cfg.get("segmenter") == "provided" else None
    if mdir:
        mp = resolve_input(mdir, o)
        if mp is not None:
            try:
                masks = {k: v.path for k, v in discover(mp, "nifti", label="masks")[0].items()}
            except Exception:  # noqa: BLE001
                masks = {}
    frame_size = int(cfg.get("frame_size") or 256)
    win = cfg.get("hu_window") or [-1000.0, 1000.0]
    result: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for case in cases:
        if not need[case]:
            continue
        got: dict[str, dict[str, np.ndarray]] = {}
        ref_labels = ref_vol = None
        for m in [GT, *need[case]] if GT not in need[case] and GT in methods else need[case]:
            cf = listings.get(m, {}).get(case)
            if cf is None or m not in folders:
                continue
            opts = folders[m][1]
            if opts.uses_reference and ref_vol is None:
                continue  # read onto its reference case's grid, and that case is not readable
            try:  # as the run read it: the folder's adapter and reading options
                vol = read_with_options(cf.path, opts, reference=ref_vol if opts.uses_reference else None)
            except Exception:  # noqa: BLE001 - an unreadable input is left out of the viewer
                continue
            labels = _labels_for(vol, cfg, masks.get(case) if m == GT else None)
            if m == GT:
                ref_labels, ref_vol = labels, vol
            if m in need[case]:
                got[m] = case_arrays(vol.array, vol.spacing, labels=labels, ref_labels=None if m == GT else ref_labels,
                                     frame_size=frame_size, hu_window=(float(win[0]), float(win[1])),
                                     max_slices=max_slices, max_px=max_px)
        if got:
            result[case] = got
        elif required and not any((case_dir(o, m, case) / f"{PLOT_ARTIFACT}.npz").is_file() for m in methods):
            raise ConfigError(f"--plot-case {case!r}: no plot artifact in {o / 'cases'} and no readable input volume "
                              f"for this case (input folders: {', '.join(str(d) for d, _ in folders.values()) or 'none found'})")
    return result
