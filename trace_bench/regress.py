"""One-command regression check of a new TRACE checkpoint against an earlier benchmark run
(``trace-bench regress``).

1. Read the baseline output folder's ``config.toml`` (optionally overlaid with ``--config``) and
   ``manifest.json``.
2. Refuse (one line) when the metrics' protocol ids or the weights' sha256 that the baseline was
   scored with differ from what a fresh plan of the same config resolves now
   (:func:`trace_bench.run.plan.plan_run` with ``setup=False``, :func:`~trace_bench.run.plan.manifest_dict`):
   numbers from different protocols are not comparable.
3. Generate with the new checkpoint from the baseline's masks (``--masks``, else the config's
   ``method_masks[METHOD]``, else its ``reference_masks``) and prompts, with the given seed and
   sampler settings (:func:`trace_model.generate.generate`).
4. Run the baseline's config with only the method's folder replaced by the new volumes (and its
   profile, which this command does not measure, left out), then compare both runs with
   :func:`trace_bench.results.compare_results` (tolerances + paired tests).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig, load_config
from .folders import parse_folder
from .errors import ConfigError
from .results import PROFILE_METRICS, Comparison, compare_results

#: marker file of a generation folder written by ``regress`` (only such a folder is emptied on a rerun)
MARKER = ".trace-bench-regress"


@dataclass
class RegressResult:
    """The comparison and where everything went."""

    comparison: Comparison
    out: Path
    generated: Path
    candidate_run: Path
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.comparison.ok


def read_baseline(baseline: str | Path, config: str | Path | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """(run config, manifest) of a baseline output folder; ``config`` overlays the baseline's settings
    (e.g. moved input folders, ``workers``, ``device``)."""
    b = Path(baseline)
    cfg_path, man_path = b / "config.toml", b / "manifest.json"
    for p in (cfg_path, man_path):
        if not p.is_file():
            raise ConfigError(f"--baseline {b}: {p} does not exist (is it the output folder of `trace-bench run`?)")
    cfg = load_config(cfg_path)
    if config is not None:
        cfg = load_config(config, base=cfg)
    try:
        man = json.loads(man_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{man_path}: not valid JSON ({e})") from None
    if not isinstance(man, dict) or not isinstance(man.get("metrics"), dict):
        raise ConfigError(f"{man_path}: no 'metrics' table: not a trace-bench manifest")
    return cfg, man


def comparability_problems(baseline_manifest: dict[str, Any], fresh_manifest: dict[str, Any]) -> list[str]:
    """Differences in metric protocol ids and weights sha256 between the baseline's manifest and a fresh
    plan's (empty = comparable)."""
    out = []
    fresh_metrics = fresh_manifest.get("metrics", {})
    for name, info in sorted(baseline_manifest.get("metrics", {}).items()):
        old = (info or {}).get("protocol")
        if name not in fresh_metrics:
            out.append(f"metric {name} is not computable now")
        elif fresh_metrics[name].get("protocol") != old:
            out.append(f"{name} protocol {old} -> {fresh_metrics[name].get('protocol')}")
    fresh_w = fresh_manifest.get("weights", {})
    for name, sha in sorted((baseline_manifest.get("weights") or {}).items()):
        now = fresh_w.get(name)
        if now != sha:
            out.append(f"weights {name} sha256 {str(sha)[:12]} -> {str(now)[:12] if now else 'missing'}")
    return out


def choose_method(cfg: RunConfig, method: str | None, where: Path) -> str:
    """The baseline method whose volumes are regenerated: ``method``, or the only one."""
    names = list(cfg.methods)
    if method is not None:
        if method not in cfg.methods:
            raise ConfigError(f"--method {method!r}: the baseline {where} has methods {', '.join(names) or 'none'}")
        return method
    if len(names) != 1:
        raise ConfigError(f"--baseline {where} has {len(names)} methods ({', '.join(names) or 'none'}): "
                          "name the one to regenerate with --method")
    return names[0]


def choose_masks(cfg: RunConfig, method: str, masks: str | Path | None) -> Path:
    """``masks``, else the config's masks of ``method``, else its reference masks."""
    src = masks if masks is not None else (cfg.method_masks.get(method) or cfg.reference_masks)
    if src is None:
        raise ConfigError(f"the baseline config names no masks for {method!r} (method_masks / reference_masks): "
                          "pass --masks DIR")
    p = Path(src)
    if not p.exists():
        raise ConfigError(f"--masks {p}: does not exist")
    return p


