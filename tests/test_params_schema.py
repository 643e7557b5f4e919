"""params.yaml is checked on load (pipeline/settings.py): an unknown key is an error naming the nearest
valid one, a value of the wrong type or range an error naming the key, before any stage runs."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from pathlib import Path

import pytest
import yaml

from pipeline.settings import EngineConfig, check_params, load_params

REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def _params() -> dict:
    return yaml.load((REPO / "params.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def params() -> dict:
    """A fresh copy of the repository's params.yaml (read once)."""
    return copy.deepcopy(_params())


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


@pytest.mark.parametrize("group", ["net", "fit", "engine"])
def test_every_field_of_the_dataclasses_is_a_typed_key(group: str) -> None:
    """A field of NetConfig, FitConfig or EngineConfig is a valid key with its default value as
    soon as the code has it (no schema edit), and a value of another type is refused by name."""
    from dip.config import FitConfig, NetConfig

    cls, where = {"net": (NetConfig, ("profiles", "smoke", "net")), "fit": (FitConfig, ("profiles", "smoke", "fit", "denoise")),
                  "engine": (EngineConfig, ("engine",))}[group]
    p = params()
    target = p
    for key in where:
        target = target[key]
    target.update({f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)})
    check_params(p)
    for f in dataclasses.fields(cls):
        wrong = {**target, f.name: {"not": "a value"}}
        bad = params()
        inner = bad
        for key in where[:-1]:
            inner = inner[key]
        inner[where[-1]] = wrong
        with pytest.raises(ValueError, match=re.escape(f"{'.'.join(where)}.{f.name} must be ")):
            check_params(bad)


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


