"""The set-level statistics computed on a feature space (generated vs reference vectors): FD, KID, PRDC.

A :class:`Statistic` is what a distribution metric does with the vectors a
:class:`~.spaces.FeatureSpace` gives: its options, its protocol-id part (with its meaning), the
per-case state it keeps, the exact merge of states, the set-level values and the columns it writes
(with their declared ranges: one place per family). The formulas and their references are in
:mod:`.frechet`, :mod:`.kid` and :mod:`.prdc` (pure functions, the functional twins); the public metrics
are rows of :mod:`.catalog`.

States. Every statistic keeps, per case, the case's feature rows (float32 as the networks emit them;
float64 only where float32 would change a value). Merged, the rows of every case are concatenated with
``volume`` (n,): the index of the case (volume) each row came from, so that statistics can treat the
volume as the sampling unit; values are computed on the rows in a canonical order
(:func:`.kid.canonical_volumes`), so they do not depend on the order cases were merged or sharded in.

* :class:`FD`: Frechet distance of Gaussians fitted to the two sets, covariance with ``n - ddof``, and the
  same distance extrapolated to infinitely many samples (column ``<name>_inf``, Chong & Forsyth 2020:
  :func:`.frechet.frechet_distance_infinity`). A merged state keeps the rows while they fit in
  :data:`FD_ROWS_BYTES`; beyond, float64 moment sums (``{"sum", "outer", "n"}``, O(d^2); the extrapolation
  then has no rows to subsample and is NaN with the reason). With n <= d vectors (the volume spaces give
  one per volume, d = 2048 or 96) the covariance has rank n - 1 and FD is dominated by its bias, comparable
  only between runs with the same n (``sample_info`` reports n and d and the report prints the note).
* :class:`KID`: the MMD^2 estimate with the cubic kernel; on spaces with several vectors per volume the
  within-set means leave out same-volume pairs by default (option ``pairs``), the form that is unbiased
  when volumes are independent (:mod:`.kid`). Negative estimates are possible (declared:
  ``estimate_range``).
* :class:`PRDC`: precision / recall / density / coverage exactly as the prdc package computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from . import frechet
from .base import ANY_REAL, NONNEGATIVE, UNIT_INTERVAL, Option, Output, Part, RunContext, State
from .kid import KID_TOL, canonical_rows, canonical_volumes, kid_from_features
from .prdc import PRDC_COLUMNS, PRDC_TOL, prdc_from_features

#: a merged FD state keeps its rows (for the extrapolation's volume subsets) up to this many bytes of features
FD_ROWS_BYTES = 1 << 30


def features_of(state: State, what: str = "state") -> np.ndarray:
    """The (n, d) feature matrix of a merged feature-set state (float64 copy)."""
    if "features" not in state:
        raise ValueError(f"Expected a {what} with 'features' (n, d); got keys {sorted(state)} "
                         "(no reference cases scored?)")
    f = np.asarray(state["features"], dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"Expected {what} features (n, d), got shape {f.shape}")
    return f


def volumes_of(state: State) -> np.ndarray:
    """The volume of every row of a feature-set state (a per-case state: one volume, id 0)."""
    n = int(np.shape(state["features"])[0])
    v = state.get("volume")
    return np.zeros(n, np.int64) if v is None else np.asarray(v, np.int64)


def merge_rows(states: Iterable[State]) -> State:
    """Per-case feature states (or merged ones) -> ``{"features": (N, d), "volume": (N,) int64}``: the rows
    concatenated in the order given, each state's volumes numbered after the previous ones' (exact: no
    arithmetic; the order is made canonical where values are computed)."""
    fs, vs, offset = [], [], 0
    for s in states:
        f = np.asarray(s["features"])
        if f.ndim != 2:
            raise ValueError(f"Expected features (n, d), got shape {f.shape}")
        v = volumes_of(s)
        fs.append(f)
        vs.append(v + offset)
        offset += int(v.max()) + 1 if v.size else 1
    if not fs:
        raise ValueError("no states to merge")
    dims = {f.shape[1] for f in fs}
    if len(dims) != 1:
        raise ValueError(f"Expected features of one dimension, got {sorted(dims)}")
    dtype = np.float32 if all(f.dtype == np.float32 for f in fs) else np.float64
    return {"features": np.concatenate([f.astype(dtype, copy=False) for f in fs]), "volume": np.concatenate(vs)}


def canonical_state(state: State, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(features float64, volume) of a merged feature-set state in :func:`.kid.canonical_volumes` order."""
    return canonical_volumes(features_of(state, what), volumes_of(state))


