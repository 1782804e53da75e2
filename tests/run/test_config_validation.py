"""RunConfig validation: every bad setting is one ConfigError line naming the setting (and the TOML
file) with the expected type or range; the new fields round-trip through TOML; device spelling and
availability (trace_bench.device)."""

from __future__ import annotations

import dataclasses

import pytest

from trace_bench.config import (RunConfig, check_method_name, config_from_dict, load_config, parse_option,
                                parse_options)
from trace_bench.device import check_device, parse_device
from trace_bench.errors import ConfigError

# (TOML text, setting named in the message, a word of the expected type/range)
BAD_TOML = [
    ("out = 5", "out", "string"),
    ('metrics = [["x"]]', "metrics", "strings"),
    ("metrics = []", "metrics", "at least one"),
    ('metrics = ["fid", 3]', "metrics", "strings"),
    ("seed = true", "seed", "integer"),
    ("seed = -1", "seed", "0.."),
    ("seed = 1.5", "seed", "integer"),
    ('device = "cudaX"', "device", "cuda:N"),
    ('device = "gpu"', "device", "cuda:N"),
    ('device = "cpu:0"', "device", "cuda:N"),
    ("device = 0", "device", "string"),
    ("frame_size = 100000", "frame_size", "16..2048"),
    ("frame_size = 8", "frame_size", "16..2048"),
    ("frame_size = 256.0", "frame_size", "integer"),
    ('hu_window = ["a", 1]', "hu_window", "numbers"),
    ("hu_window = [1000, -1000]", "hu_window", "lo < hi"),
    ("hu_window = [0, 1, 2]", "hu_window", "[lo, hi]"),
    ("hu_window = [0, inf]", "hu_window", "finite"),
    ("hu_window = [true, 5]", "hu_window", "numbers"),
    ('workers = "two"', "workers", "integer"),
    ("workers = 0", "workers", "1.."),
    ("workers = true", "workers", "integer"),
    ("bootstrap = 1.5", "bootstrap", "integer"),
    ('bootstrap_distribution = "100"', "bootstrap_distribution", "integer"),
    ('confidence = "high"', "confidence", "number"),
    ("confidence = true", "confidence", "number"),
    ("confidence = 95", "confidence", "(0, 1)"),
    ("batch_size = 0", "batch_size", "1.."),
    ("plots = 1", "plots", "true or false"),
    ('skip_unavailable = "yes"', "skip_unavailable", "true or false"),
    ("classes = 4", "classes", "'full'"),
    ('shard = "5/4"', "shard", "I/N"),
    ("plugins = [1]", "plugins", "strings"),
    ("reference = 3", "reference", "string"),
    ("[methods]\nA = 5", "methods.A", "string"),
    ('[methods]\nA = ["x"]', "methods.A", "string"),
    ('methods = "gen/a"', "methods", "table"),
    ('[weights]\nfid = 1', "weights.fid", "string"),
    ('[profiles]\nA = true', "profiles.A", "string"),
    ('[methods]\n".." = "x"', "method name", "folder"),
    ('[methods]\n"." = "x"', "method name", "folder"),
    ('[methods]\n"a/b" = "x"', "method name", "'/'"),
    ('[methods]\n"a\\\\b" = "x"', "method name", "folder"),
    ('[methods]\n"-rf" = "x"', "method name", "starting with"),
    ('[methods]\n"a\\u0000b" = "x"', "method name", "folder"),
    ('[methods]\n"a\\tb" = "x"', "method name", "folder"),
    ('[methods]\n"gt" = "x"', "method name", "reserved"),
    (f'[methods]\n"{"a" * 101}" = "x"', "method name", "101 characters"),
    ("options = 3", "options", "table"),
    ("[options]\nfid = 3", "options.fid", "table"),
    ("[options.fid]\nw = {a = 1}", "options.fid.w", "string, number"),
    ("[options.fid]\nw = [[1]]", "options.fid.w", "string, number"),
    ('[options."f i d"]\nw = 1', "options", "metric names"),
    ("strict = 1", "strict", "true or false"),
    ('geometry = ""', "geometry", "non-empty string"),
    ("geometry = 1", "geometry", "string"),
    ('relative_paths = "no"', "relative_paths", "true or false"),
    ("metrix = 1", "metrix", "metrics"),  # unknown keys: suggestion
]


@pytest.mark.parametrize("text,setting,expected", BAD_TOML, ids=[t for t, _, _ in BAD_TOML])
def test_bad_toml_is_one_line_naming_file_and_setting(tmp_path, text, setting, expected):
    p = tmp_path / "bench.toml"
    p.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{p}: "), msg
    assert setting in msg and expected in msg, msg


def test_api_validation_names_the_setting():
    for kw, setting in [({"seed": True}, "seed"), ({"frame_size": 4096}, "frame_size"),
                        ({"device": "cudaX"}, "device"), ({"methods": {"../x": "d"}}, "method name"),
                        ({"workers": "2"}, "workers"), ({"options": {"fid": {"w": object()}}}, "options.fid.w")]:
        with pytest.raises(ConfigError, match=setting):
            RunConfig(**kw)
    with pytest.raises(ConfigError, match="frame_size"):
        RunConfig().replace(frame_size=100000)
    with pytest.raises(ConfigError, match="^config: seed"):
        config_from_dict({"seed": True})


