"""Other evaluators' 2.5D FID, reproduced as named, versioned presets: ``fid_maisi`` and ``fid_vlm3d``.

"MAISI 2.5D FID" and "VLM3D FID_2p5D" are one script run with two argument sets, so a number from
either can be compared with a number from here only when every step below is the same. Both presets
follow ``compute_fid_2-5d_ct.py`` (Project-MONAI/tutorials ``generation/maisi/scripts/``, last changed in commit
d948baa; forithmus/VLM3D-Dockers ``ctgen_evaluation/`` holds a copy that differs only in DataLoader workers):

1. volume: MONAI ``Orientationd("RAS")``; ``Spacingd(pixdim=(1, 1, 1), mode="bilinear")``;
   ``SpatialPadd(512^3, constant -1000)``; ``CenterSpatialCropd(512^3)``;
   ``ScaleIntensityRanged(-1000, 1000 -> -1000, 1000, clip=True)`` (a clip to [-1000, 1000] HU).
   :func:`preprocess` applies these MONAI transforms themselves, in the script's order, to the
   canonical volume (its array and RAS affine as a ``MetaTensor``, what ``LoadImaged`` +
   ``EnsureChannelFirstd`` make of the file); tests/metrics/test_fid_presets.py checks the result equals the
   script's dictionary pipeline on the file bit for bit;
2. slices of the (x, y, z) RAS cube along three planes, the script's names: ``xy`` (axial, one slice
   per z), ``yz`` (sagittal, one per x), ``zx`` (coronal, one per y, image rows x, columns z); with a
   centre ratio r only indices ``int((1 - r) / 2 * n) .. int((1 + r) / 2 * n) - 1`` of each axis;
3. per plane, all its slices min-max scaled together, replicated to 3 channels (BGR), minus
   0.406 / 0.456 / 0.485 (:func:`trace_bench.networks.radimagenet.radimagenet_input`), RadImageNet
   ResNet-50 layer4 map averaged over (H, W): 2048-d per slice (weights ``radimagenet-resnet50``);
4. per plane, MONAI ``FIDMetric`` (``get_fid_score``: float64, covariance with n - 1,
   ``scipy.linalg.sqrtm`` of the product) between the generated and the reference slices; the
   reported value is the mean of the three planes, ``(xy + yz + zx) / 3``.

The two presets differ in one argument. ``maisi-2.5d-v1`` (the command in MAISI's README and script
docstring, used for its README table on autoPET: 512^3 at 1 mm): ``--enable_center_slices_ratio 0.4``,
so 205 of 512 slices per plane (indices 153..357). ``vlm3d-2.5d-v1`` (``ctgen_evaluation/evaluation.py``
of the VLM3D text-to-CT challenge, which converts every ``.mha`` to ``.nii.gz`` with SimpleITK first):
no ratio, all 512 slices per plane. Both evaluators also keep only the first 100 files of each sorted
list (``--num_images 100``); trace-bench scores every case it is given, so give at most 100 volumes per
set to match. VLM3D names the ``zx`` value ``FID_2p5D_XZ``, hence the column ``fid_vlm3d_xz``.

Not the same as ``fid_2p5d`` (:mod:`.fid`): that one uses the FID Inception on 8-bit frames of an
isotropic 1.5 mm cube without 512^3 padding, every second slice; its numbers are not comparable to
these, nor are these two presets comparable with each other (different slice sets, different min-max
ranges per plane).

Frechet distance: :func:`trace_bench.metrics.frechet.frechet_distance_from_states` (ddof 1), the same
quantity as MONAI's ``get_fid_score`` through symmetric eigensolvers (or the exact low-rank formula
while a set has fewer slices than 2048). Measured against MONAI itself: relative difference below
1e-12 with full-rank covariances (more than 2048 slices per set, every real use: 100 volumes x 205 or
512 slices), below 1e-6 with rank-deficient ones, where MONAI's ``sqrtm`` of a singular product is the
less accurate of the two (two identical sets of 300 slices: MONAI -1.0e-4, this -4.5e-13, exact 0). The
scripts log the full float; VLM3D's README says its JSON values are rounded to 4 decimals.

Inputs: the canonical volume in HU, i.e. what the script reads from a HU NIfTI; a generator writing
another intensity convention goes through its adapter first (the scripts would read such a file raw).

Cost per volume: 615 (MAISI) or 1536 (VLM3D) ResNet-50 passes on 512 x 512 slices (~21 G multiply-adds
each; measured 1.5 s per slice on two shared CPU cores, i.e. ~15 / ~38 min per volume), a GPU metric; hence
not in ``--metrics available``. Memory: the 512^3 float32 cube (512 MiB, kept in ``CaseData.shared`` for
the case, so both presets build it once; ~3 GB peak while MONAI pads it) plus one batch of activations;
per-case state 205 or 512 x 3 x 2048 float32 (5 / 12.6 MiB); merged states are moment states (3 x 32 MiB).

VLM3D revisions: the evaluator changed its network after July 2025. ``fid_vlm3d`` reproduces the current revision
(``vlm3d-2.5d-v2``, forithmus/VLM3D-Dockers ``ct_challenges/ctgen_evaluation/`` at a945900: the same arguments plus
``--model_name squeezenet1_1``, i.e. torchvision's ImageNet SqueezeNet 1.1, 1000-d per slice; torchvision counts
0.35 GFLOPs at 224 x 224, ~1.8 at 512 x 512), the one a user of the challenge's numbers today needs;
``fid_vlm3d_2507`` keeps the July 2025 revision (``vlm3d-2.5d-v1``, RadImageNet ResNet-50, main at 25f9c7b), the
preset this module shipped as ``fid_vlm3d`` before (same protocol id, so its cached features stay valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import numpy as np

from ..volume import Volume
from . import frechet
from .backbone import Backbone
from .base import NONNEGATIVE, CaseData, Metric, Option, Output, Part, RunContext, State, register_metric
from .catalog import FID_TOL
from .fid import merge_planes, plane_state
from .spaces import cache_option, shared_cached_features

if TYPE_CHECKING:  # torch is imported where a volume is preprocessed
    import torch

#: the script's planes, in its order (``get_features_2p5d``: XY along D, YZ along H, ZX along W)
PLANES = ("xy", "yz", "zx")
#: MONAI Orientation labels; equal to the default the scripts get (MONAI <= 1.6), spelled out because
#: MONAI announces a different default
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
#: ``ScaleIntensityRanged(a_min=-1000, a_max=1000, b_min=-1000, b_max=1000, clip=True)`` and the pad value
HU_RANGE = (-1000.0, 1000.0)
PAD_VALUE = -1000.0
WEIGHTS_NAME = "radimagenet-resnet50"


@dataclass(frozen=True)
class Preset2p5D:
    """One evaluator's 2.5D FID protocol (every argument of ``compute_fid_2-5d_ct.py`` that changes a number)."""

    name: str
    #: versioned id: goes into every protocol id, cache key and result row
    id: str
    #: ``--enable_resampling_spacing`` (RAS x, y, z mm; None: no ``Spacingd``)
    spacing: tuple[float, float, float] | None
    #: ``--target_shape`` (RAS x, y, z)
    target_shape: tuple[int, int, int]
    #: ``--enable_padding`` / ``--enable_center_cropping``
    pad: bool
    crop: bool
    #: ``--enable_center_slices_ratio`` (None: every slice)
    center_ratio: float | None
    #: result column per plane, and of the mean
    columns: dict[str, str]
    mean_column: str
    #: where the arguments come from
    source: str

    def preprocess_parts(self) -> list[Part]:
        """The volume preprocessing as protocol-id parts, each with its meaning."""
        sp = "none" if self.spacing is None else "x".join(f"{s:g}" for s in self.spacing) + "mm-bilinear"
        shape = "x".join(map(str, self.target_shape))
        return [("monai:ras", "MONAI Orientation to RAS of the volume as the script reads it from a NIfTI file"),
                (f"spacing:{sp}", "no resampling" if self.spacing is None else
                 f"MONAI Spacing to {sp[:-len('mm-bilinear')]} mm (x, y, z), bilinear"),
                (f"pad:{'-1000:' + shape if self.pad else 'no'}",
                 f"MONAI SpatialPad to {shape} with -1000 HU" if self.pad else "no padding"),
                (f"centercrop:{shape if self.crop else 'no'}",
                 f"MONAI CenterSpatialCrop to {shape}" if self.crop else "no cropping"),
                ("clip:-1000,1000", "MONAI ScaleIntensityRange -1000..1000 -> -1000..1000 with clip: HU clipped to "
                                    "[-1000, 1000]")]

    @property
    def preprocess_id(self) -> str:
        return "|".join(text for text, _ in self.preprocess_parts())

    @property
    def slicing_id(self) -> str:
        return "all" if self.center_ratio is None else f"center{self.center_ratio:g}"

    @property
    def slicing_meaning(self) -> str:
        if self.center_ratio is None:
            return "every slice of each of the three planes XY, YZ, ZX of the cube"
        r = self.center_ratio
        return (f"the central {r:g} of each of the three planes XY, YZ, ZX of the cube (indices int((1 - {r:g}) / 2 n) "
                f"to int((1 + {r:g}) / 2 n) - 1)")


