"""params.yaml is checked against a schema on load: a typo is an error naming the nearest key (issue 11, item 7)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pipeline.profiles import load_params
from pipeline.schema import check_params, params_schema

REPO = Path(__file__).resolve().parents[1]


def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_the_repositorys_params_are_valid() -> None:
    check_params(params())
    assert load_params(REPO / "params.yaml")["profiles"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["profiles"]["smoke"].update(max_sid=48), "unknown key 'profiles.smoke.max_sid' (did you mean 'profiles.smoke.max_side'?)"),
        (lambda p: p["engine"].update(thraeds=1), "unknown key 'engine.thraeds' (did you mean 'engine.threads'?)"),
        (lambda p: p["corrupt"].update(sed=1), "unknown key 'corrupt.sed' (did you mean 'corrupt.seed'?)"),
        (lambda p: p.update(seed=[1]), "unknown key 'seed' (did you mean 'seeds'?)"),
        (lambda p: p["fetch"].update(timeot=5), "unknown key 'fetch.timeot' (did you mean 'fetch.timeout'?)"),
        (lambda p: p["baselines"]["nlm"].update(h_facter=1), "unknown key 'baselines.nlm.h_facter' (did you mean 'baselines.nlm.h_factor'?)"),
        (lambda p: p["baselines"]["methods"].update(denoize=["tv"]), "'baselines.methods.denoize' (did you mean 'baselines.methods.denoise'?)"),
        (lambda p: p["report"].update(epsilom=1), "unknown key 'report.epsilom' (did you mean 'report.epsilon'?)"),
        (lambda p: p["profiles"]["quick"]["net"].update(downsampel="max"), "'profiles.quick.net.downsampel' (did you mean 'profiles.quick.net.downsample'?)"),
        (lambda p: p["profiles"]["paper"]["fit"]["denoise"].update(iteration=5), "'profiles.paper.fit.denoise.iteration' (did you mean 'profiles.paper.fit.denoise.iterations'?)"),
        (lambda p: p["profiles"]["quick"]["images"].update(inpant=["x"]), "'profiles.quick.images.inpant' (did you mean 'profiles.quick.images.inpaint'?)"),
        (lambda p: p["profiles"]["quick"].update(zzz=1), "unknown key 'profiles.quick.zzz' (valid: experiments, images,"),
        (lambda p: p.update(engine=3), "engine must be a mapping of keys, not int 3"),
    ],
)
def test_a_typo_names_the_key_and_the_nearest_valid_one(edit, message: str, tmp_path: Path) -> None:
    p = params()
    edit(p)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    with pytest.raises(ValueError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_every_error_is_reported_at_once() -> None:
    p = params()
    p["engine"]["thraeds"] = 1
    p["profiles"]["smoke"]["max_sid"] = 48
    with pytest.raises(ValueError, match=r"engine\.thraeds.*; unknown key 'profiles\.smoke\.max_sid'"):
        check_params(p)


def test_the_schema_follows_the_dataclasses() -> None:
    """Every field of NetConfig, FitConfig and EngineConfig is a valid key: a new option needs no schema edit."""
    from dip.fit import FitConfig
    from dip.network import NetConfig
    from pipeline.execution.engines import EngineConfig

    schema = params_schema()
    profile = schema["profiles"]["*"]
    assert {f.name for f in dataclasses.fields(NetConfig)} | {"levels", "width", "skip"} == set(profile["net"])
    assert {f.name for f in dataclasses.fields(FitConfig)} | {"snapshots", "net"} == set(profile["fit"]["*"])  # net: a figure's own network
    assert {f.name for f in dataclasses.fields(EngineConfig)} | {"device"} == set(schema["engine"])
    p = params()
    p["profiles"]["smoke"]["net"].update({f.name: getattr(NetConfig(), f.name) for f in dataclasses.fields(NetConfig)})
    p["profiles"]["smoke"]["fit"]["denoise"].update(early_stop=True, es_window=10, precision="fp32")
    check_params(p)


def test_the_cli_prints_one_error_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline import cli

    p = params()
    p["engine"]["thraeds"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    result = CliRunner().invoke(cli.app, ["profile", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "profile.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "(did you mean 'engine.threads'?)" in result.output and not (tmp_path / "profile.json").exists()


@pytest.mark.parametrize("text, says", [(b"title: Deep Image Prior: *untrained*\n", b"not a readable YAML params file (line 1"),
                                        (b"- a\n- b\n", b"a YAML mapping (key: value), not a list"),
                                        (b"\xff\xfe\x00", b"not a readable YAML params file")])
def test_a_file_that_is_not_params_is_one_line(tmp_path: Path, text: bytes, says: bytes) -> None:
    """`--params README.md` (or any non-mapping) is one `error:` line, not a YAML traceback."""
    from typer.testing import CliRunner

    from pipeline import cli

    bad = tmp_path / "not-params.yaml"
    bad.write_bytes(text)
    with pytest.raises(ValueError) as err:
        load_params(bad)
    assert says.decode() in str(err.value)
    result = CliRunner().invoke(cli.app, ["profile", "--params", str(bad), "--out", str(tmp_path / "profile.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "profile.json").exists()
