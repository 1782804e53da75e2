"""The set-level statistics computed on a feature space (generated vs reference vectors): FD, KID, PRDC.

A :class:`Statistic` is what a distribution metric does with the vectors a
:class:`~.spaces.FeatureSpace` gives: its options, its protocol-id part (with its meaning), the
per-case state it keeps, the exact merge of states, the set-level values and the columns it writes.
The formulas and their references are in :mod:`.frechet`, :mod:`.kid` and :mod:`.prdc` (pure functions,
the functional twins); the public metrics are rows of :mod:`.catalog`.

* :class:`FD`: Frechet distance of Gaussians fitted to the two sets. Per-case state: the case's
  feature rows in float64; merged into float64 moment sums (``{"sum", "outer", "n"}``, O(d^2) whatever
  the number of cases) or, while a set has at most d rows, kept as rows for the exact low-rank formula
  (:func:`.frechet.merge_states`). Covariance with ``n - ddof``. Sample size: with n <= d vectors (the
  volume spaces give one per volume, d = 2048 or 96) the covariance has rank n - 1, so FD is dominated by
  its bias and comparable only between runs with the same n (``sample_info`` reports n and d and the
  report prints the note); KID is unbiased at any n >= 2 per set; PRDC needs more than k per set.
* :class:`KID` and :class:`PRDC`: need the rows themselves. Per-case state ``{"features": float32
  (n, d)}`` (as the networks emit them, half the size of float64 records), merged by concatenation in the
  order given; both put the rows in a canonical order first, so values do not depend on that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from . import frechet
from .base import Option, Output, Part, RunContext, State
from .kid import KID_TOL, canonical_rows, kid_from_features
from .prdc import PRDC_COLUMNS, PRDC_TOL, prdc_from_features


def features_of(state: State, what: str = "state") -> np.ndarray:
    """The (n, d) feature matrix of a merged feature-set state (float64 copy)."""
    if "features" not in state:
        raise ValueError(f"Expected a {what} with 'features' (n, d); got keys {sorted(state)} "
                         "(no reference cases scored?)")
    f = np.asarray(state["features"], dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"Expected {what} features (n, d), got shape {f.shape}")
    return f


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

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        raise NotImplementedError

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        raise NotImplementedError

    def case_state(self, features: np.ndarray, case_id: str) -> State:
        raise NotImplementedError

    def merge(self, states: Iterable[State]) -> State:
        raise NotImplementedError

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        raise NotImplementedError

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def sample_info(self, state: State) -> dict[str, int]:
        raise NotImplementedError


@dataclass(frozen=True)
class FD(Statistic):
    """Frechet distance, covariance with ``n - ddof``; ``tag``: its protocol-id part (``fid`` and ``fvd``
    keep the spelling their cache keys have always had, ``ddof=1`` / ``ddof=0``)."""

    ddof: int = 1
    tag: str = "fd:ddof=1"
    title = "Frechet distance"

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        cov = "n - 1 (unbiased, pytorch-fid's np.cov)" if self.ddof == 1 else "n (StyleGAN-V's FeatureStats)"
        return self.tag, (f"Frechet distance between Gaussians fitted to all generated and all reference vectors "
                          f"(unpaired): ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^1/2), covariance over {cov}")

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        return {name: Output(False, show.label, digits=show.digits, rank=show.rank, tolerance=show.tolerance)}

    def case_state(self, features: np.ndarray, case_id: str) -> State:
        return frechet.features_state(features)

    def merge(self, states: Iterable[State]) -> State:
        return frechet.merge_states(states)

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        return {name: frechet.frechet_distance_from_states(generated, reference, ddof=self.ddof)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(state, ddof=self.ddof)

    def sample_info(self, state: State) -> dict[str, int]:
        return frechet.sample_info(state)


class FeatureSet(Statistic):
    """A statistic on the rows themselves: float32 per-case features, merged by concatenation."""

    def case_state(self, features: np.ndarray, case_id: str) -> State:
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2:
            raise ValueError(f"Expected features (n, d), got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"case {case_id!r}: features contain NaN or inf")
        return {"features": f}

    def merge(self, states: Iterable[State]) -> State:
        fs = [np.asarray(s["features"], dtype=np.float32) for s in states]
        if not fs:
            raise ValueError("no states to merge")
        dims = {f.shape[1] for f in fs}
        if len(dims) != 1:
            raise ValueError(f"Expected features of one dimension, got {sorted(dims)}")
        return {"features": np.concatenate(fs)}

    def sample_info(self, state: State) -> dict[str, int]:
        f = np.asarray(state["features"])
        return {"samples": int(f.shape[0]), "dim": int(f.shape[1])}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        """Only the sample count and dimension (the features themselves are the per-case states)."""
        info = self.sample_info(state)
        return {"n": np.int64(info["samples"]), "dim": np.int64(info["dim"])}


class KID(FeatureSet):
    """Kernel Inception Distance (Binkowski et al. 2018), :func:`.kid.kid_from_features`."""

    title = "KID (unbiased MMD^2, cubic kernel)"
    options = (
        Option("subsets", 100, "number of random subsets the estimate is averaged over (torchmetrics default)",
               type=int, minimum=1, maximum=100_000, in_protocol_id=False),
        Option("subset_size", 1000, "rows drawn per set and subset (torchmetrics default); sets with at most "
               "this many rows use all rows once", type=int, minimum=2, in_protocol_id=False),
    )

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        s, z = int(opts["subsets"]), int(opts["subset_size"])
        return (f"kid:poly3-unbiased:subsets={s}:size={z}:seed{ctx.seed}",
                f"KID: unbiased MMD^2 with the cubic kernel (x.y / d + 1)^3, mean (and std) over {s} subsets of {z} "
                f"rows per set drawn with seed {ctx.seed} from the rows in a canonical order (all rows once, std 0, "
                f"when a set has at most {z} rows)")

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        """``name`` (shown) and ``name_std`` (CSV only)."""
        return {name: Output(False, show.label, digits=4, rank=show.rank, tolerance=KID_TOL),
                f"{name}_std": Output(None, f"{show.label} std", digits=4, rank=show.rank + 0.001, hidden=True,
                                      tolerance=KID_TOL)}

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        mean, std = kid_from_features(features_of(generated, "generated state"),
                                      features_of(reference, "reference state"), int(opts["subsets"]),
                                      int(opts["subset_size"]), ctx.seed)
        return {name: mean, f"{name}_std": std}


class PRDC(FeatureSet):
    """Precision, recall, density, coverage (Naeem et al. 2020), :func:`.prdc.prdc_from_features`."""

    title = "precision / recall / density / coverage"
    options = (Option("nearest_k", 5, "k of the k-nearest-neighbour radii (prdc package default 5)", type=int,
                      minimum=1, maximum=1000, in_protocol_id=False),)

    def part(self, opts: dict[str, Any], ctx: RunContext) -> Part:
        k = int(opts["nearest_k"])
        return (f"prdc:k={k}:euclidean-exact",
                f"precision / recall / density / coverage (Naeem et al. 2020), radius of each vector = distance to its "
                f"k = {k}th nearest neighbour in its own set, exact Euclidean distances; each set needs more than {k} "
                "vectors")

    def outputs(self, name: str, show: Display) -> dict[str, Output]:
        """The four columns ``name_precision`` ... ``name_coverage``."""
        units = {"precision": "fraction", "recall": "fraction", "density": "", "coverage": "fraction"}
        return {f"{name}_{c}": Output(True, f"{show.label} {c}", unit=units[c], digits=3, rank=show.rank + 0.01 * i,
                                      tolerance=PRDC_TOL)
                for i, c in enumerate(PRDC_COLUMNS)}

    def compute(self, name: str, generated: State, reference: State, opts: dict[str, Any],
                ctx: RunContext) -> dict[str, float]:
        res = prdc_from_features(canonical_rows(features_of(reference, "reference state")),
                                 canonical_rows(features_of(generated, "generated state")), int(opts["nearest_k"]))
        return {f"{name}_{c}": res[c] for c in PRDC_COLUMNS}
