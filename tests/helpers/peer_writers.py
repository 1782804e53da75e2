"""The peers' ways of writing volumes, re-implemented from their saving code (facts in PEERS.md and the peers'
sources, cited per writer): shapes, axis swaps, flips, scaling, casts, quirky names, identity affines. Used by
tests/adapters/test_adapters_peers.py (which round-trips each through its adapter), test_adapters_auto_cli.py,
tests/adapters/test_geometry.py and tests/io/test_io_generator_formats.py (no tests here).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from trace_bench.volume import Volume


# ----------------------------------------------------------------------------------------------
# GenerateCT (ibrahimethemhamamci/GenerateCT)
# Network tensor (C=1, D, H, W). Orientation as the authors' challenge container writes it
# (forithmus/VLM3D-Dockers ct_challenges/ctgen_example_docker/process.py): SimpleITK array
# (z, y, x) = (D, W, H), identity direction (LPS). So from a canonical (z, y, x) volume: (D, H, W) = (z, x, y).


def generatect_tensor(ref_zyx: np.ndarray, overshoot: bool = True) -> np.ndarray:
    """(1, D, H, W) decoder output: HU clipped to [-1000, 1000] / 1000 (training), plus unclamped overshoot."""
    t = (np.clip(ref_zyx, -1000, 1000) / 1000.0).transpose(0, 2, 1)[None].astype(np.float32)
    if overshoot:  # the decoder is not clamped: values beyond [-1, 1] must survive the adapter
        t[0, 0, 0, 0] = 1.25
        t[0, 1, 2, 3] = -1.1
    return t


def write_generatect_lowres(root: Path, name: str, i: int, tensor: np.ndarray, prompt: str) -> Path:
    """inference_transformer.py + transformer_maskgit/data.py: tensor_to_nifti (squeeze(0), swapaxes(0, 2), eye(4))."""
    folder = root / "transformer_inference" / f"samples.{name}_{i}"
    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    data = np.swapaxes(tensor[0], 0, 2).astype(np.float32)  # (W, H, D)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(folder / f"{name}_{k}.nii.gz"))
    (folder / f"{name}_{k}.txt").write_text(prompt, encoding="utf-8")
    return folder / f"{name}_{k}.nii.gz"


def read_lowres_for_superres(path: Path) -> np.ndarray:
    """videotextdatasettransformersuperres.py: get_lowres_image -> (x + 1) / 2, permute(2, 1, 0), unsqueeze(0)."""
    img = nib.load(str(path)).get_fdata()
    return ((img + 1) / 2).transpose(2, 1, 0)[None].astype(np.float32)  # (1, D, H, W)


def write_generatect_sr(root: Path, text_name: str, slices_dchw: np.ndarray) -> Path:
    """inference_superres.py: stack (D, C, H, W) -> permute(2, 3, 0, 1) -> (H, W, D, C), eye(4),
    file ``sample-{path_name}`` where path_name = text file name cut at the first '_' and collated into a list."""
    path_name = text_name.split("/")[-1].split(".")[0].split("_")[0]
    collated = [path_name]  # DataLoader collate of a str batch -> list
    out = root / "images" / f"sample-{collated}.nii.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(slices_dchw.transpose(2, 3, 0, 1).astype(np.float32), np.eye(4)), str(out))
    return out


# ----------------------------------------------------------------------------------------------
# MedSyn (batmanlab/MedSyn). Network (F, H, W) = atlas SimpleITK array (z, y, x) whose y runs
# anterior (atlas direction diag(1, -1, 1)), so from a canonical LPS volume: (F, H, W) = ref[:, ::-1, :].

HU_LO, HU_HI = -1024.0, 600.0


def medsyn_unit(ref_zyx: np.ndarray) -> np.ndarray:
    """Network output in [0, 1] (unnormalize_img of data scaled from HU [-1024, 600])."""
    return ((np.clip(ref_zyx, HU_LO, HU_HI) - HU_LO) / (HU_HI - HU_LO))[:, ::-1, :].astype(np.float32)


def demo_masks(ref_zyx: np.ndarray) -> dict[str, np.ndarray]:
    """Binary canonical structures standing in for lobe / airway / vessel."""
    return {"lobe": ref_zyx < -400, "airway": ref_zyx < -950, "vessel": ref_zyx > 40}


def soft(mask_canon: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft network mask in model space (values in [0, 1], far from 0.5)."""
    m = mask_canon[:, ::-1, :].astype(np.float32)
    return np.clip(m * 0.8 + 0.1 + rng.uniform(-0.09, 0.09, m.shape), 0, 1).astype(np.float32)


