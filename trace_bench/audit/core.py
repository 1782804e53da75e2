"""``run_audit``: does a generator copy its training volumes? Volume- and slice-level nearest
neighbours in the training set, calibrated on held-out real volumes, plus C_T and AuthPct.

For every generated volume ``g`` (and every held-out volume ``h``, for calibration):

* ``nn_distance`` = ``min_t |f(g) - f(t)|`` over training volumes ``t`` with the volume feature ``f``
  (:mod:`trace_bench.audit.features`, default ``grid16x32x32``);
* every audit slice's best training slice by NCC (:mod:`trace_bench.audit.search`).

Calibration: ``threshold`` = 5th percentile of the held-out volumes' ``nn_distance``; a generated volume
is *flagged* when ``nn_distance < threshold``. ``slice_threshold`` = 95th percentile of the held-out
slices' best NCC; a generated slice is flagged when its best NCC exceeds it. An independent real sample
therefore shows rates near 5 %; a generator far above that puts more of its volumes (slices) closer to
training patients than new real patients are. A flag is evidence to look at (montages), not proof.

Memory: training volumes are read one at a time; what stays in memory is one feature vector and the
slice thumbnails per training volume. Every per-volume array is cached on disk
(:class:`trace_bench.cache.FeatureCache`) under ``volume content hash | canvas id | feature name@version``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import FeatureCache, volume_hash
from ..cases import CaseFile, discover
from ..errors import ConfigError, TraceBenchError
from . import features as F
from .report import AuditResult, write_outputs
from .search import TrainIndex, candidates, exact_matches, slice_offset
from .stats import (
    CT_CELLS,
    CT_MIN_GENERATED,
    authpct,
    c_t_score,
    lower_percentile,
    nearest,
)

Progress = Callable[[str, int, int], None]
PERCENTILE = 5.0
TOP_K = 32


@dataclass(frozen=True)
class FolderSpec:
    """A folder of volumes and the adapter that reads it (``baselines`` registry name)."""

    folder: Path
    adapter: str = "nifti"

    @classmethod
    def of(cls, spec: FolderSpec | tuple[str | Path, str] | str | Path) -> FolderSpec:
        if isinstance(spec, FolderSpec):
            return spec
        if isinstance(spec, tuple):
            return cls(Path(spec[0]), spec[1])
        return cls(Path(spec))


@dataclass
class Encoded:
    """What the audit keeps of one volume."""

    case_id: str
    path: Path
    adapter: str
    vhash: str
    spacing_z: float
    feature: np.ndarray
    thumbs: np.ndarray
    fresh_canvas: np.ndarray | None = None  # the full canvas when encode() just computed it (dropped after use)


class _Encoder:
    """Reads a volume and returns its cached (canvas, thumbnails, feature)."""

    def __init__(self, cache: FeatureCache, feature: F.VolumeFeature) -> None:
        self.cache = cache
        self.feature = feature

    def _parts(self, vhash: str, what: str) -> tuple[str, ...]:
        return (vhash, "audit", F.CANVAS_ID, what)

    def encode(self, cf: CaseFile) -> Encoded:
        from baselines import get_adapter

        vol = get_adapter(cf.adapter).read(cf.path)
        h = volume_hash(vol)
        memo: dict[str, np.ndarray] = {}

        def canvas() -> np.ndarray:
            if "c" not in memo:
                memo["c"] = self.cache.get_or_compute(self._parts(h, "canvas"), lambda: F.audit_canvas(vol))
            return memo["c"]

        thumbs = self.cache.get_or_compute(self._parts(h, F.THUMB_ID), lambda: F.slice_thumbnails(canvas()))
        feat = self.cache.get_or_compute(self._parts(h, self.feature.id), lambda: self.feature(vol, canvas()))
        enc = Encoded(cf.case_id, cf.path, cf.adapter, h, float(vol.spacing[0]), feat.astype(np.float32), thumbs)
        if memo:
            enc.fresh_canvas = memo["c"]
        return enc

    def canvas_of(self, enc: Encoded) -> np.ndarray:
        """The canvas of an encoded volume (cache, else read again)."""
        key = self.cache.key(*self._parts(enc.vhash, "canvas"))
        c = self.cache.load(key)
        if c is None:
            from baselines import get_adapter

            vol = get_adapter(enc.adapter).read(enc.path)
            c = F.audit_canvas(vol)
            self.cache.store(key, c)
        return c


def _discover(spec: FolderSpec, label: str, problems: list[dict]) -> list[CaseFile]:
    found, probs = discover(spec.folder, spec.adapter, label=label)
    problems.extend({"set": p.method, "case_id": p.case_id, "path": p.path, "reason": p.reason} for p in probs)
    return [found[k] for k in sorted(found)]


def _encode_all(files: list[CaseFile], enc: _Encoder, label: str, problems: list[dict],
                progress: Progress | None) -> list[Encoded]:
    out = []
    for i, cf in enumerate(files):
        try:
            e = enc.encode(cf)
        except TraceBenchError as err:
            problems.append({"set": label, "case_id": cf.case_id, "path": str(cf.path), "reason": f"{err} (skipped)"})
            continue
        e.fresh_canvas = None  # only the feature and thumbnails stay in memory
        out.append(e)
        if progress:
            progress(f"encode {label}", i + 1, len(files))
    return out


def _r(x: float, nd: int = 6) -> float:
    return float("nan") if x is None or not np.isfinite(x) else round(float(x), nd)


class _Auditor:
    def __init__(self, train: list[Encoded], enc: _Encoder, top_k: int, batch_size: int) -> None:
        self.train = train
        self.enc = enc
        self.top_k = top_k
        self.batch_size = max(1, int(batch_size))
        self.index = TrainIndex.build([t.thumbs for t in train])
        self.train_feats = np.stack([t.feature for t in train]).astype(np.float64)

    def query(self, files: list[CaseFile], label: str, problems: list[dict], progress: Progress | None) -> list[dict]:
        """Per query volume: volume NN and per-slice matches (``ncc``, ``tv``, ``ts`` arrays)."""
        out: list[dict] = []
        for start in range(0, len(files), self.batch_size):
            batch: list[tuple[Encoded, np.ndarray]] = []
            for cf in files[start:start + self.batch_size]:
                try:
                    e = self.enc.encode(cf)
                except TraceBenchError as err:
                    problems.append({"set": label, "case_id": cf.case_id, "path": str(cf.path),
                                     "reason": f"{err} (skipped)"})
                    continue
                canvas = e.fresh_canvas if e.fresh_canvas is not None else self.enc.canvas_of(e)
                e.fresh_canvas = None
                batch.append((e, canvas))
            if not batch:
                continue
            stacks = np.concatenate([c for _, c in batch])
            thumbs = np.concatenate([e.thumbs for e, _ in batch])
            cand = candidates(thumbs, self.index, self.top_k)
            # training canvases are loaded one at a time, each once per batch
            m = exact_matches(stacks, cand, self.index, lambda v: self.enc.canvas_of(self.train[v]))
            pos = 0
            for e, canvas in batch:
                n = len(canvas)
                d, i = nearest(e.feature[None, :], self.train_feats)
                rec = {"enc": e, "nn_distance": float(d[0]), "nn_index": int(i[0]),
                       "ncc": m.ncc[pos:pos + n], "tv": m.train_volume[pos:pos + n], "ts": m.train_slice[pos:pos + n]}
                ok = np.isfinite(rec["ncc"])
                if ok.any():
                    b = int(np.flatnonzero(ok)[np.argmax(rec["ncc"][ok])])
                    rec["best"] = b
                    rec["best_canvas"] = canvas[b].copy()
                out.append(rec)
                pos += n
            if progress:
                progress(f"search {label}", min(start + self.batch_size, len(files)), len(files))
        return out

    def rows(self, method: str, recs: list[dict], threshold: float, slice_threshold: float,
             real_nn: np.ndarray) -> list[dict]:
        rows = []
        for rec in recs:
            e: Encoded = rec["enc"]
            ncc = rec["ncc"]
            ok = np.isfinite(ncc)
            nn = self.train[rec["nn_index"]]
            off = slice_offset(ncc, rec["tv"], rec["ts"], slice_threshold)
            b = rec.get("best")
            tb = self.train[int(rec["tv"][b])] if b is not None else None
            sm = self.train[off.train_volume] if off.train_volume >= 0 else None
            rows.append({
                "method": method,
                "case_id": e.case_id,
                "nn_train_case": nn.case_id,
                "nn_distance": _r(rec["nn_distance"]),
                "threshold": _r(threshold),
                "flagged": bool(rec["nn_distance"] < threshold),
                "authentic": bool(real_nn[rec["nn_index"]] < rec["nn_distance"]),
                "best_slice_ncc": _r(float(ncc[b])) if b is not None else float("nan"),
                "gen_slice": F.native_slice(b, e.spacing_z) if b is not None else -1,
                "matched_train_case": tb.case_id if tb is not None else "",
                "matched_train_slice": F.native_slice(int(rec["ts"][b]), tb.spacing_z) if tb is not None else -1,
                "slice_threshold": _r(slice_threshold),
                "n_slices": int(ok.sum()),
                "n_slices_flagged": int((ncc[ok] > slice_threshold).sum()),
                "slice_match_case": sm.case_id if sm is not None else "",
                "slice_offset": _r(off.offset, 2),
                "slice_offset_mm": _r(off.offset * F.SLICE_MM, 2),
                "offset_consistency": _r(off.consistency, 4),
                "path": str(e.path),
            })
        return rows


def run_audit(out: str | Path, train: FolderSpec | tuple[str | Path, str] | str | Path,
              heldout: FolderSpec | tuple[str | Path, str] | str | Path,
              methods: Mapping[str, FolderSpec | tuple[str | Path, str] | str | Path], *,
              cache_dir: str | Path | None = None, use_cache: bool = True, feature: str = F.DEFAULT_FEATURE.name,
              seed: int = 0, top_k: int = TOP_K, batch_size: int = 8, montage_pairs: int = 4,
              progress: Progress | None = None) -> AuditResult:
    """Audit ``methods`` (name -> generated folder) against the ``train`` folder, calibrated on ``heldout``;
    write ``OUT/audit/`` (see :mod:`trace_bench.audit.report` for the files and the JSON schema).

    ``cache_dir``: feature cache root (default ``$TRACE_BENCH_CACHE/features``); ``use_cache=False``
    recomputes everything. ``batch_size``: query volumes searched together (memory only; results do
    not depend on it). ``progress(stage, done, total)`` is called after each volume / batch.
    Raises :class:`~trace_bench.errors.ConfigError` when a folder is missing or when fewer than two
    training volumes or no held-out volume could be read.
    """
    t0 = time.perf_counter()
    fs_train, fs_held = FolderSpec.of(train), FolderSpec.of(heldout)
    fs_methods = {name: FolderSpec.of(s) for name, s in methods.items()}
    if not fs_methods:
        raise ConfigError("audit: no generated folder given (--method NAME=DIR[:FORMAT])")
    feat = F.get_volume_feature(feature)
    cache = FeatureCache(cache_dir, enabled=use_cache)
    enc = _Encoder(cache, feat)
    problems: list[dict] = []
    train_files = _discover(fs_train, "train", problems)
    held_files = _discover(fs_held, "heldout", problems)
    method_files = {name: _discover(fs, name, problems) for name, fs in fs_methods.items()}

    t_train = time.perf_counter()
    train_enc = _encode_all(train_files, enc, "train", problems, progress)
    t_train = time.perf_counter() - t_train
    if len(train_enc) < 2:
        raise ConfigError(f"audit: {fs_train.folder}: {len(train_enc)} readable training volume(s); need at least 2")
    aud = _Auditor(train_enc, enc, top_k, batch_size)
    real_nn, _ = nearest(aud.train_feats, aud.train_feats, exclude_self=True)

    held = aud.query(held_files, "heldout", problems, progress)
    if not held:
        raise ConfigError(f"audit: {fs_held.folder}: no readable held-out volume; the thresholds need real "
                          "volumes the generator never saw")
    threshold = lower_percentile(np.array([r["nn_distance"] for r in held]), PERCENTILE)
    held_ncc = np.concatenate([r["ncc"] for r in held])
    slice_threshold = lower_percentile(held_ncc, 100.0 - PERCENTILE)
    held_feats = np.stack([r["enc"].feature for r in held]).astype(np.float64)
    heldout_rows = aud.rows("held-out", held, threshold, slice_threshold, real_nn)

    rows: list[dict] = []
    summary: list[dict] = []
    pairs: dict[str, list[dict]] = {}
    for name, files in method_files.items():
        recs = aud.query(files, name, problems, progress)
        mrows = aud.rows(name, recs, threshold, slice_threshold, real_nn)
        rows += mrows
        n = len(mrows)
        gen_feats = np.stack([r["enc"].feature for r in recs]).astype(np.float64) if recs else np.zeros((0, 1))
        ct = c_t_score(aud.train_feats, held_feats, gen_feats, seed=seed) if recs else None
        n_sl = sum(r["n_slices"] for r in mrows)
        n_sl_f = sum(r["n_slices_flagged"] for r in mrows)
        summary.append({
            "method": name,
            "n": n,
            "n_flagged": sum(r["flagged"] for r in mrows),
            "near_copy_rate_volume": _r(np.mean([r["flagged"] for r in mrows])) if n else float("nan"),
            "n_slices": n_sl,
            "n_slices_flagged": n_sl_f,
            "near_copy_rate_slice": _r(n_sl_f / n_sl) if n_sl else float("nan"),
            "C_T": _r(ct.value, 4) if ct else float("nan"),
            "C_T_note": ct.note if ct else "no readable generated volume",
            "authpct": _r(authpct(aud.train_feats, gen_feats), 2) if recs else float("nan"),
            "median_nn_distance": _r(float(np.median([r["nn_distance"] for r in recs]))) if recs else float("nan"),
            "max_slice_ncc": _r(float(np.nanmax([r["best_slice_ncc"] for r in mrows]))) if any(
                np.isfinite(r["best_slice_ncc"]) for r in mrows) else float("nan"),
        })
        best = sorted((r for r in recs if "best" in r), key=lambda r: (-float(r["ncc"][r["best"]]), r["enc"].case_id))
        pairs[name] = []
        for r in best[:montage_pairs]:
            tv = int(r["tv"][r["best"]])
            tcanvas = enc.canvas_of(aud.train[tv])
            row = next(x for x in mrows if x["case_id"] == r["enc"].case_id)
            pairs[name].append({"gen": r["best_canvas"], "train": tcanvas[int(r["ts"][r["best"]])], "row": row})

    calib = {
        "n_volumes": len(held), "n_slices": int(np.isfinite(held_ncc).sum()),
        "percentile": PERCENTILE, "volume_threshold": _r(threshold), "slice_threshold": _r(slice_threshold),
        "median_nn_distance": _r(float(np.median([r["nn_distance"] for r in held]))),
        "near_copy_rate_volume": _r(np.mean([r["flagged"] for r in heldout_rows])),
        "near_copy_rate_slice": _r(sum(r["n_slices_flagged"] for r in heldout_rows) / max(1, sum(r["n_slices"] for r in heldout_rows))),
        "authpct": _r(authpct(aud.train_feats, held_feats), 2),
    }
    timing = {"seconds_total": round(time.perf_counter() - t0, 3),
              "seconds_train_encode": round(t_train, 3),
              "seconds_per_train_volume": round(t_train / len(train_enc), 4),
              "cache_hits": cache.hits, "cache_misses": cache.misses}
    meta = {
        "feature": {"volume": feat.id, "description": feat.description,
                    "distance": "euclidean between centred, L2-normalised feature vectors (0..2)",
                    "canvas": F.CANVAS_ID, "thumbnail": F.THUMB_ID},
        "params": {"percentile": PERCENTILE, "top_k": top_k, "seed": seed, "ct_cells": CT_CELLS,
                   "ct_min_generated_per_cell": CT_MIN_GENERATED, "cache": str(cache.root) if use_cache else None},
        "train": {"folder": str(fs_train.folder), "adapter": fs_train.adapter, "n_volumes": len(train_enc),
                  "n_slices": int(aud.index.valid.sum())},
        "heldout": {"folder": str(fs_held.folder), "adapter": fs_held.adapter, **calib},
        "inputs": {name: {"folder": str(fs.folder), "adapter": fs.adapter} for name, fs in fs_methods.items()},
        "timing": timing,
    }
    return write_outputs(Path(out), rows=rows, heldout_rows=heldout_rows, summary=summary, problems=problems,
                         meta=meta, pairs=pairs, cache=cache)