@dataclass(frozen=True)
class Display:
    """How a catalogue row shows its columns: header label, position in Table 2, decimals, tolerance."""

    label: str
    rank: float
    digits: int = 3
    tolerance: dict[str, float] | None = None


class Statistic:
    """Base of the statistics; see the module doc."""

    #: short name for generated descriptions
    title: str = ""
    options: tuple[Option, ...] = ()

    def options_for(self, one_per_volume: bool) -> tuple[Option, ...]:
        """The options of this statistic on a space with one vector per volume (or several)."""
        return self.options

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        raise NotImplementedError

    def parts(self, opts: dict[str, Any], ctx: RunContext) -> list[Part]:
        """Every protocol-id part of the statistic (default: :meth:`part`)."""
        return [self.part(opts, ctx)]

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        raise NotImplementedError

    def case_state(self, features: np.ndarray, case_id: str) -> State:
        raise NotImplementedError

    def merge(self, states: Iterable[State]) -> State:
        raise NotImplementedError

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        raise NotImplementedError

    def value_notes(self, name: str, generated: State, reference: State, opts: dict[str, Any]) -> dict[str, str]:
        """Why a column of :meth:`compute` is NaN for these states (column -> reason); cheap, no computing."""
        return {}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def sample_info(self, state: State) -> dict[str, int]:
        raise NotImplementedError


def rows_state(features: np.ndarray, case_id: str) -> State:
    """A case's feature rows as its state: float32 when that loses nothing (:func:`.frechet.lossless_float32`),
    finite, (n, d)."""
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"Expected features (n, d), got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"case {case_id!r}: features contain NaN or inf")
    return {"features": frechet.lossless_float32(f)}


@dataclass(frozen=True)
class FD(Statistic):
    """Frechet distance, covariance with ``n - ddof``; ``tag``: its protocol-id part (``fid`` and ``fvd``
    keep the spelling their cache keys have always had, ``ddof=1`` / ``ddof=0``); and column ``<name>_inf``,
    the distance extrapolated to infinite samples (:func:`.frechet.frechet_distance_infinity`)."""

    ddof: int = 1
    tag: str = "fd:ddof=1"
    title = "Frechet distance"
    options = (Option("extrapolation_points", frechet.INF_POINTS, "subset sizes fitted by the extrapolation to "
                      "infinite samples (column <name>_inf, Chong & Forsyth 2020); 0 = not computed", type=int,
                      minimum=0, maximum=100, in_protocol_id=False),)

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        cov = "n - 1 (unbiased, pytorch-fid's np.cov)" if self.ddof == 1 else "n (StyleGAN-V's FeatureStats)"
        return self.tag, (f"Frechet distance between Gaussians fitted to all generated and all reference vectors "
                          f"(unpaired): ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^1/2), covariance over {cov}")

    def parts(self, opts: dict[str, Any], ctx: RunContext) -> list[Part]:
        return [self.part(opts, ctx), self.inf_part(opts, ctx)]

    def inf_part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        k = int(opts.get("extrapolation_points", frechet.INF_POINTS))
        if k < 2:
            return "inf:off", "the extrapolation to infinite samples is not computed (column <name>_inf NaN)"
        f, v = frechet.INF_MIN_FRACTION, frechet.INF_MIN_VOLUMES
        return (f"inf:chong-forsyth:volumes-both:points={k}:min{f:g}:seed{ctx.seed}",
                f"column <name>_inf: the same distance extrapolated to infinitely many samples (Chong & Forsyth "
                f"2020, 'Effectively Unbiased FID'): FD on random subsets of the VOLUMES of both sets at {k} fractions "
                f"from {f:g} to 1 (seed {ctx.seed}), a least-squares line in 1 / fraction, its value at 0; not "
                f"computed with fewer than {v} volumes per set or when the smallest subsets hold no more rows than "
                "feature dimensions")

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        """``name`` and ``name_inf``: a Frechet distance is >= 0, and so is the plug-in estimate (up to rounding);
        the extrapolated estimate can fall below 0."""
        return {name: Output(False, show.label, digits=show.digits, rank=show.rank, tolerance=show.tolerance,
                             value_range=NONNEGATIVE),
                f"{name}_inf": Output(False, f"{show.label} inf", digits=show.digits, rank=show.rank + 0.002,
                                      tolerance=show.tolerance, value_range=NONNEGATIVE, estimate_range=ANY_REAL)}

    def case_state(self, features: np.ndarray, case_id: str) -> State:
        return rows_state(features, case_id)

    def merge(self, states: Iterable[State]) -> State:
        """Rows + volumes (:func:`merge_rows`) while every state has rows and they fit in :data:`FD_ROWS_BYTES`;
        otherwise float64 moment sums (:func:`.frechet.merge_states`)."""
        states = list(states)
        if all("features" in s for s in states) and \
                sum(np.asarray(s["features"]).nbytes for s in states) <= FD_ROWS_BYTES:
            return merge_rows(states)
        return frechet.merge_states([{k: v for k, v in s.items() if k != "volume"} for s in states])

    def inf_blocker(self, generated: State, reference: State, opts: dict[str, Any]) -> str:
        """Why ``<name>_inf`` is not computed for these states ('' when it is)."""
        k = int(opts.get("extrapolation_points", frechet.INF_POINTS))
        if k < 2:
            return f"not computed (option extrapolation_points = {k}; at least 2 subset sizes are fitted)"
        if not generated or not reference:
            return "FD extrapolated to infinite samples: no generated or no reference vectors"
        if "features" not in generated or "features" not in reference:
            return ("FD extrapolated to infinite samples needs the rows of every volume; the merged state keeps "
                    "moment sums only (more feature bytes than FD_ROWS_BYTES)")
        return frechet.infinity_blocker(volumes_of(generated), volumes_of(reference),
                                        int(np.shape(generated["features"])[1]))

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        fd = frechet.frechet_distance_from_states(generated, reference, ddof=self.ddof)
        inf = float("nan")
        if not self.inf_blocker(generated, reference, opts):
            g, gv = canonical_state(generated, "generated state")
            r, rv = canonical_state(reference, "reference state")
            inf = frechet.frechet_distance_infinity(g, gv, r, rv, self.ddof, int(opts["extrapolation_points"]),
                                                    seed=ctx.seed)
        return {name: fd, f"{name}_inf": inf}

    def value_notes(self, name: str, generated: State, reference: State, opts: dict[str, Any]) -> dict[str, str]:
        why = self.inf_blocker(generated, reference, opts)
        return {f"{name}_inf": why} if why else {}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(state, ddof=self.ddof)

    def sample_info(self, state: State) -> dict[str, int]:
        info = frechet.sample_info(state)
        if "features" in state:
            info["volumes"] = int(np.unique(volumes_of(state)).size)
        return info


