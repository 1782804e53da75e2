"""The one place trace-bench reads a checkpoint file: tensors only, never pickled code.

A ``.pth`` / ``.pt`` file is a Python pickle; ``torch.load(weights_only=False)`` runs whatever the
file asks for (``__reduce__``), so a file passed by ``--weights``, an environment variable or
``trace-bench weights import`` could execute code on the next run. :func:`load_state_dict` reads
``.safetensors`` files with ``safetensors.torch.load_file`` and every other file with
``torch.load(weights_only=True)`` (tensors, primitive types and plain containers only), with no
fallback. A checkpoint that needs full unpickling is refused with a
:class:`~trace_bench.errors.WeightsError` naming the file and the one-line conversion to run on a
trusted machine. (An explicit ``weights_only=True`` cannot be overridden by
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; torch only honours that variable when the argument is absent.)
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
    """``model.load_state_dict(sd, strict=True)``, a mismatch (missing / unexpected keys, shapes) as one
    :class:`WeightsError` line naming the file and ``what`` the network is; returns ``model``."""
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
