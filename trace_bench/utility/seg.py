"""seg-tstr: train the protocol's segmentation network on one arm's pairs, score it on the real test set.

Training (:func:`train_job`), for a job (arm, method, seed) on prepared pairs (:mod:`.arrays`):

* the network: MONAI ``UNet`` (:func:`build_network`), weights initialised under ``torch.manual_seed(seed)``
  on the CPU (the same on every device and rank), AdamW, lr at step i ``lr (1 - i / iterations) ** p``;
* step i draws its global batch of ``batch`` patches; sample b of step i takes every random number
  from ``numpy.random.default_rng([seed, i, b])`` (:func:`draw_sample`: the case, foreground or not,
  the centre, the intensity augmentation and its noise field), so a sample does not depend on how the
  batch is split over torchrun ranks, nor on where a resumed run started;
* under torchrun each rank computes the samples ``rank, rank + W, ...`` of the batch
  (:func:`trace_model.distributed.rank_positions`) and DDP averages the gradients: with Dice + CE
  averaged over samples, W ranks compute the single-process step up to floating-point summation order;
* checkpoint every ``checkpoint_every`` steps and at the end (:class:`.resume.JobStore`); a killed job
  continues from its last checkpoint and ends with the same weights as an uninterrupted one (bit for
  bit on the CPU; tested).

Scoring (:func:`score_test_set`): each real test image on the protocol grid through MONAI's
``sliding_window_inference`` (Gaussian weights, padding with -1 = the window's lower end), argmax, the
class mapped back to its label value, the label map mapped onto the test mask's own grid (the
``extent`` rule), then per label :func:`trace_bench.metrics.overlap.dice` and
:func:`trace_bench.metrics.hausdorff.hd95` (mm, the mask's spacing) with the project's empty-structure
policy (a label missing from one map is a miss: Dice 0, HD95 = the image diagonal; missing from both:
NaN, not counted). Under torchrun every rank scores every W-th test case and rank 0 gathers them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from .arrays import Prepared
from .protocol import SegProtocol
from .resume import JobStore

if TYPE_CHECKING:
    from trace_model.distributed import DistContext

#: loss-log points per job (the loss of every k-th step, k = iterations // LOG_POINTS)
LOG_POINTS = 100


@dataclass(frozen=True)
class Job:
    """One training run: arm ("real", "method", "real+method"), method (None for real), seed."""

    arm: str
    method: str | None
    seed: int

    @property
    def name(self) -> str:
        return "real" if self.arm == "real" else (self.method if self.arm == "method" else f"real+{self.method}")


def job_key(proto: SegProtocol, job: Job, classes: Sequence[int], train: Sequence[tuple[str, ...]],
            test: Sequence[tuple[str, ...]]) -> str:
    """sha256 of what a job's result depends on: protocol declaration, arm, method, seed, classes, the
    training and test pairs' identities (case id, input sha256s, reading options, grid)."""
    rec = {"protocol": proto.sha256, "arm": job.arm, "method": job.method, "seed": job.seed,
           "classes": [int(c) for c in classes], "train": [list(t) for t in train], "test": [list(t) for t in test]}
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode("utf-8")).hexdigest()