class FeatureSet(Statistic):
    """A statistic on the rows themselves: per-case rows (float32), merged with their volumes (:func:`merge_rows`)."""

    def case_state(self, features: np.ndarray, case_id: str) -> State:
        return rows_state(features, case_id)

    def merge(self, states: Iterable[State]) -> State:
        return merge_rows(states)

    def sample_info(self, state: State) -> dict[str, int]:
        """Rows and volumes (no feature dimension: a KID or PRDC estimate is not rank-limited by it)."""
        return {"samples": int(np.shape(state["features"])[0]), "volumes": int(np.unique(volumes_of(state)).size)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        """Only the counts (the features themselves are the per-case states)."""
        return {"n": np.int64(np.shape(state["features"])[0]), "dim": np.int64(np.shape(state["features"])[1]),
                "volumes": np.int64(np.unique(volumes_of(state)).size)}


#: ``KID.pairs``: which within-set pairs the MMD^2 means run over (spaces with several vectors per volume)
KID_PAIRS = ("cross-volume", "all")


class KID(FeatureSet):
    """Kernel Inception Distance (Binkowski et al. 2018), :func:`.kid.kid_from_features`."""

    title = "KID (MMD^2, cubic kernel)"
    options = (
        Option("subsets", 100, "number of random subsets the estimate is averaged over (torchmetrics default)",
               type=int, minimum=1, maximum=100_000, in_protocol_id=False),
        Option("subset_size", 1000, "rows drawn per set and subset (torchmetrics default); sets with at most "
               "this many rows use all rows once", type=int, minimum=2, in_protocol_id=False),
    )
    #: on spaces with several vectors per volume (slices, clips)
    pairs_option = Option("pairs", "cross-volume", "within-set pairs of the MMD^2 means: cross-volume (rows of "
                          "different volumes only: unbiased when volumes are independent) or all (torchmetrics' "
                          "form: biased upwards by correlated rows of one volume)", choices=KID_PAIRS,
                          in_protocol_id=False)

    def options_for(self, one_per_volume: bool) -> tuple[Option, ...]:
        return self.options if one_per_volume else self.options + (self.pairs_option,)

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        s, z = int(opts["subsets"]), int(opts["subset_size"])
        draw = (f"mean (and std) over {s} subsets of {z} rows per set drawn with seed {ctx.seed} from the rows in a "
                f"canonical order (all rows once, std 0, when a set has at most {z} rows)")
        tail = f"subsets={s}:size={z}:seed{ctx.seed}"
        pairs = opts.get("pairs")
        if pairs is None:  # one vector per volume: independent rows
            return (f"kid:poly3-unbiased:{tail}",
                    f"KID: MMD^2 with the cubic kernel (x.y / d + 1)^3, unbiased U-statistic (one vector per volume: "
                    f"independent rows), {draw}")
        if pairs == "cross-volume":
            return (f"kid-v2:poly3-cross-volume:{tail}",
                    f"KID: MMD^2 with the cubic kernel (x.y / d + 1)^3, within-set means over pairs of rows of "
                    f"different volumes only (unbiased when volumes are independent, whatever the correlation of "
                    f"a volume's rows), {draw}")
        return (f"kid:poly3-all-pairs:{tail}",
                f"KID: MMD^2 with the cubic kernel (x.y / d + 1)^3, within-set means over all pairs of distinct rows "
                f"(torchmetrics' form; same-volume pairs included, so biased upwards when a volume's rows are "
                f"correlated), {draw}")

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        """``name`` (shown; MMD^2 >= 0, its estimate can be < 0) and ``name_std`` (CSV only)."""
        return {name: Output(False, show.label, digits=4, rank=show.rank, tolerance=KID_TOL, value_range=NONNEGATIVE,
                             estimate_range=ANY_REAL),
                f"{name}_std": Output(None, f"{show.label} std", digits=4, rank=show.rank + 0.001, hidden=True,
                                      tolerance=KID_TOL, value_range=NONNEGATIVE)}

    def too_few_volumes(self, generated: State, reference: State, opts: dict[str, Any]) -> str:
        """Why the cross-volume form has no value for these states ('' when it has one)."""
        if opts.get("pairs") != "cross-volume" or "features" not in generated or "features" not in reference:
            return ""
        n = {w: int(np.unique(volumes_of(s)).size) for w, s in (("generated", generated), ("reference", reference))}
        if min(n.values()) < 2:
            return (f"KID over cross-volume pairs needs at least 2 volumes per set (generated {n['generated']}, "
                    f"reference {n['reference']})")
        return ""

    def value_notes(self, name: str, generated: State, reference: State, opts: dict[str, Any]) -> dict[str, str]:
        why = self.too_few_volumes(generated, reference, opts)
        return {name: why, f"{name}_std": why} if why else {}

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        g, r = features_of(generated, "generated state"), features_of(reference, "reference state")
        if self.too_few_volumes(generated, reference, opts):
            return {name: float("nan"), f"{name}_std": float("nan")}
        vols = (volumes_of(generated), volumes_of(reference)) if opts.get("pairs") == "cross-volume" else (None, None)
        mean, std = kid_from_features(g, r, int(opts["subsets"]), int(opts["subset_size"]), ctx.seed, *vols)
        return {name: mean, f"{name}_std": std}


class PRDC(FeatureSet):
    """Precision, recall, density, coverage (Naeem et al. 2020), :func:`.prdc.prdc_from_features`."""

    title = "precision / recall / density / coverage"
    options = (Option("nearest_k", 5, "k of the k-nearest-neighbour radii (prdc package default 5)", type=int,
                      minimum=1, maximum=1000, in_protocol_id=False),)

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        k = int(opts["nearest_k"])
        return (f"prdc-v2:k={k}:sklearn-euclidean",
                f"precision / recall / density / coverage (Naeem et al. 2020), radius of each vector = distance to its "
                f"k = {k}th nearest neighbour in its own set; distances computed as the prdc package computes them "
                "(sklearn pairwise_distances on the float32 features, for radii and comparisons alike: ties fall as "
                f"in prdc); each set needs more than {k} vectors")

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        """The four columns ``name_precision`` ... ``name_coverage``: fractions in [0, 1], density >= 0
        (at most n_reference / k)."""
        units = {"precision": "fraction", "recall": "fraction", "density": "", "coverage": "fraction"}
        return {f"{name}_{c}": Output(True, f"{show.label} {c}", unit=units[c], digits=3, rank=show.rank + 0.01 * i,
                                      tolerance=PRDC_TOL,
                                      value_range=NONNEGATIVE if c == "density" else UNIT_INTERVAL)
                for i, c in enumerate(PRDC_COLUMNS)}

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        real = canonical_rows(np.asarray(reference["features"]) if "features" in reference
                              else features_of(reference, "reference state"))
        fake = canonical_rows(np.asarray(generated["features"]) if "features" in generated
                              else features_of(generated, "generated state"))
        res = prdc_from_features(real, fake, int(opts["nearest_k"]))
        return {f"{name}_{c}": res[c] for c in PRDC_COLUMNS}