def test_good_values_and_normalisation():
    c = RunConfig(confidence=1 / 2, hu_window=(-1000, 400), classes=2, metrics="fid, fvd", plugins="a,b:f",
                  methods={"Generate CT (v2)": "g", "MedSyn_1.5+x": "m", "Méthode": "d", "(ours)": "o"})
    assert c.hu_window == [-1000.0, 400.0] and c.classes == "2" and c.metrics == ["fid", "fvd"]
    assert c.plugins == ["a", "b:f"] and isinstance(c.confidence, float)
    for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert RunConfig(device=d).device == d
    assert RunConfig().device == "auto"
    assert RunConfig().options == {} and RunConfig().strict is False
    assert RunConfig().geometry == "refuse" and RunConfig().relative_paths is False
    assert check_method_name("TRACE") == "TRACE"
    for lo, hi in ((16, 16), (2048, 2048)):
        assert RunConfig(frame_size=lo).frame_size == hi


def test_round_trip_with_options_and_new_fields(tmp_path):
    c = RunConfig(out="o", reference="ref", methods={"TRACE": "gen/trace", "Generate CT": "gen/g:nifti"},
                  options={"fid": {"weights": "inception-fid-pth", "batch": 8, "eps": 1e-6, "exact": True,
                                   "layers": ["pool3", "logits"]},
                           "vbench-motion": {"scale": 0.5}, "empty": {}},
                  strict=True, geometry="strict", relative_paths=True, device="cuda:1", seed=7)
    text = c.to_toml()
    assert "[options.fid]" in text and '[options.vbench-motion]' in text
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    back = load_config(p)
    assert back == c
    assert back.options["fid"]["batch"] == 8 and isinstance(back.options["fid"]["eps"], float)
    # the default config round-trips too (empty options table)
    p.write_text(RunConfig().to_toml(), encoding="utf-8")
    assert load_config(p) == RunConfig()
    # and a hand-written file with [options.fid] tables
    p.write_text('[options.fid]\nweights = "inception-fid-pth"\n[options.fvd]\nclips = 4\n', encoding="utf-8")
    assert load_config(p).options == {"fid": {"weights": "inception-fid-pth"}, "fvd": {"clips": 4}}
    assert dataclasses.asdict(back)["options"] == c.options


def test_parse_option():
    assert parse_option("fid.weights=inception-fid-pth") == ("fid", "weights", "inception-fid-pth")
    assert parse_option("fid.batch=8") == ("fid", "batch", 8)
    assert parse_option("fid.eps=1e-3") == ("fid", "eps", 0.001)
    assert parse_option("fid.exact=true") == ("fid", "exact", True)
    assert parse_option('fid.name="a b"') == ("fid", "name", "a b")
    assert parse_option("fid.path=/w/x.pt") == ("fid", "path", "/w/x.pt")
    assert parse_option("fid.layers=[1, 2]") == ("fid", "layers", [1, 2])
    assert parse_option("fid.day=2024-01-02") == ("fid", "day", "2024-01-02")  # dates stay text
    assert parse_option(" fid.w = x ") == ("fid", "w", "x")
    for bad in ("fid=3", "fid.=3", ".w=3", "fid.a.b=1", "fid.w=", "fid.w", "f i d.w=1"):
        with pytest.raises(ConfigError, match="--option") as ei:
            parse_option(bad)
        assert "\n" not in str(ei.value)
    assert parse_options(["fid.w=a", "fid.b=2", "fvd.c=x"], base={"fid": {"w": "old", "k": 1}}) == \
        {"fid": {"w": "a", "k": 1, "b": 2}, "fvd": {"c": "x"}}
    with pytest.raises(ConfigError, match="twice"):
        parse_options(["fid.w=a", "fid.w=b"])
    # parsed options are valid config values
    assert RunConfig(options=parse_options(["fid.layers=[1, 2]", "fid.x=1.5"])).options["fid"]["x"] == 1.5


# ------------------------------------------------------------------------------ device
def test_parse_device_spelling():
    assert parse_device("cuda:3") == ("cuda", 3) and parse_device("cpu") == ("cpu", None)
    assert parse_device("auto") == ("auto", None)
    for bad in ("cudaX", "cuda:", "cuda:-1", "CPU", "gpu", "cpu:0", "auto:1", "", "mps"):
        with pytest.raises(ConfigError, match="device"):
            parse_device(bad)


class _FakeCuda:
    def __init__(self, n: int):
        self.n = n

    def is_available(self) -> bool:
        return self.n > 0

    def device_count(self) -> int:
        return self.n


def test_check_device_without_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "cuda", _FakeCuda(0))
    assert check_device("cpu") == "cpu"
    assert check_device("auto") == "cpu"
    for dev in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="no CUDA GPU.*available: cpu") as ei:
            check_device(dev)
        assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="cudaX"):
        check_device("cudaX")


def test_check_device_with_two_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "cuda", _FakeCuda(2))
    assert check_device("auto") == "cuda"
    assert check_device("cuda") == "cuda" and check_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match=r"only 2 CUDA GPU.*available: cpu, cuda:0, cuda:1"):
        check_device("cuda:2")


def test_check_device_real_machine():
    import torch

    assert check_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