def build_network(proto: SegProtocol, n_out: int) -> torch.nn.Module:
    """The protocol's MONAI UNet (1 input channel, ``n_out`` = labels + background)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=n_out, channels=proto.channels, strides=proto.strides,
                num_res_units=proto.res_units)


def lr_at(proto: SegProtocol, step: int) -> float:
    """Poly decay: ``lr (1 - step / iterations) ** lr_power``."""
    return proto.lr * (1.0 - step / proto.iterations) ** proto.lr_power


def class_table(classes: Sequence[int]) -> np.ndarray:
    """Label value -> class index (0 = background, k for ``classes[k - 1]``; other values -> 0)."""
    lut = np.zeros(65536, dtype=np.int64)
    for k, v in enumerate(classes, start=1):
        lut[int(v)] = k
    return lut


def crop(a: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """``a[start : start + size]`` per axis, padded with ``fill`` where the box leaves the array."""
    src, pad = [], []
    for s, p, n in zip(start, size, a.shape):
        lo, hi = max(0, s), min(n, s + p)
        src.append(slice(lo, hi))
        pad.append((lo - s, s + p - hi))
    out = np.asarray(a[tuple(src)])
    if any(b or e for b, e in pad):
        out = np.pad(out, pad, constant_values=fill)
    return out


def patch_start(centre: Sequence[int], shape: Sequence[int], patch: Sequence[int]) -> list[int]:
    """Box of ``patch`` around ``centre``, moved inside the volume where it fits (centred when the
    volume is smaller than the patch along an axis)."""
    out = []
    for c, n, p in zip(centre, shape, patch):
        out.append(int(min(max(c - p // 2, 0), n - p)) if n >= p else -((p - n) // 2))
    return out


def draw_sample(sets: Sequence[Prepared], lut: np.ndarray, proto: SegProtocol, seed: int, step: int,
                b: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``b`` of step ``step``: (image patch float32, class patch int64), every number from
    ``default_rng([seed, step, b])`` in one fixed order."""
    g = np.random.default_rng([seed, step, b])
    s = sets[int(g.integers(len(sets)))]
    fg = g.random() < proto.pos_fraction
    trained = [int(v) for v in s.present if lut[int(v)] > 0]
    pick_label, pick_voxel = g.random(), g.random()
    uniform = [int(g.integers(n)) for n in s.shape]
    if fg and trained:
        v = trained[min(int(pick_label * len(trained)), len(trained) - 1)]
        idx = s.centres[v]
        centre = [int(i) for i in np.unravel_index(int(idx[min(int(pick_voxel * idx.size), idx.size - 1)]), s.shape)]
    else:
        centre = uniform
    scale = g.uniform(1.0 - proto.aug_scale, 1.0 + proto.aug_scale)
    shift = g.uniform(-proto.aug_shift, proto.aug_shift)
    sigma = g.uniform(0.0, proto.aug_noise)
    noise = g.standard_normal(proto.patch, dtype=np.float32)
    start = patch_start(centre, s.shape, proto.patch)
    x = crop(s.image, start, proto.patch, -1.0).astype(np.float32)
    y = lut[crop(s.labels, start, proto.patch, 0).astype(np.int64)]
    x = (x * np.float32(scale) + np.float32(shift) + noise * np.float32(sigma)).astype(np.float32)
    return x, y


def batch_tensors(sets: Sequence[Prepared], lut: np.ndarray, proto: SegProtocol, seed: int, step: int,
                  positions: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(draw_sample(sets, lut, proto, seed, step, b) for b in positions))
    x = torch.from_numpy(np.stack(xs)[:, None]).to(device)
    y = torch.from_numpy(np.stack(ys)[:, None]).to(device)
    return x, y


def train_job(job: Job, sets: Sequence[Prepared], classes: Sequence[int], proto: SegProtocol, device: torch.device,
              store: JobStore, *, dist: DistContext | None = None, checkpoint_every: int = 0,
              on_step: Callable[[int], None] | None = None) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train (or continue) one job; returns the network (unwrapped, eval mode) and its loss log."""
    from monai.losses import DiceCELoss

    from trace_model.distributed import all_reduce_sum, barrier, rank_positions

    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if proto.batch % world:
        from ..errors import ConfigError

        raise ConfigError(f"{proto.id}: batch {proto.batch} is not divisible by {world} torchrun process(es); "
                          f"run with a world size dividing {proto.batch}")
    lut = class_table(classes)
    torch.manual_seed(job.seed)
    model = build_network(proto, len(classes) + 1).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=proto.lr, weight_decay=proto.weight_decay)
    state = store.load_checkpoint(model, opt)
    start = int(state["step"]) if state else 0
    log: list[dict[str, float]] = list(state.get("log", [])) if state else []
    net: torch.nn.Module = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    positions = rank_positions(proto.batch, world, rank)
    every = checkpoint_every or proto.iterations
    log_every = max(1, proto.iterations // LOG_POINTS)
    model.train()
    for step in range(start, proto.iterations):
        for group in opt.param_groups:
            group["lr"] = lr_at(proto, step)
        x, y = batch_tensors(sets, lut, proto, job.seed, step, positions, device)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if done % log_every == 0 or done == proto.iterations:
            total = all_reduce_sum(loss.detach().double().cpu() * len(positions), dist)
            log.append({"step": done, "loss": float(total) / proto.batch})
        if done % every == 0 or done == proto.iterations:
            if rank == 0:
                store.save_checkpoint(model, opt, {"step": done, "log": log})
            barrier(dist)
        if on_step is not None:
            on_step(done)
    model.eval()
    return model, log


def predict(model: torch.nn.Module, image: np.ndarray, proto: SegProtocol, device: torch.device) -> np.ndarray:
    """Class index per voxel of a prepared image (sliding windows, Gaussian blending, argmax)."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None].to(device)
    with torch.no_grad():
        logits = sliding_window_inference(x, proto.patch, proto.batch, model, overlap=proto.overlap, mode="gaussian",
                                          padding_mode="constant", cval=-1.0)
    return logits.argmax(1)[0].cpu().numpy()


