"""RunConfig: one source of defaults for the API, the CLI and TOML files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trace_bench.config import RunConfig, config_from_dict, load_config, parse_pairs
from trace_bench.folders import parse_folder, split_spec
from trace_bench.errors import ConfigError

# CLI option names that differ from the field names (plural fields, repeated singular flags)
FLAG_OF = {"methods": "method", "profiles": "profile", "options": "option"}


def test_toml_round_trip(tmp_path):
    c = RunConfig(out="o", reference="ref", methods={"TRACE": "gen/trace", "Generate CT": "gen/g:nifti"},
                  metrics=["temporal_flickering", "fid"], weights={"inception-fid": "/w/f.pt"},
                  profiles={"TRACE": "p.json"}, hu_window=[-1000, 400], skip_unavailable=True, seed=3)
    p = tmp_path / "c.toml"
    p.write_text(c.to_toml())
    assert load_config(p) == c


def test_every_field_is_a_cli_flag():
    from trace_bench.cli.run import run_cmd
    import inspect

    params = set(inspect.signature(run_cmd).parameters)
    toml_only = {"utility"}  # the [utility] table: `trace-bench utility` has its flags
    for f in dataclasses.fields(RunConfig):
        assert f.name in toml_only or FLAG_OF.get(f.name, f.name) in params, f"RunConfig.{f.name} has no CLI flag"


def test_cli_flag_defaults_come_from_the_dataclass():
    """Flags default to None (not given) so the config file / dataclass decides."""
    from trace_bench.cli.run import run_cmd
    import inspect

    for name, p in inspect.signature(run_cmd).parameters.items():
        assert p.default.default is None, name


def test_errors_name_the_setting(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('metrix = ["fid"]\n')
    with pytest.raises(ConfigError, match="metrix.*metrics"):
        load_config(p)
    p.write_text("workers = 'two'\n")
    with pytest.raises(ConfigError, match="workers"):
        load_config(p)
    p.write_text("[methods\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_pairs(["TRACE"], "method")
    with pytest.raises(ConfigError, match="GT"):
        RunConfig(methods={"GT": "x"})
    with pytest.raises(ConfigError, match="classes"):
        RunConfig(classes="4")


def test_precedence_and_method_spec(tmp_path):
    from trace_bench.cli.run import build_config

    p = tmp_path / "c.toml"
    p.write_text('out = "from-file"\nseed = 5\nmetrics = ["weight-free"]\n[methods]\nA = "a"\n')
    c = build_config(p, out=None, seed=7, methods=["B=b:npy"], metrics=None, hu_window="-500,500")
    assert c.out == "from-file" and c.seed == 7 and c.metrics == ["weight-free"]
    assert c.methods == {"A": "a", "B": "b:npy"} and c.hu_window == [-500.0, 500.0]
    assert split_spec("b:npy") == ("b", "npy") and split_spec("some/dir") == ("some/dir", None)
    f = parse_folder("B", "b:npy")
    assert (f.path, f.format, f.spec()) == (Path("b"), "npy", "b:npy")
    with pytest.raises(ConfigError, match="adapter"):
        split_spec("dir:nosuchadapter")
    assert config_from_dict({"metrics": "a,b"}).metrics == ["a", "b"]


def test_run_cli_writes_effective_config(tmp_path):
    """`trace-bench run --config` end to end through the CLI; the effective config is written back."""
    from helpers.fake_metrics import make_small_dataset
    from typer.testing import CliRunner

    from trace_bench.cli import app

    data = make_small_dataset(tmp_path / "d")
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f'reference = "{data / "reference"}"\nmetrics = ["temporal_flickering"]\nframe_size = 64\n'
                   f'plots = false\nprogress = false\nbootstrap = 50\n[methods]\ninterp = "{data / "interp"}"\n')
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", "--config", str(cfg), "--out", str(out), "--seed", "4"])
    assert r.exit_code == 0, r.output
    eff = load_config(out / "config.toml")
    assert eff.seed == 4 and eff.out == str(out) and eff.methods == {"interp": str(data / "interp")}
    assert "summary.csv" in r.output
    # the written config repeats the run: everything cached
    r2 = CliRunner().invoke(app, ["run", "--config", str(out / "config.toml")])
    assert r2.exit_code == 0, r2.output