MAISI = Preset2p5D(
    "maisi", "maisi-2.5d-v1", (1.0, 1.0, 1.0), (512, 512, 512), True, True, 0.4,
    {"xy": "fid_maisi_xy", "yz": "fid_maisi_yz", "zx": "fid_maisi_zx"}, "fid_maisi",
    "Project-MONAI/tutorials generation/maisi/README.md 'FID Score Computation' and the docstring of "
    "generation/maisi/scripts/compute_fid_2-5d_ct.py: --enable_center_slices_ratio 0.4 --enable_padding True "
    "--enable_center_cropping True --enable_resampling_spacing 1.0x1.0x1.0 --target_shape 512x512x512")
VLM3D = Preset2p5D(
    "vlm3d", "vlm3d-2.5d-v1", (1.0, 1.0, 1.0), (512, 512, 512), True, True, None,
    {"xy": "fid_vlm3d_2507_xy", "yz": "fid_vlm3d_2507_yz", "zx": "fid_vlm3d_2507_xz"}, "fid_vlm3d_2507",
    "forithmus/VLM3D-Dockers ctgen_evaluation/evaluation.py at 25f9c7b (July 2025; FID 2.5D step): --target_shape "
    "512x512x512 --enable_padding True --enable_center_cropping True --enable_resampling_spacing 1.0x1.0x1.0 "
    "--num_images 100, no --enable_center_slices_ratio; .mha converted to .nii.gz by SimpleITK ReadImage / WriteImage")


