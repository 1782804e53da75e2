"""Every network trace-bench runs, each with its preprocessing and its loader (one module per network).

============== ======================================================= ==========================
module         network                                                 weights entries
============== ======================================================= ==========================
inception      Inception-v3 FID pool features (2048-d per slice)       inception-fid (TorchScript),
                                                                       inception-fid-pth
i3d            I3D Kinetics-400 (400-d per 16-slice clip)              i3d-torchscript, i3d-tats
clip           CLIP ViT-B/32 image / text towers                       clip-vit-b32
dino           DINO ViT-B/16 CLS token (VBench subject consistency)    dino-vitb16
musiq          MUSIQ image quality (VBench imaging quality)            musiq-spaq
amt            AMT-S frame interpolation (VBench motion smoothness)    amt-s
viclip         ViCLIP ViT-L/14 video-text (VBench overall consistency) viclip-l14
astra          Astra / Merlin I3ResNet-152 CT volume encoder           astra-i3resnet152
medicalnet     MedicalNet (Med3D) 3D ResNet-50 (HA-GAN's 3D FID)        medicalnet-resnet50[-3dseg8]
ctnet          CT-Net (VLM3D's FVD_CTNet), 96-d per volume             vlm3d-ctnet
radimagenet    RadImageNet ResNet-50 (MAISI / VLM3D Jul 2025 2.5D FID) radimagenet-resnet50
squeezenet     torchvision SqueezeNet 1.1 (VLM3D current 2.5D FID)     squeezenet1_1-imagenet
radiomics      pyradiomics with FRD v1 settings (1014 numbers/volume)  - (extra ``radiomics``)
resnet3d       the 3-D bottleneck shared by astra and medicalnet       -
============== ======================================================= ==========================

Layering: this floor imports ``trace_bench.weights`` / ``weights_load``, ``errors``, ``volume`` and
``protocol``; never ``metrics``, ``run`` or ``cli`` (``tests/project/test_architecture.py``). Every file is read
through :func:`trace_bench.weights_load.load_state_dict` (tensors only) or
:func:`trace_bench.weights_load.load_torchscript` (only the pinned published file). Each module's
``load_backbone(path, device, name, ctx)`` is what a metric's :class:`~trace_bench.metrics.backbone.Backbone`
calls (``ctx``: the run's context, read for plain settings such as the batch size). There is no network
registry: a feature space (:mod:`trace_bench.metrics.spaces`) names its network module.

Nothing is imported here, so that importing one network does not import torch for the others.
"""