def _fresh_folder(folder: Path) -> None:
    """An empty generation folder; only a folder an earlier ``regress`` made is emptied."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise ConfigError(f"{folder}: exists and is not empty (not made by trace-bench regress); choose another --out")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("volumes generated by trace-bench regress\n", encoding="utf-8")


def regress(checkpoint: str | Path, baseline: str | Path, *, out: str | Path | None = None,
            masks: str | Path | None = None, config: str | Path | None = None, method: str | None = None,
            steps: int = 100, seed: int = 0, mode: str = "overlap", batch: int = 4, device: str | None = None,
            inference_flow: str | None = None, tolerances: dict[str, dict[str, float]] | None = None,
            significance: float | None = None, confidence: float = 0.95, report: bool = False,
            console: Any = None, log: Callable[[str], None] | None = None) -> RegressResult:
    """Generate with ``checkpoint``, score like ``baseline``, compare. See the module docstring."""
    from .run.pipeline import run
    from .run.plan import manifest_dict, plan_run

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    base = Path(baseline)
    if not Path(checkpoint).exists():
        raise ConfigError(f"--checkpoint {checkpoint}: does not exist")
    cfg, base_man = read_baseline(base, config)
    name = choose_method(cfg, method, base)
    mask_src = choose_masks(cfg, name, masks)
    out_dir = Path(out) if out is not None else base.parent / f"{base.name}-regress"
    if out_dir.resolve() == base.resolve():
        raise ConfigError(f"--out {out_dir}: is the baseline folder; choose another")
    gen = out_dir / "generated" / name
    cand_out = out_dir / "run"
    _fresh_folder(gen)
    fmt = parse_folder(name, cfg.methods[name]).format
    profiles = {m: p for m, p in cfg.profiles.items() if m != name}
    cand = cfg.replace(out=str(cand_out), methods={**cfg.methods, name: f"{gen}:nifti"}, profiles=profiles)
    notes = []
    if fmt != "nifti":
        notes.append(f"baseline {name} was read with adapter {fmt!r}; the new volumes are TRACE NIfTI (adapter nifti)")

    problems = comparability_problems(base_man, manifest_dict(plan_run(cand, setup=False)))
    if problems:
        raise ConfigError(f"--baseline {base}: scored with other protocols or weights than installed now "
                          f"({'; '.join(problems)}); rerun the baseline with this version")

    from trace_model.generate import generate

    settings = {"checkpoint": str(checkpoint), "masks": str(mask_src), "prompts": cfg.prompts, "steps": steps,
                "seed": seed, "mode": mode, "batch": batch, "device": device, "inference_flow": inference_flow}
    log(f"regress: generating {name} with {checkpoint} from {mask_src} (steps {steps}, seed {seed}, {mode})")
    written = generate(checkpoint, mask_src, gen, prompts=cfg.prompts, steps=steps, seed=seed, mode=mode, batch=batch,
                       device=device, inference_flow=inference_flow)
    settings["volumes"] = len(written)
    log(f"regress: scoring {len(written)} volume(s) with the baseline's config -> {cand_out}")
    run(cand, console=console, report=report)

    from .run.paired_distribution import paired_distribution_stats

    extra = paired_distribution_stats(base, cand_out, confidence)
    cmp = compare_results(base, cand_out, tolerances, confidence=confidence, significance=significance,
                          paired_extra=extra)
    rows = cmp.rows
    unmeasured = (rows.method == name) & rows.metric.isin(list(PROFILE_METRICS))
    if unmeasured.any():
        notes.append(f"{name}'s profile rows ({', '.join(sorted(set(rows.metric[unmeasured])))}) are not measured "
                     "by regress and were left out of the comparison")
        rows = rows[~unmeasured].reset_index(drop=True)
    cmp = Comparison(rows, int(rows.status.isin(["REGRESSED", "MISSING"]).sum()))
    from .results.files import atomic_write_text

    atomic_write_text(out_dir / "comparison.csv", rows.to_csv(index=False, lineterminator="\n"))
    summary = {"baseline": str(base), "method": name, "candidate_run": str(cand_out), "generated": str(gen),
               "regressions": cmp.regressions, "ok": cmp.ok, "settings": settings, "notes": notes}
    atomic_write_text(out_dir / "regress.json", json.dumps(summary, indent=2) + "\n")
    return RegressResult(cmp, out_dir, gen, cand_out, name, settings, notes)