# ============================================================================= preprocessing
def nifti_affine(volume: Volume) -> np.ndarray:
    """``volume.affine`` as the scripts read it back from a NIfTI file of the volume.

    Both scripts read NIfTI (VLM3D first rewrites each ``.mha`` with SimpleITK), whose header keeps the
    affine rows as float32 (``srow_x/y/z``) in the file's own axis order; MONAI then flips to RAS in
    float64, exactly. So the canonical affine is taken back to the source file's axis order
    (``meta["source_orientation"]``; the canonical LPS layout when unknown), rounded to float32 there and
    flipped back (flips of float32 values are exact in float64). A NIfTI input is unchanged by this; a
    ``.mha`` / DICOM spacing such as 0.7 mm becomes 0.69999999 mm, and that can change ``Spacingd``'s
    output shape by one voxel (seen on the shipped CT: 180 vs 179), hence the whole padded cube.
    """
    import nibabel as nib
    from nibabel import orientations as nio

    src = str(volume.meta.get("source_orientation") or "")
    try:
        src_ornt = nio.axcodes2ornt(tuple(src)) if len(src) == 3 else None
    except ValueError:
        src_ornt = None
    canon = nio.axcodes2ornt(nib.aff2axcodes(volume.affine))
    if src_ornt is None or np.isnan(src_ornt).any():
        src_ornt = canon
    shape_xyz = volume.array.shape[::-1]
    to_src = nio.ornt_transform(canon, src_ornt)
    shape_src = [0, 0, 0]
    for i, (ax, _) in enumerate(to_src):
        shape_src[int(ax)] = shape_xyz[i]
    a_src = volume.affine @ nio.inv_ornt_aff(to_src, shape_xyz)
    hdr = nib.Nifti1Header()
    hdr.set_sform(a_src, code="scanner")
    return hdr.get_sform() @ nio.inv_ornt_aff(nio.ornt_transform(src_ornt, canon), shape_src)


