"""The two downstream-utility protocols, each declared once, named and versioned.

A protocol is a frozen declaration: every setting that can change a number is a field, the id
(``seg-tstr-v1``, ``probe-tiny-v1``, ...) names one fixed declaration, and :meth:`declaration`
gives all of it as plain data (written to ``OUT/utility/utility.json`` beside every result, with its
sha256, so a changed constant without a version bump is caught by ``tests/utility/test_utility_config.py``).
Settings that cannot change a number (how often to checkpoint, threads, device) are not part of it.

* :class:`SegProtocol` (``seg-tstr``: train on synthetic, test on real): a MONAI 3D ``UNet`` trained
  from scratch on (volume, label map) pairs resampled to a fixed grid, with a fixed budget in
  iterations, patch size, patch sampling, augmentation, optimiser and learning-rate schedule, then
  applied by sliding windows to a held-out real test set and scored with the project's own Dice /
  HD95 (:mod:`trace_bench.metrics.overlap`, :mod:`trace_bench.metrics.hausdorff`) on each test mask's
  own grid and spacing.
* :class:`ProbeProtocol` (``probe``): an L2 logistic regression (scikit-learn) on frozen volume
  features of a catalogue feature space (:mod:`trace_bench.metrics.spaces`), its inverse
  regularisation ``C`` chosen on a fixed grid by stratified k-fold AUROC inside each training arm, and
  AUROC per label on the real test set with a stratified BCa bootstrap interval.

Each has a full variant (the published protocol, GPU-sized) and a ``tiny`` variant (CPU smoke runs
and tests; its numbers are never comparable with the full one's, and its id says so).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

VARIANTS = ("full", "tiny")
PROTOCOLS = ("seg-tstr", "probe")


@dataclass(frozen=True)
class SegProtocol:
    """``seg-tstr``: segmentation network trained on one arm's pairs, tested on held-out real pairs."""

    name: str
    version: int
    #: voxel size of the training / inference grid, mm (z, y, x); every pair is resampled to it
    spacing: tuple[float, float, float]
    #: HU window mapped to [-1, 1] (clipped outside)
    hu_window: tuple[float, float]
    #: training patch and sliding-window size, voxels (z, y, x)
    patch: tuple[int, int, int]
    #: MONAI ``UNet`` (spatial_dims=3, in_channels=1, out_channels = labels + 1): channels, strides,
    #: residual units; instance norm, PReLU, no dropout (MONAI's defaults)
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    res_units: int
    #: global batch of one iteration (split over torchrun ranks: batch % world == 0)
    batch: int
    #: the budget: optimiser steps
    iterations: int
    #: AdamW learning rate / weight decay; lr at step i = lr * (1 - i / iterations) ** lr_power
    lr: float
    weight_decay: float
    lr_power: float
    #: probability that a patch is centred on a foreground voxel (a label drawn uniformly among the
    #: labels present in the case, then one of its voxels), else on a uniform voxel
    pos_fraction: float
    #: at most this many (evenly spaced) voxels of each label are kept as patch centres per case
    fg_cap: int
    #: intensity augmentation on the [-1, 1] scale: x * U(1 - s, 1 + s) + U(-t, t) + N(0, U(0, n)^2);
    #: no geometric augmentation (a left-right flip would swap left / right labels)
    aug_scale: float
    aug_shift: float
    aug_noise: float
    #: sliding-window inference: overlap of the windows, Gaussian weighting (MONAI ``sliding_window_inference``)
    overlap: float
    #: bootstrap resamples and confidence of the reported intervals (arm means: percentile bootstrap
    #: over test cases; differences to the real arm: studentised paired bootstrap, trace_bench.results.paired)
    n_resamples: int = 9999
    confidence: float = 0.95
    #: loss: MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)`` with its defaults (background included)
    loss: str = "monai.DiceCELoss(to_onehot_y,softmax)"
    #: the first seed; ``n_seeds`` seeds run seed, seed + 1, ...
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def declaration(self) -> dict[str, Any]:
        """Every field as plain data (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    @property
    def sha256(self) -> str:
        return declaration_sha256(self.declaration())

    @property
    def grid_id(self) -> str:
        """What the preprocessing of a pair depends on (cache key part)."""
        z, y, x = self.spacing
        lo, hi = self.hu_window
        return f"grid{z:g}x{y:g}x{x:g}mm:hu[{lo:g},{hi:g}]->[-1,1]:f16:fg{self.fg_cap}"

    def legend(self) -> list[tuple[str, str]]:
        """(part, meaning) pairs for reports."""
        z, y, x = self.spacing
        return [
            ("grid", f"each (volume, label map) pair on the label map's grid (a volume of another shape is mapped "
                     f"onto it voxel centre to voxel centre), then resampled to {z:g} x {y:g} x {x:g} mm (trilinear "
                     f"image, nearest labels); HU clipped to [{self.hu_window[0]:g}, {self.hu_window[1]:g}] and "
                     "scaled to [-1, 1]"),
            ("network", f"MONAI UNet, channels {list(self.channels)}, strides {list(self.strides)}, "
                        f"{self.res_units} residual unit(s), instance norm, trained from scratch"),
            ("budget", f"{self.iterations} AdamW steps of {self.batch} patches {'x'.join(map(str, self.patch))} "
                       f"(z, y, x); lr {self.lr:g} with poly decay (power {self.lr_power:g}), weight decay "
                       f"{self.weight_decay:g}; loss Dice + cross-entropy"),
            ("sampling", f"patch centred on a foreground voxel with probability {self.pos_fraction:g} (label drawn "
                         "uniformly among those present), else anywhere; every draw keyed by (seed, step, sample)"),
            ("augmentation", f"intensity only: scale U(1 +- {self.aug_scale:g}), shift U(+-{self.aug_shift:g}), "
                             f"Gaussian noise of std U(0, {self.aug_noise:g}) on the [-1, 1] scale"),
            ("test", f"sliding windows ({self.overlap:g} overlap, Gaussian weights), argmax, mapped back to each "
                     "test mask's own grid; Dice and HD95 (mm) per label with trace-bench's functions"),
            ("statistics", f"a case's score is its mean over seeds; arm means with a {self.confidence:.0%} percentile "
                           f"bootstrap interval over test cases, differences to the real arm per test case with a "
                           f"studentised paired bootstrap interval and the exact sign-flip test ({self.n_resamples} "
                           "resamples); the spread over seeds is the SD of the arm's mean"),
        ]


@dataclass(frozen=True)
class ProbeProtocol:
    """``probe``: linear probe on frozen volume features, AUROC per label on real test volumes."""

    name: str
    version: int
    #: the fixed regularisation path: inverse L2 strengths tried, ascending
    cs: tuple[float, ...]
    #: stratified k-fold CV inside the training arm (fewer folds when a class has fewer cases)
    folds: int
    #: seed of the fold assignment (``StratifiedKFold(shuffle=True, random_state=cv_seed)``)
    cv_seed: int
    #: scikit-learn ``class_weight`` (``"balanced"``: rare abnormalities weigh as much as common ones)
    class_weight: str
    max_iter: int
    tol: float
    #: bootstrap resamples of the AUROC intervals (stratified by class, BCa)
    n_resamples: int
    confidence: float
    #: a volume's vector: the mean of the space's feature rows (one row for the 3D spaces)
    pooling: str = "mean"
    #: features standardised with the training arm's mean / std before the fit
    standardize: bool = True

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def declaration(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @property
    def sha256(self) -> str:
        return declaration_sha256(self.declaration())

    def legend(self) -> list[tuple[str, str]]:
        return [
            ("features", f"frozen features of the chosen catalogue space; one vector per volume ({self.pooling} of "
                         "the space's rows); standardised with the training arm's mean and std"),
            ("probe", f"L2 logistic regression (scikit-learn, lbfgs, class_weight={self.class_weight}, max_iter "
                      f"{self.max_iter}); C chosen among {list(self.cs)} by mean {self.folds}-fold stratified AUROC "
                      f"inside the training arm (fold seed {self.cv_seed}), then refitted on the whole arm"),
            ("test", f"AUROC per label on the real test volumes; {self.confidence:.0%} BCa bootstrap interval, "
                     f"{self.n_resamples} resamples stratified by class (scipy.stats.bootstrap); the difference to "
                     "the real-trained probe on the same resamples"),
        ]


def declaration_sha256(decl: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a declaration."""
    return hashlib.sha256(json.dumps(decl, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


SEG_FULL = SegProtocol(
    name="seg-tstr", version=1, spacing=(1.5, 1.5, 1.5), hu_window=(-1000.0, 1000.0), patch=(96, 96, 96),
    channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), res_units=2, batch=4, iterations=10000, lr=1e-3,
    weight_decay=1e-5, lr_power=0.9, pos_fraction=0.5, fg_cap=20000, aug_scale=0.1, aug_shift=0.1, aug_noise=0.02,
    overlap=0.5)
SEG_TINY = SegProtocol(
    name="seg-tstr-tiny", version=1, spacing=(8.0, 8.0, 8.0), hu_window=(-1000.0, 1000.0), patch=(8, 32, 32),
    channels=(8, 16, 32), strides=(2, 2), res_units=1, batch=2, iterations=48, lr=3e-3, weight_decay=1e-5,
    lr_power=0.9, pos_fraction=0.5, fg_cap=2000, aug_scale=0.1, aug_shift=0.1, aug_noise=0.02, overlap=0.5,
    n_resamples=999)
PROBE_FULL = ProbeProtocol(
    name="probe", version=1, cs=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), folds=5, cv_seed=0,
    class_weight="balanced", max_iter=10000, tol=1e-4, n_resamples=9999, confidence=0.95)
PROBE_TINY = ProbeProtocol(
    name="probe-tiny", version=1, cs=(1e-3, 1e-1, 10.0), folds=3, cv_seed=0, class_weight="balanced",
    max_iter=2000, tol=1e-4, n_resamples=999, confidence=0.95)

SEG_PROTOCOLS = {"full": SEG_FULL, "tiny": SEG_TINY}
PROBE_PROTOCOLS = {"full": PROBE_FULL, "tiny": PROBE_TINY}
#: checkpoint period in steps when the config does not set one (does not change any number)
CHECKPOINT_EVERY = {"full": 500, "tiny": 8}


def seg_protocol(variant: str) -> SegProtocol:
    if variant not in SEG_PROTOCOLS:
        raise ConfigError(f"utility.variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    return SEG_PROTOCOLS[variant]


def probe_protocol(variant: str) -> ProbeProtocol:
    if variant not in PROBE_PROTOCOLS:
        raise ConfigError(f"utility.variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    return PROBE_PROTOCOLS[variant]
