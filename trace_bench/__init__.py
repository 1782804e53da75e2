"""trace-bench: reproducible comparison of 3D CT generators."""

__version__ = "0.1.0"

from .errors import TraceBenchError, VolumeError  # noqa: E402
from .io import read_volume, write_nifti  # noqa: E402
from .volume import Volume  # noqa: E402

__all__ = ["__version__", "TraceBenchError", "VolumeError", "Volume", "read_volume", "write_nifti"]