def preprocess(volume: Volume, preset: Preset2p5D) -> torch.Tensor:
    """The script's MONAI transforms applied to ``volume``: float32 torch tensor (x, y, z) RAS, HU clipped
    to [-1000, 1000] (``preset.target_shape`` when padding and cropping are on)."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import CenterSpatialCrop, Orientation, ScaleIntensityRange, Spacing, SpatialPad

    # what LoadImaged + EnsureChannelFirstd give for a NIfTI of this volume: (1, x, y, z), RAS affine
    x = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume.array.T))[None],
                   affine=torch.as_tensor(nifti_affine(volume), dtype=torch.float64))
    x = Orientation(axcodes="RAS", labels=RAS_LABELS)(x)
    if preset.spacing is not None:
        x = Spacing(pixdim=preset.spacing, mode="bilinear")(x)
    if preset.pad:
        x = SpatialPad(spatial_size=preset.target_shape, mode="constant", value=PAD_VALUE)(x)
    if preset.crop:
        x = CenterSpatialCrop(roi_size=preset.target_shape)(x)
    lo, hi = HU_RANGE
    x = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True)(x)
    return x.as_tensor()[0]


def central_range(n: int, ratio: float | None) -> tuple[int, int]:
    """Slice indices [start, end) the script keeps of an axis of ``n`` (``get_features_2p5d``:
    ``int((1.0 - r) / 2.0 * n)``, ``int((1.0 + r) / 2.0 * n)``); all of them without a ratio."""
    if ratio is None:
        return 0, n
    return int((1.0 - ratio) / 2.0 * n), int((1.0 + ratio) / 2.0 * n)


def plane_slices(cube: torch.Tensor, plane: str, ratio: float | None) -> torch.Tensor:
    """(N, H, W) slices of the (x, y, z) cube for ``plane``: ``xy`` -> (z, x, y), ``yz`` -> (x, y, z),
    ``zx`` -> (y, x, z) (slice index first, then the script's image rows and columns)."""
    nx, ny, nz = cube.shape
    if plane == "xy":
        s, e = central_range(nz, ratio)
        return cube[:, :, s:e].permute(2, 0, 1)
    if plane == "yz":
        s, e = central_range(nx, ratio)
        return cube[s:e]
    if plane == "zx":
        s, e = central_range(ny, ratio)
        return cube[:, s:e].permute(1, 0, 2)
    raise ValueError(f"Expected a plane in {PLANES}, got {plane!r}")


# ============================================================================= features and distances
def volume_plane_features(extractor: Any, volume: Volume, preset: Preset2p5D,
                          cube: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """``{plane: float32 (n, 2048)}`` of one volume (``cube``: its :func:`preprocess` output, if at hand)."""
    c = preprocess(volume, preset) if cube is None else cube
    return {p: extractor.plane_features(plane_slices(c, p, preset.center_ratio)) for p in PLANES}


def preset_fid(generated: dict[str, Any], reference: dict[str, Any], preset: Preset2p5D) -> dict[str, float]:
    """Functional twin: the preset's columns from per-plane features (``{plane: (n, 2048)}`` or states)."""
    res: dict[str, float] = {}
    for p in PLANES:
        g, r = generated[p], reference[p]
        gs = frechet.features_state(g) if isinstance(g, np.ndarray) else g
        rs = frechet.features_state(r) if isinstance(r, np.ndarray) else r
        res[preset.columns[p]] = frechet.frechet_distance_from_states(gs, rs, ddof=1)
    res[preset.mean_column] = (res[preset.columns["xy"]] + res[preset.columns["yz"]] + res[preset.columns["zx"]]) / 3.0
    return res


class PresetFID2p5D(Metric):
    """A 2.5D FID preset as a distribution metric; subclasses set ``preset``, ``name``, ``outputs``."""

    kind = "distribution"
    table = "table2"
    weights = (WEIGHTS_NAME,)
    #: hundreds of 512 x 512 ResNet-50 passes per volume: named explicitly (or ``all``), never in ``available``
    in_default_set = False
    preset: ClassVar[Preset2p5D]
    options = (Option("batch_size", 32, "slices per forward pass of the network (cannot change a value beyond "
                      "float32 round-off)", type=int, minimum=1, maximum=4096, in_protocol_id=False),
               cache_option("RadImageNet slice"))

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.net = Backbone("radimagenet")

    def setup(self, ctx: RunContext) -> None:
        self.net.get(self.weights[0], ctx)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        from ..networks.radimagenet import EXTRACTOR_ID

        p = self.preset
        return [(p.id, f"{p.name}'s 2.5D FID protocol, version 1 ({p.source})"),
                *p.preprocess_parts(),
                (f"slices:{p.slicing_id}", p.slicing_meaning),
                (EXTRACTOR_ID, f"RadImageNet ResNet-50 (weights {WEIGHTS_NAME}, Warvito's port of the Keras model): each "
                               "plane's slices min-max scaled together to [0, 1], grey to 3 channels minus 0.406 / "
                               "0.456 / 0.485, layer4 map averaged over (H, W): 2048-d per slice; the frame protocol "
                               "is not used"),
                ("planes:xy,yz,zx:mean", "one FID per plane (XY, YZ, ZX), the reported value their mean"),
                ("frechet:ddof=1", "Frechet distance between Gaussians fitted to the generated and the reference "
                                   "slices of a plane, covariance with n - 1 (MONAI's FIDMetric)")]

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        ext = self.net.get(self.weights[0], ctx)
        ext.batch_size = int(self.opts["batch_size"])
        p = self.preset
        cube_key = ("fid-presets:cube", p.preprocess_id)  # shared by both presets within a case

        def cube() -> torch.Tensor:
            if cube_key not in data.shared:
                data.shared[cube_key] = preprocess(data.volume, p)
            return data.shared[cube_key]

        out: State = {}
        for plane in PLANES:
            f = shared_cached_features(
                self.net, data, ctx, (ext.id, ext.weights_sha256, f"{p.id}:{p.preprocess_id}:{p.slicing_id}:{plane}"),
                lambda pl=plane: ext.plane_features(plane_slices(cube(), pl, p.center_ratio)).astype(np.float32),
                self.opts["feature_cache"])
            out[f"{plane}:features"] = np.asarray(f, dtype=np.float32)
            if not np.isfinite(out[f"{plane}:features"]).all():
                raise ValueError(f"case {data.case_id!r}: {plane} features contain NaN or inf")
        return out

    def merge(self, states: Iterable[State]) -> State:
        return merge_planes(states, PLANES)

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return preset_fid({p: plane_state(generated, p) for p in PLANES},
                          {p: plane_state(reference, p) for p in PLANES}, self.preset)

    def sample_info(self, state: State) -> dict[str, int]:
        """Slices per plane (the smallest plane's count) and the feature dimension."""
        infos = [frechet.sample_info(plane_state(state, p)) for p in PLANES]
        infos = [i for i in infos if i]
        return min(infos, key=lambda i: i["samples"]) if infos else {}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for plane in PLANES:
            st = frechet.export_stats(plane_state(state, plane), ddof=1)
            out.update({f"{plane}_{k}": v for k, v in st.items()})
        return out


def _outputs(preset: Preset2p5D, label: str, rank: float) -> dict[str, Output]:
    out = {preset.mean_column: Output(False, label, digits=3, rank=rank, tolerance=FID_TOL, value_range=NONNEGATIVE)}
    for i, p in enumerate(PLANES, start=1):
        col = preset.columns[p]
        out[col] = Output(False, f"{label} {col.rsplit('_', 1)[1].upper()}", digits=3, rank=rank + 0.01 * i,
                          tolerance=FID_TOL, value_range=NONNEGATIVE)
    return out


@register_metric
class FIDMaisi(PresetFID2p5D):
    name = "fid_maisi"
    preset = MAISI
    outputs = _outputs(MAISI, "FID MAISI 2.5D", 1.5)
    description = ("MAISI's 2.5D FID (maisi-2.5d-v1): RAS, 1 mm, pad/crop 512^3, central 40% of XY/YZ/ZX slices, "
                   "RadImageNet ResNet-50, FID per plane and mean")


@register_metric
class FIDVlm3d(PresetFID2p5D):
    name = "fid_vlm3d_2507"
    preset = VLM3D
    outputs = _outputs(VLM3D, "FID VLM3D 2.5D (Jul 2025)", 1.6)
    description = ("VLM3D challenge FID_2p5D, July 2025 revision (vlm3d-2.5d-v1): MAISI's script with every slice of "
                   "XY/YZ/XZ (no centre "
                   "ratio), RadImageNet ResNet-50, FID per plane and mean")


# ============================================================================= VLM3D, current revision (SqueezeNet)
#: the current VLM3D evaluator (forithmus/VLM3D-Dockers ct_challenges/ctgen_evaluation/evaluation.py, revision
#: a945900): the July 2025 arguments plus ``--model_name squeezenet1_1``
VLM3D_SQUEEZENET = Preset2p5D(
    "vlm3d", "vlm3d-2.5d-v2", (1.0, 1.0, 1.0), (512, 512, 512), True, True, None,
    {"xy": "fid_vlm3d_xy", "yz": "fid_vlm3d_yz", "zx": "fid_vlm3d_xz"}, "fid_vlm3d",
    "forithmus/VLM3D-Dockers ct_challenges/ctgen_evaluation/evaluation.py at a945900 (FID 2.5D step): --target_shape "
    "512x512x512 --enable_padding True --enable_center_cropping True --enable_resampling_spacing 1.0x1.0x1.0 "
    "--num_images 100 --model_name squeezenet1_1, no --enable_center_slices_ratio; .mha / .nii.gz rewritten to "
    ".nii.gz by SimpleITK")


@register_metric
class FIDVlm3dSqueezeNet(PresetFID2p5D):
    """``fid_vlm3d``: the VLM3D challenge's current 2.5D FID (``vlm3d-2.5d-v2``). The July 2025 revision's steps
    (the same preprocessing cube, slices and per-plane normalisation) with torchvision's ImageNet SqueezeNet 1.1 in
    place of RadImageNet ResNet-50: the 1000-d output of ``forward`` per slice, in chunks of 32 slices
    (:mod:`trace_bench.networks.squeezenet`). ``fid_vlm3d_2507`` keeps the July 2025 revision."""

    name = "fid_vlm3d"
    preset = VLM3D_SQUEEZENET
    weights = ("squeezenet1_1-imagenet",)
    options = tuple(o for o in PresetFID2p5D.options if o.name != "feature_cache") + (cache_option("SqueezeNet slice"),)
    outputs = _outputs(VLM3D_SQUEEZENET, "FID VLM3D 2.5D", 1.6)
    description = ("VLM3D challenge FID_2p5D, current revision (vlm3d-2.5d-v2): MAISI's script with every slice of "
                   "XY/YZ/XZ (no centre ratio), torchvision SqueezeNet 1.1 (ImageNet) class scores, FID per plane and "
                   "mean; fid_vlm3d_2507 is the July 2025 RadImageNet revision. ~275 CPU-seconds per volume (1536 "
                   "slices of 512 x 512): a GPU metric")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.net = Backbone("squeezenet")

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        from ..networks.squeezenet import CHUNK, EXTRACTOR_ID

        p = self.preset
        return [(p.id, f"the VLM3D text-to-CT challenge's 2.5D FID, revision 2 ({p.source})"),
                *p.preprocess_parts(),
                (f"slices:{p.slicing_id}", p.slicing_meaning),
                (EXTRACTOR_ID, f"torchvision SqueezeNet 1.1 with ImageNet weights (weights {self.weights[0]}, "
                               "squeezenet1_1-b8a52dc0.pth): each plane's slices min-max scaled together to [0, 1], "
                               "grey to 3 channels minus 0.406 / 0.456 / 0.485, the 1000-d output of forward() "
                               f"(classifier scores after ReLU and global pooling) per slice, {CHUNK} slices per "
                               "forward pass as the script; the frame protocol is not used"),
                ("planes:xy,yz,zx:mean", "one FID per plane (XY, YZ, ZX), the reported value their mean"),
                ("frechet:ddof=1", "Frechet distance between Gaussians fitted to the generated and the reference "
                                   "slices of a plane, covariance with n - 1 (MONAI's FIDMetric)")]


__all__ = ["MAISI", "PLANES", "VLM3D", "VLM3D_SQUEEZENET", "FIDMaisi", "FIDVlm3d", "FIDVlm3dSqueezeNet", "Preset2p5D",
           "PresetFID2p5D",
           "central_range", "nifti_affine", "plane_slices", "preprocess", "preset_fid",
           "volume_plane_features"]
