"""Black-box profiling of any generator (``trace-bench profile-command``): a process-tree RSS sampler
(:mod:`.process`), an NVML GPU-memory sampler (:mod:`.gpu`), an output-folder watcher that counts
slices with the adapters (:mod:`.watcher`), the FPS / warm-up rule (:mod:`.fps`) and the runner
(:mod:`.runner`)."""

from .fps import WARMUP_HELP, FpsResult, WarmupRule, fps_from_outputs, parse_warmup
from .gpu import GpuSample, NvmlSampler, NvmlUnavailable
from .process import ProcessTree, TreeSample
from .runner import Measurement, ProfileError, open_gpu, profile_command, run_measured, split_command
from .watcher import OutputFile, OutputWatcher

__all__ = ["WARMUP_HELP", "FpsResult", "WarmupRule", "fps_from_outputs", "parse_warmup", "GpuSample", "NvmlSampler",
           "NvmlUnavailable", "ProcessTree", "TreeSample", "Measurement", "ProfileError", "open_gpu",
           "profile_command", "run_measured", "split_command", "OutputFile", "OutputWatcher"]
