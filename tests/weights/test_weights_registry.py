"""Weights registry: table, resolution order, verification, atomic import / fetch, CLI."""

from __future__ import annotations

import hashlib
import os

import pytest
from typer.testing import CliRunner

from trace_bench import weights as W
from trace_bench.errors import WeightsError
from trace_bench.weights_import import import_weights

NAMES = ("inception-fid", "inception-fid-pth", "i3d-torchscript", "i3d-tats", "dino-vitb16", "clip-vit-b32",
         "amt-s", "musiq-spaq", "viclip-l14", "vista3d", "raft-small", "raft-large")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


@pytest.fixture()
def tiny_entry(tmp_path):
    """A temporary registry entry whose published file is a small blob (removed afterwards)."""
    blob = tmp_path / "published.bin"
    blob.write_bytes(os.urandom(4096))
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    spec = W.register_weights(W.WeightSpec(
        name="test-tiny", filename="tiny.bin", url=blob.resolve().as_uri(), sha256=digest, size=4096))
    yield spec, blob
    W.WEIGHTS._items.pop("test-tiny", None)


def test_table_names_and_facts():
    for n in NAMES:
        spec = W.WEIGHTS.get(n)
        assert spec.url and spec.filename and spec.licence
    clip = W.WEIGHTS.get("clip-vit-b32")
    assert clip.sha256 in clip.url  # OpenAI publishes the sha256 as the folder name
    assert W.WEIGHTS.get("raft-small").sha256_prefix in W.WEIGHTS.get("raft-small").filename
    assert W.WEIGHTS.get("vista3d").is_dir
    with pytest.raises(WeightsError):
        W.register_weights(W.WeightSpec(name="bad-hash", filename="x", url="u", sha256="xyz"))


def test_inception_resolves_offline_from_the_wheel(cache):
    r = W.resolve_weights("inception-fid")
    assert r.source.startswith("package") and r.verified and r.sha256.startswith("7ff4a85c")


def test_missing_message_names_file_url_and_fix(cache, monkeypatch):
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_AMT_S", raising=False)
    with pytest.raises(WeightsError) as e:
        W.resolve_weights("amt-s")
    msg = str(e.value)
    assert "amt-s.pth" in msg and "huggingface.co/lalala125/AMT" in msg
    assert "trace-bench weights fetch amt-s" in msg and "trace-bench weights import amt-s" in msg
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_weights("amt-s", "/nonexistent/amt-s.pth")


def test_import_verifies_then_copies_atomically(cache, tiny_entry, tmp_path):
    spec, blob = tiny_entry
    r = import_weights("test-tiny", blob)
    assert r.path == cache / "tiny.bin" and r.path.read_bytes() == blob.read_bytes()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]
    assert W.resolve_weights("test-tiny").source == "cache"
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match=r"sha256 mismatch .*wrong\.bin.*trace-bench weights fetch test-tiny"):
        import_weights("test-tiny", wrong)
    short = tmp_path / "short.bin"
    short.write_bytes(b"abc")
    with pytest.raises(WeightsError, match="3 bytes, expected 4096"):
        import_weights("test-tiny", short)
    assert r.path.read_bytes() == blob.read_bytes()  # a refused import leaves the cache untouched


def test_corrupted_cache_file_is_refused(cache, tiny_entry):
    spec, blob = tiny_entry
    import_weights("test-tiny", blob)
    data = bytearray((cache / "tiny.bin").read_bytes())
    data[10] ^= 0xFF
    (cache / "tiny.bin").write_bytes(bytes(data))
    with pytest.raises(WeightsError) as e:
        W.resolve_weights("test-tiny")
    msg = str(e.value)
    assert str(cache / "tiny.bin") in msg and spec.url in msg and "trace-bench weights import test-tiny" in msg


def test_explicit_alternative_file_is_flagged_not_refused(tiny_entry, tmp_path):
    other = tmp_path / "finetuned.bin"
    other.write_bytes(os.urandom(100))
    with pytest.warns(UserWarning, match="user-supplied"):
        r = W.resolve_weights("test-tiny", other)
    assert not r.verified and r.sha256 == hashlib.sha256(other.read_bytes()).hexdigest()
    same_size = tmp_path / "corrupt.bin"
    same_size.write_bytes(os.urandom(4096))  # the published size, another hash: a corrupt copy
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        W.resolve_weights("test-tiny", same_size)
    with pytest.raises(WeightsError):
        W.resolve_weights("test-tiny", other, require_published=True)


