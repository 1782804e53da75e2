"""The one place trace-bench reads a checkpoint file: tensors only, never pickled code; TorchScript only
when it is the pinned published file.

A ``.pth`` / ``.pt`` file is a Python pickle; ``torch.load(weights_only=False)`` runs whatever the
file asks for (``__reduce__``), so a file passed by ``--weights``, an environment variable or
``trace-bench weights import`` could execute code on the next run. :func:`load_state_dict` reads
``.safetensors`` files with ``safetensors.torch.load_file`` and every other file with
``torch.load(weights_only=True)`` (tensors, primitive types and plain containers only), with no
fallback. A checkpoint that needs full unpickling is refused with a
:class:`~trace_bench.errors.WeightsError` naming the file and the one-line conversion to run on a
trusted machine. (An explicit ``weights_only=True`` cannot be overridden by
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; torch only honours that variable when the argument is absent.)

A TorchScript archive is code (its ``__setstate__`` and methods run on load and on call; such a file can
read or write files through ``torch.from_file``), so :func:`load_torchscript` runs one only when the
bytes it loads have the sha256 the weights registry pins for the entry's published file; any other
TorchScript file, and every TorchScript file of an entry without a pinned sha256, is refused with one
line saying why and what to use instead. The bytes are hashed and loaded from one read, so the file
cannot change in between. :func:`load_state_dict` refuses TorchScript archives with the same reason.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .errors import WeightsError

#: shell one-liner that rewrites a checkpoint as nested dicts of tensors (run it on a trusted machine
#: only: it unpickles the file); IN and OUT are filled in by :func:`convert_command`
_CONVERT = ("python -c \"import sys, torch; f = lambda o: {k: f(v) for k, v in o.items() "
            "if isinstance(v, (dict, torch.Tensor))} if isinstance(o, dict) else o; "
            "torch.save(f(torch.load(sys.argv[1], map_location='cpu', weights_only=False)), sys.argv[2])\" "
            "{src} {dst}")


def convert_command(path: str | Path) -> str:
    """The command that turns ``path`` into a tensors-only file ``<stem>-tensors.pt`` beside it."""
    p = Path(path)
    return _CONVERT.replace("{src}", str(p)).replace("{dst}", str(converted_path(p)))


def converted_path(path: str | Path) -> Path:
    """Where :func:`convert_command` writes the tensors-only copy of ``path``."""
    p = Path(path)
    return p.with_name(p.stem + "-tensors.pt")


#: shell one-liner that saves a TorchScript archive's tensors as a plain state dict (it runs the file: on a
#: trusted machine only)
_TS_CONVERT = ("python -c \"import sys, torch; torch.save(torch.jit.load(sys.argv[1], map_location='cpu')"
               ".state_dict(), sys.argv[2])\" {src} {dst}")


def torchscript_convert_command(path: str | Path) -> str:
    """The command that saves the tensors of TorchScript file ``path`` as ``<stem>-tensors.pt`` beside it."""
    p = Path(path)
    return _TS_CONVERT.replace("{src}", str(p)).replace("{dst}", str(converted_path(p)))


def is_torchscript(path: str | Path) -> bool:
    """True when ``path`` is a TorchScript archive: a zip holding ``constants.pkl`` at its top level (the
    test ``torch.load`` itself uses to tell one from a ``torch.save`` file); read without running it."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1] == "constants.pkl" for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_torchscript(path: str | Path, name: str, instead: str = "") -> Any:
    """``torch.jit.load`` of ``path`` on CPU, only when its bytes are registry entry ``name``'s published file.

    The file is read once; the sha256 of those bytes must equal the entry's pinned ``sha256`` (a published
    file-name prefix is not enough to run code); then the same bytes are loaded. Otherwise raises
    :class:`WeightsError` (one line: the file, its hash, the reason, ``instead``: what to use), and nothing
    of the file has run.
    """
    import hashlib
    import io

    from .weights import WEIGHTS

    p = Path(path)
    label = _label(p, name)
    if not p.is_file():
        raise WeightsError(f"{label} is not a file")
    spec = WEIGHTS.get(name)
    alt = f"; {instead}" if instead else ""
    if spec.sha256 is None:
        raise WeightsError(f"{label}: refused, a TorchScript file is code and trace-bench runs one only when it is "
                           f"the published file, but the registry pins no sha256 for {name!r}{alt}")
    data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise WeightsError(f"{label}: refused, a TorchScript file is code and trace-bench runs one only when it is "
                           f"the published file (sha256 {spec.sha256[:16]}..., {spec.url}); this one has sha256 "
                           f"{digest[:16]}...{alt}")
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, ValueError) as e:
        raise WeightsError(f"{label}: not a readable TorchScript file ({_short(e)})") from None