def medsyn_save_nii(img: np.ndarray, path: Path) -> None:
    """src/eval_super_res.py: save_nii (clip [-1, 1], np.flip(img, 1), HU = x*1624 - 1024, astype(int16), SimpleITK)."""
    import SimpleITK as sitk

    img = img.copy()
    img[img > 1] = 1
    img[img < -1] = -1
    img = np.flip(img, 1)
    img = img * (HU_HI - HU_LO) + HU_LO
    sitk.WriteImage(sitk.GetImageFromArray(img.astype(np.int16)), str(path))


def medsyn_save_mask_nii(img: np.ndarray, path: Path) -> None:
    """src/eval_super_res.py: save_mask_nii (no flip, float, SimpleITK defaults)."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(img), str(path))


def write_medsyn_highres(folder: Path, stem: str, ref_zyx: np.ndarray, with_masks: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    medsyn_save_nii(medsyn_unit(ref_zyx), folder / f"{stem}.nii.gz")
    if with_masks:
        ms = demo_masks(ref_zyx)
        medsyn_save_mask_nii(soft(ms["lobe"], rng), folder / f"{stem}_lobe.nii.gz")
        medsyn_save_mask_nii(soft(ms["airway"], rng), folder / f"{stem}_airway.nii.gz")
        # the vessel frames keep a leading axis: .squeeze(dim=0) of (1, 1, F, H, W) -> (1, F, H, W)
        medsyn_save_mask_nii(soft(ms["vessel"], rng)[None], folder / f"{stem}_vessel.nii.gz")
    return folder / f"{stem}.nii.gz"


def write_medsyn_lowres(folder: Path, textstem: str, k: int, ref_zyx: np.ndarray) -> Path:
    """src/eval_low_res_given_prompt.py: np.save('{textstem}_sample_{k}.npy', (1, 4, F, H, W) in [0, 1])."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ms = demo_masks(ref_zyx)
    arr = np.stack([medsyn_unit(ref_zyx), soft(ms["lobe"], rng), soft(ms["airway"], rng), soft(ms["vessel"], rng)])[None]
    path = folder / f"{textstem}_sample_{k}.npy"
    np.save(str(path), arr.astype(np.float32))
    return path


# ----------------------------------------------------------------------------------------------
# MAISI (Project-MONAI/tutorials generation/maisi/scripts/sample.py): MONAI SaveImage of MetaTensors


def write_maisi(folder: Path, ref: Volume, label_zyx: np.ndarray, postfix: str = "20240101_120000_000001") -> Path:
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, SaveImage

    # MAISI works in MONAI's RAS space: a (C, X, Y, Z) MetaTensor with a RAS affine
    lab = MetaTensor(torch.from_numpy(np.ascontiguousarray(label_zyx.T[None]).astype(np.float32)),
                     affine=torch.as_tensor(ref.affine))
    lab = Orientation(axcodes="RAS")(lab)
    lab.meta["filename_or_obj"] = "sample.nii.gz"
    hu_xyz = np.clip(ref.array, -1000, 1000).T[None].astype(np.float32)
    img = Orientation(axcodes="RAS")(MetaTensor(torch.from_numpy(np.ascontiguousarray(hu_xyz)), affine=torch.as_tensor(ref.affine)))
    img = MetaTensor(img.as_tensor(), meta=lab.meta)
    SaveImage(output_dir=str(folder), output_postfix=postfix + "_image", output_ext=".nii.gz", separate_folder=False,
              print_log=False)(img)
    SaveImage(output_dir=str(folder), output_postfix=postfix + "_label", output_ext=".nii.gz", separate_folder=False,
              print_log=False)(lab)
    return folder / f"sample_{postfix}_image.nii.gz"