# Bad values: each is one `error:` line naming the file and the key, and nothing runs.
BAD_VALUES = [
    (lambda p: p["profiles"]["quick"]["fit"]["denoise"].update(iterations="ten"), "profiles.quick.fit.denoise.iterations must be a whole number, got 'ten'"),
    (lambda p: p["profiles"]["quick"]["fit"]["denoise"].update(iterations="1e12"), "iterations must be a whole number, got '1e12' (YAML reads 1e12 as text: write 1000000000000)"),
    (lambda p: p["profiles"]["quick"]["fit"]["denoise"].update(iterations=2.5), "profiles.quick.fit.denoise.iterations must be a whole number, got 2.5"),
    (lambda p: p["profiles"]["quick"]["fit"]["denoise"].update(iterations=True), "profiles.quick.fit.denoise.iterations must be a whole number, got True"),
    (lambda p: p["profiles"]["quick"]["fit"]["denoise"].update(iterations=0), "profiles.quick.fit.denoise: iterations must be >= 1, got 0"),
    (lambda p: p["profiles"]["quick"]["fit"]["denoise"].update(lr="fast"), "profiles.quick.fit.denoise.lr must be a finite number, got 'fast'"),
    (lambda p: p["profiles"]["paper"]["fit"]["sr_x4"].update(lr=-0.01), "profiles.paper.fit.sr_x4: lr (the learning rate) must be a finite number in (0, 1], got -0.01"),
    (lambda p: p["profiles"]["quick"]["net"].update(downsample="maxpool"), "profiles.quick.net.downsample must be one of stride, max, avg"),
    (lambda p: p["profiles"]["quick"]["fit"]["sr_x4"].update(snapshots=[0, -5]), "profiles.quick.fit.sr_x4.snapshots must be ≥ 0 (each)"),
    (lambda p: p.update(seeds=5), "seeds must be a list (each a whole number), got 5"),
    (lambda p: p.update(seeds=[]), "seeds must be a list of at least one seed"),
    (lambda p: p.update(seeds=[0, 0]), "seeds must be a list of different seeds ≥ 0"),
    (lambda p: p.update(seeds=[0, "1"]), "seeds must be a list (each a whole number), got [0, '1']"),
    (lambda p: p["engine"].update(threads="two"), "engine.threads must be a whole number, got 'two'"),
    (lambda p: p["engine"].update(kind="slurm"), "engine.kind 'slurm' is not one of local, dask"),
    (lambda p: p["fetch"].update(timeout=0), "fetch.timeout must be > 0"),
    (lambda p: p["report"].update(epsilon="half a dB"), "report.epsilon must be a finite number"),
    (lambda p: p["baselines"]["methods"].update(denoise=["bm4d"]), "baselines.methods.denoise must be a list (each one of bm3d, nlm, tv)"),
    (lambda p: p.update(profile="fast"), "profile 'fast' is not auto or one of profiles: paper, quick, smoke"),
    (lambda p: p["figures"]["sup_kate98"].update(drop="most"), "figures.sup_kate98.drop must be a finite number or empty (null), got 'most'"),
    (lambda p: p["figures"]["fig7_text"].update(task="deblur"), "figures.fig7_text.task must be one of denoise, inpaint, sr"),
    (lambda p: p["profiles"]["quick"].update(experiments=["denoise_s30"]), "profiles.quick.experiments: 'denoise_s30' is not in experiments"),
    (lambda p: p["profiles"]["paper"]["variants"].update(inpaint="supmatt"), "profile 'paper' has no fitting settings 'inpaint_supmatt' (profiles.paper.fit.inpaint_supmatt)"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_VALUES, ids=[m.split(" must")[0].split(":")[0] for _, m in BAD_VALUES])
def test_a_bad_value_names_the_file_and_the_key(edit, message: str, tmp_path: Path) -> None:
    p = params()
    edit(p)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, allow_unicode=True))
    with pytest.raises(ValueError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


READERS = [pytest.param(yaml.SafeLoader, id="pyyaml")] + (
    [pytest.param(yaml.CSafeLoader, id="libyaml")] if getattr(yaml, "CSafeLoader", None) else [])


@pytest.mark.parametrize("loader", READERS)
@pytest.mark.parametrize("depth", [33, 300, 2_000, 20_000])
def test_a_deeply_nested_value_is_one_line(depth: int, loader: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds nested 33 to 20,000 deep: the same error line naming the file with libyaml's reader
    (which stops near 1,000 levels with a parse error of its own) and with PyYAML's (which recurses
    per level), whichever PyYAML release is installed; never a RecursionError or a traceback."""
    from pipeline import settings

    monkeypatch.setattr(settings, "_LOADER", loader)
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("seeds: [0]", "seeds: " + "[" * depth + "]" * depth, 1))
    with pytest.raises(ValueError) as err:
        load_params(path)
    assert str(err.value) == (f"{path}: lists or mappings nested more than 32 deep, too deep to be a params file; "
                              "give params.yaml or a copy of it")


@pytest.mark.parametrize("loader", READERS)
def test_nesting_within_the_limit_is_checked_as_a_value(loader: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 levels is a readable file whose seeds are not numbers: the schema's line, not the depth's."""
    from pipeline import settings

    monkeypatch.setattr(settings, "_LOADER", loader)
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("seeds: [0]", "seeds: " + "[" * 30 + "]" * 30, 1))
    with pytest.raises(ValueError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: ") and "seeds must be a list (each a whole number), got [[[...]]]" in str(err.value)


@pytest.mark.parametrize("seeds", ["[]", "[0, 0]", "5", "true"])
def test_dip_run_with_bad_seeds_touches_no_finished_fit(seeds: str, tmp_path: Path) -> None:
    """`seeds: []` used to prune every finished fit of the experiment and exit 0; `[0, 0]` fitted
    one seed twice into one folder. Now `dip run` stops before planning, with one error line."""
    from typer.testing import CliRunner

    from pipeline import cli

    params_file = tmp_path / "params.yaml"
    params_file.write_text((REPO / "params.yaml").read_text().replace("seeds: [0]", f"seeds: {seeds}", 1))
    finished = tmp_path / "results" / "inpaint_p50" / "camera" / "seed_0"
    finished.mkdir(parents=True)
    (finished / ".dip-output").write_text("")
    (finished / "run.json").write_text("{}")
    result = CliRunner().invoke(cli.app, ["run", "inpaint_p50", "--params", str(params_file), "--profile-file", str(tmp_path / "profile.json"),
                                          "--corrupted", str(tmp_path / "corrupted"), "--out", str(tmp_path / "results")])
    assert result.exit_code == 2 and result.output.count("error:") == 1 and "Traceback" not in result.output
    assert f"{params_file}: seeds must be" in result.output
    assert sorted(p.name for p in finished.iterdir()) == [".dip-output", "run.json"]


def test_dip_fetch_without_a_params_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It printed `error: profiles` where data/profile.json existed but params.yaml did not."""
    from typer.testing import CliRunner

    from pipeline import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "profile.json").write_text('{"requested": "auto", "profile": "quick", "device": "cpu", "device_name": "x"}')
    result = CliRunner().invoke(cli.app, ["fetch", "--manifest", str(REPO / "data" / "manifest.yaml")])
    assert result.exit_code == 2 and result.output.strip() == \
        "error: params.yaml: no such params file; run the command in the project's folder or give --params FILE"
    assert not (tmp_path / "data" / "images").exists()