def _label(path: Path, name: str | None) -> str:
    return f"weights {name!r}: {path}" if name else str(path)


def load_state_dict(path: str | Path, name: str | None = None) -> Any:
    """Read a checkpoint on CPU without running code from it.

    ``*.safetensors`` -> ``dict[str, Tensor]`` via ``safetensors.torch.load_file``; anything else ->
    ``torch.load(path, map_location="cpu", weights_only=True)`` (a state dict, or nested dicts /
    lists of tensors and primitives). ``name`` (the registry entry) only improves the messages.

    Raises :class:`WeightsError` (one line, naming the file) when the file is missing, is not a
    readable checkpoint, or needs full unpickling (custom classes, code): such a file is refused,
    never loaded, and the message gives the conversion command to run on a trusted machine.
    """
    p = Path(path)
    label = _label(p, name)
    if not p.is_file():
        raise WeightsError(f"{label} is not a file")
    if p.name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{label}: cannot load, not a readable safetensors file ({_short(e)})") from None
    if is_torchscript(p):
        raise WeightsError(f"{label}: refused, a TorchScript file is code, not a checkpoint of tensors; if you trust "
                           f"its source, save its tensors on a trusted machine: `{torchscript_convert_command(p)}`")
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch's note on unusual pickle protocols: the error below says enough
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        if "Unsupported global" not in detail:  # not a pickle asking for objects: a damaged / foreign file
            raise WeightsError(f"{label}: cannot load, not a readable PyTorch checkpoint ({detail})") from None
        use = ""
        if name:
            from .weights import WEIGHTS

            env = WEIGHTS.get(name).env_var if name in WEIGHTS else None
            out = converted_path(p)
            use = f"; then pass it with --weights {name}={out}" + (f" or {env}={out}" if env else "")
        raise WeightsError(
            f"{label}: refused, the checkpoint needs full unpickling, which can run code "
            f"({detail}); if you trust its source, convert it to plain tensors on a trusted machine: "
            f"`{convert_command(p)}`{use}") from None
    except Exception as e:  # noqa: BLE001 - any other decoding failure (truncated zip, not a torch file)
        raise WeightsError(f"{label}: cannot load, not a readable PyTorch checkpoint ({type(e).__name__}: {_short(e)})") from None


def float32_tensors(sd: dict[str, Any]) -> dict[str, Any]:
    """A state dict with its floating-point tensors as float32 (bfloat16 / float16 / float64 files);
    integer tensors (BatchNorm ``num_batches_tracked``) and other values as they are."""
    import torch

    return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in sd.items()}


def load_strict(model: Any, sd: dict[str, Any], path: str | Path, name: str | None, what: str) -> Any:
    """``model.load_state_dict(sd, strict=True)``; a mismatch is one :class:`WeightsError` line naming the
    file, ``what`` the network is, and the missing / unexpected keys and shape mismatches; returns ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise WeightsError(f"{_label(Path(path), name)} does not fit {what}: {len(missing)} missing keys "
                           f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
                           f"shape mismatches {bad[:5]}")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{_label(Path(path), name)} does not fit {what} ({_short(e)})") from None
    return model


def _unpickler_detail(e: BaseException) -> str:
    """The informative sentence of torch's weights-only failure ("WeightsUnpickler error: Unsupported
    global: GLOBAL argparse.Namespace was not an allowed global by default"), without the long preamble."""
    text = " ".join(str(e).split())
    i = text.find("WeightsUnpickler error:")
    if i < 0:
        return _short(e)
    text = text[i:]
    j = text.find(". ")
    return _short(text[: j] if j > 0 else text)


def _short(e: BaseException | str, n: int = 200) -> str:
    """An exception message on one line, clipped (torch's weights-only messages span many lines)."""
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[: n - 3] + "..."