def score_case(pred_classes: np.ndarray, classes: Sequence[int], native: np.ndarray,
               spacing: tuple[float, float, float], hd_device: str | None = None) -> dict[int, dict[str, float]]:
    """Per label ``{"dice", "hd95"}`` of a predicted class map against the test mask on its own grid."""
    from ..metrics.hausdorff import hd95
    from ..metrics.overlap import dice
    from ..metrics.segmentation import resample_labels

    values = np.concatenate([[0], np.asarray(classes, dtype=np.int64)])[pred_classes]
    pred = resample_labels(values, tuple(native.shape))
    ref = np.asarray(native, dtype=np.int64)
    d = dice(pred, ref, list(classes))
    h = hd95(pred, ref, spacing, list(classes), device=hd_device)
    return {int(c): {"dice": float(d[int(c)]), "hd95": float(h[int(c)])} for c in classes}


def score_test_set(model: torch.nn.Module, test: Sequence[tuple[str, np.ndarray, Callable[[], tuple[np.ndarray, Any]]]],
                   classes: Sequence[int], proto: SegProtocol, device: torch.device,
                   on_case: Callable[[int], None] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """``{case_id: {label: {"dice", "hd95"}}}`` over the test set; ``test`` items are (case id, prepared
    image, a function giving the native label map and its spacing)."""
    hd_device = str(device) if device.type == "cuda" else None
    out = {}
    for i, (cid, image, native_fn) in enumerate(test):
        native, spacing = native_fn()
        out[cid] = score_case(predict(model, image, proto, device), classes, np.asarray(native), spacing, hd_device)
        if on_case is not None:
            on_case(i + 1)
    return out


def run_job(job: Job, key: str, sets: Sequence[Prepared], test, classes: Sequence[int], proto: SegProtocol,
            device: torch.device, store: JobStore, *, dist: DistContext | None = None, checkpoint_every: int = 0,
            on_step: Callable[[int], None] | None = None) -> dict[str, Any] | None:
    """Train and score one job (skipped when its result exists); the result record on rank 0, else None.
    Under torchrun every rank scores the test cases ``rank, rank + W, ...`` and rank 0 gathers them."""
    from trace_model.distributed import barrier

    done = store.result()
    if done is not None:
        return done
    t0 = time.perf_counter()
    model, log = train_job(job, sets, classes, proto, device, store, dist=dist, checkpoint_every=checkpoint_every,
                           on_step=on_step)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    scores = score_test_set(model, list(test)[rank::world], classes, proto, device)
    if dist is not None:
        import torch.distributed as tdist

        parts: list[Any] = [None] * world
        tdist.all_gather_object(parts, scores)
        scores = {cid: sc for part in parts for cid, sc in part.items()}
    rec = None
    if rank == 0:
        scores = {t[0]: scores[t[0]] for t in test}  # the test set's order
        rec = {"arm": job.arm, "method": job.method, "seed": job.seed, "protocol": proto.id,
               "protocol_sha256": proto.sha256, "classes": [int(c) for c in classes],
               "train_cases": [s.case_id for s in sets], "loss_log": log, "device": str(device),
               "world_size": 1 if dist is None else dist.world, "train_seconds": round(train_s, 3),
               "test_seconds": round(time.perf_counter() - t1, 3),
               "per_case": {cid: {str(k): v for k, v in sc.items()} for cid, sc in scores.items()}}
        store.save_result(rec)
    barrier(dist)
    return rec