def test_fetch_downloads_verifies_and_is_atomic(cache, tiny_entry, tmp_path):
    spec, blob = tiny_entry
    r = W.fetch_weights("test-tiny")  # file:// URL stands in for the network
    assert r.source == "fetched" and r.path.read_bytes() == blob.read_bytes()
    assert W.fetch_weights("test-tiny").source == "cache"  # already there: no second download
    blob.write_bytes(os.urandom(4096))  # the "server" now serves a different file
    (cache / "tiny.bin").unlink()
    with pytest.raises(WeightsError, match="download failed.*sha256 mismatch"):
        W.fetch_weights("test-tiny")
    assert not (cache / "tiny.bin").exists() and not list(cache.glob("*.part"))


def test_fetch_offline_and_bundle_hint(cache):
    with pytest.raises(WeightsError, match="trace-bench weights import vista3d"):
        W.fetch_weights("vista3d")


def test_cli_list_import_verify(cache, tiny_entry, tmp_path):
    from trace_bench.cli import app

    spec, blob = tiny_entry
    runner = CliRunner()
    out = runner.invoke(app, ["weights", "list"])
    assert out.exit_code == 0, out.output
    assert "inception-fid" in out.output and "MISSING -> trace-bench weights fetch clip-vit-b32" in out.output
    out = runner.invoke(app, ["weights", "import", "test-tiny", str(blob)])
    assert out.exit_code == 0, out.output
    assert "imported" in out.output
    out = runner.invoke(app, ["weights", "verify", "test-tiny", "inception-fid"])
    assert out.exit_code == 0 and "ok" in out.output, out.output
    (cache / "tiny.bin").write_bytes(os.urandom(4096))
    out = runner.invoke(app, ["weights", "verify", "test-tiny"])
    assert out.exit_code == 1 and "CORRUPT" in out.output


# ------------------------------------------------------------------------------ what is true (issue 27)
def test_explicit_paths_that_are_not_files_are_named_for_what_they_are(cache, tmp_path, monkeypatch):
    link = tmp_path / "amt-s.pth"
    link.symlink_to("/dev/zero")
    with pytest.raises(WeightsError, match=r"which is not a regular file \(character device\)") as e:
        W.resolve_weights("amt-s", link)
    assert "does not exist" not in str(e.value)
    folder = tmp_path / "weights_dir"
    folder.mkdir()
    monkeypatch.setenv(W.WEIGHTS.get("amt-s").env_var, str(folder))
    with pytest.raises(WeightsError, match="is a folder; expected the file amt-s.pth"):
        W.resolve_weights("amt-s")
    st = W.weights_status("amt-s")
    assert not st.present and st.message != "missing" and "is a folder" in st.message


def test_verify_fails_for_a_broken_env_var_and_a_named_missing_entry(cache, tmp_path, monkeypatch):
    from trace_bench.cli import app

    runner = CliRunner()
    for _, spec in W.WEIGHTS.items():
        monkeypatch.delenv(spec.env_var, raising=False)
    out = runner.invoke(app, ["weights", "verify", "amt-s"])
    assert out.exit_code == 1 and "missing" in out.output, out.output
    monkeypatch.setenv(W.WEIGHTS.get("amt-s").env_var, str(tmp_path))  # a folder, not the file
    out = runner.invoke(app, ["weights", "verify", "amt-s"])
    assert out.exit_code == 1 and "REFUSED" in out.output and "is a folder" in out.output, out.output


def test_import_checks_content_before_caching(cache, tmp_path):
    import struct

    import torch

    for_dino = tmp_path / "dino.pth"
    torch.save({"w": torch.zeros(3)}, for_dino)  # tensors only: accepted for an unpinned state-dict entry
    assert import_weights("dino-vitb16", for_dino).path.is_file()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(struct.pack("<Q", 2 ** 62) + b"{}")  # header length 2^62
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        import_weights("musiq-spaq", broken)
    ts = tmp_path / "i3d.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(ts))  # TorchScript carries code
    with pytest.raises(WeightsError, match="TorchScript file carries code"):
        import_weights("i3d-torchscript", ts)
    wrong = tmp_path / "ctnet.pth"
    torch.save({"params": {"w": torch.zeros(1)}}, wrong)  # the published CT-Net has 132 'module.' tensors
    with pytest.raises(WeightsError, match="holds 1 tensors, the published file 132"):
        import_weights("vlm3d-ctnet", wrong)
    assert not (cache / "i3d_torchscript.pt").exists() and not (cache / "CTNet28_ctclip_whole_data_18classes").exists()
    assert not (cache / "musiq_spaq_ckpt-358bb6af.pth").exists()


def test_availability_of_a_built_entry_writes_nothing(cache, monkeypatch):
    spec = W.WEIGHTS.get("astra-i3resnet152")
    monkeypatch.delenv(spec.env_var, raising=False)
    assert spec.provider is not None
    W.is_available("astra-i3resnet152")
    W.weights_status("astra-i3resnet152", check_hash=False)
    W.weights_status("astra-i3resnet152", check_hash=True)
    assert not (cache / spec.filename).exists()  # only a run that uses it builds the 235 MB file
