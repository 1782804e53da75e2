"""TRACE (frame-pair 2-D diffusion for 3-D CT, paper sections 3.2-3.3): network, conditioning, DDIM +
overlapping-frame-guidance sampler, trainer, generation and profiling.

Modules: ``config`` (frozen TraceConfig, TOML/JSON), ``network`` (TraceUNet on MONAI's DiffusionModelUNet),
``conditioning`` (masks, eq. 7 positions, flow/text adapters, guidance map), ``flow`` (RAFT / Farneback / none),
``data`` (frame pairs of eq. 3), ``train``, ``sampler`` (Algorithm 1), ``generate``, ``profile``, ``checkpoint``
(safetensors + config.json, no pickles), ``demo`` (the committed demo checkpoint).
"""
