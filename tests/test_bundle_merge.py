"""A bundle that grows over several GPU runs: parts merged one after another give the bundle of a
one-go merge; a fit already there is not taken again, one with other settings replaces it; the
policy is a function of the fits held; a killed merge leaves nothing that lasts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bundles import REPO, TABLE1, files, keyed_copy, manifest, merge, part
from bundles import bundle, parts, workspace  # noqa: F401 - the shared fixtures
from pipeline import layout
from pipeline.outputs.check import check_bundle
from pipeline.outputs.parts import PART_JSON
from pipeline.outputs.policy import Keep, Policy, decide
from pipeline.outputs.publish import Held, Source, bundle_lock


def test_a_run_cut_in_two_gives_the_one_go_bundle(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    grown = tmp_path / layout.PUBLISHED / "grown"
    first = merge([parts["first"]], grown)
    assert first["added"] and not first["unchanged"] and check_bundle(grown) == []
    assert {p.parent.name for p in (grown / layout.CORRUPTED).glob("*/experiment.json")} == \
           {p.parent.name for p in (bundle / layout.CORRUPTED).glob("*/experiment.json")}  # pending experiments are known
    second = merge([parts["second"]], grown)
    assert second["added"] and not second["unchanged"] and not set(first["added"]) & set(second["added"])  # nothing taken twice
    assert files(grown) == files(bundle)  # metrics/, results/, baselines/: byte for byte
    one, two = manifest(bundle), manifest(grown)
    assert {k: (e["fit_key"], e["inputs"]) for k, e in one["fits"].items()} == {k: (e["fit_key"], e["inputs"]) for k, e in two["fits"].items()}
    assert {e["part"]["name"] for e in two["fits"].values()} == {"first", "second"} and len(two["parts"]) == 2


def test_merging_what_is_there_changes_nothing(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    b = Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))
    before = (b / layout.BUNDLE_MANIFEST).read_bytes()
    r = merge([parts["first"], parts["second"]], b)
    assert not r["changed"] and not r["added"] and not r["replaced"] and len(r["unchanged"]) == len(manifest(b)["fits"])
    assert (b / layout.BUNDLE_MANIFEST).read_bytes() == before


def test_a_fit_with_other_settings_replaces_the_old_one(workspace: Path, bundle: Path, tmp_path: Path) -> None:
    ws = Path(shutil.copytree(workspace, tmp_path / "ws"))
    fid = f"{TABLE1}/camera/seed_0"
    run_json = ws / layout.RESULTS / fid / "run.json"
    run = json.loads(run_json.read_text())
    old_key, run["fit_key"], run["wall_seconds"] = run["fit_key"], "f" * 64, 99.0
    run_json.write_text(json.dumps(run, indent=2, sort_keys=True))
    b = Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))
    r = merge([part(ws, tmp_path / "rerun", [fid, "denoise_s25/astronaut/seed_0"])], b)
    assert r["replaced"] == [fid] and r["unchanged"] == ["denoise_s25/astronaut/seed_0"] and not r["added"]
    entry = manifest(b)["fits"][fid]
    assert entry["fit_key"] == "f" * 64 and entry["wall_seconds"] == 99.0 and entry["replaces"]["fit_key"] == old_key
    assert entry["part"]["name"] == "rerun" and check_bundle(b) == []
    assert json.loads((b / layout.RESULTS / fid / "run.json").read_text())["fit_key"] == "f" * 64


def test_an_older_part_does_not_replace_a_newer_fit(workspace: Path, bundle: Path, tmp_path: Path) -> None:
    ws = Path(shutil.copytree(workspace, tmp_path / "ws"))
    fid = f"{TABLE1}/camera/seed_0"
    run_json = ws / layout.RESULTS / fid / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "fit_key": "e" * 64}))
    old = part(ws, tmp_path / "old", [fid])
    info = json.loads((old / PART_JSON).read_text())
    (old / PART_JSON).write_text(json.dumps({**info, "created": "2000-01-01T00:00:00Z"}))
    b = Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))
    r = merge([old], b)
    assert r["older"] == [fid] and not r["changed"] and manifest(b)["fits"][fid]["fit_key"] != "e" * 64


def _tarball(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return dest


def test_a_folder_of_parts_folders_and_tarballs(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    runs = tmp_path / "gpu-runs"
    runs.mkdir()
    (runs / "README.md").write_text("outputs of the prepared GPU run")
    _tarball(parts["first"], runs / "run-1.tar.gz")
    shutil.copytree(parts["second"], runs / "run-2")
    grown = tmp_path / layout.PUBLISHED / "grown"
    r = merge([runs], grown)
    assert len(r["added"]) == len(manifest(bundle)["fits"]) and files(grown) == files(bundle)
    assert {e["part"]["name"] for e in manifest(grown)["fits"].values()} == {"run-1.tar.gz", "run-2"}


def _held(fid: str, size: tuple[int, int] = (8, 8), scored: bool = True) -> Held:
    return Held(fid, {}, Source(Path("."), {}), datetime(2026, 1, 1, tzinfo=timezone.utc), size, scored)


def test_the_policy_keeps_what_docs_publishing_md_says() -> None:
    fits = [_held("inpaint_p50/man/seed_0", (512, 512)), _held("inpaint_p50/man/seed_1", (512, 512)),
            _held("inpaint_p50/house/seed_0", (256, 256)),
            _held("denoise_s25/baboon/seed_0", (512, 512)), _held("denoise_s25/house/seed_1", (256, 256)),
            _held("fig7_text/kate/seed_0", (64, 64)), _held("real_snail/snail/seed_0", (32, 32), scored=False)]
    keep = decide(Policy(), fits)
    assert keep["inpaint_p50/man/seed_0"] == Keep("png", truth=True, snapshots=True)  # Table 1 + gallery
    assert keep["inpaint_p50/man/seed_1"] == Keep(None)  # a further seed: its numbers only
    assert keep["inpaint_p50/house/seed_0"] == Keep("png", truth=True)
    assert keep["denoise_s25/house/seed_1"] == Keep("png", truth=True)  # the smallest image, its first seed held
    assert keep["denoise_s25/baboon/seed_0"] == Keep("jpeg")
    assert keep["fig7_text/kate/seed_0"] == Keep("jpeg") and keep["real_snail/snail/seed_0"] == Keep("jpeg")  # figures: previews
    again = decide(Policy(), list(reversed(fits)))
    assert again == keep  # whatever order the fits came in
    assert decide(Policy(spot_check=False, png=()), fits)["denoise_s25/house/seed_1"] == Keep("jpeg")


def _with_seed_1(workspace: Path, dest: Path) -> Path:
    """The workspace with a second seed of Table 1's image (a copy of seed 0 with its own key)."""
    ws = Path(shutil.copytree(workspace, dest))
    src = ws / layout.RESULTS / TABLE1 / "camera" / "seed_0"
    seed1 = Path(shutil.copytree(src, src.with_name("seed_1")))
    run = json.loads((seed1 / "run.json").read_text())
    run.update(seed=1, fit_key="1" * 64)
    run["fit"]["seed"] = 1
    (seed1 / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True))
    return ws


def test_a_lower_seed_arriving_later_takes_the_images(workspace: Path, tmp_path: Path) -> None:
    ws = _with_seed_1(workspace, tmp_path / "ws")
    s0, s1 = f"{TABLE1}/camera/seed_0", f"{TABLE1}/camera/seed_1"
    later = tmp_path / layout.PUBLISHED / "later"
    merge([part(ws, tmp_path / "p1", [s1])], later)
    assert (later / layout.RESULTS / s1 / "restored.png").is_file()
    merge([part(ws, tmp_path / "p0", [s0])], later)
    assert not (later / layout.RESULTS / s1 / "restored.png").exists() and (later / layout.RESULTS / s1 / "run.json").is_file()
    at_once = tmp_path / layout.PUBLISHED / "at-once"
    merge([part(ws, tmp_path / "p01", [s0, s1])], at_once)
    assert files(later) == files(at_once) and check_bundle(later) == []


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_what_a_killed_merge_left_is_removed_or_put_back(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / layout.PUBLISHED
    b = Path(shutil.copytree(bundle, root / "b"))
    dead, alive = _dead_pid(), subprocess.Popen(["sleep", "60"])
    try:
        stale = root / f".b.merge-{dead}-x1y2.tmp"
        (stale / "bundle" / "results").mkdir(parents=True)
        kept = root / f".b.merge-{alive.pid}-z3.tmp"
        kept.mkdir()
        other = root / ".c.merge-1-q.tmp"  # another bundle's: not this merge's business
        other.mkdir()
        merge([parts["first"]], b)
        assert not stale.exists() and kept.is_dir() and other.is_dir()
        aside = root / f".b.merge-{dead}-w9.old"  # killed between moving the old bundle aside and the new one in
        os.replace(b, aside)
        assert not b.exists()
        r = merge([parts["first"]], b)
        assert not aside.exists() and r["unchanged"] and check_bundle(b) == [] and files(b) == files(bundle)
    finally:
        alive.kill()
        alive.wait()


def test_one_merge_at_a_time(parts: dict[str, Path], tmp_path: Path) -> None:
    b = tmp_path / layout.PUBLISHED / "b"
    with bundle_lock(b):
        with pytest.raises(ValueError, match=rf"another merge \(pid {os.getpid()}\) is writing this bundle now"):
            merge([parts["first"]], b)
    assert not b.exists()


def test_git_never_commits_a_merges_temporary_files() -> None:
    paths = ["results-published/.paper-h200.merge-123-abc.tmp/bundle/manifest.json", "results-published/.paper-h200.merge-9-x.old/a",
             "results-published/.paper-h200.lock", "results-published/paper-h200/results/.img04.abc.tmp/run.json"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.split() == paths, proc.stdout + proc.stderr
    proc = subprocess.run(["git", "check-ignore", "--no-index", "results-published/paper-h200/manifest.json"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1  # the bundle itself is committed


def test_a_part_of_another_profile_is_refused(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    from pipeline.outputs.safe import sha256_bytes

    other = Path(shutil.copytree(parts["first"], tmp_path / "other"))
    profile = json.loads((other / "data" / "profile.json").read_text())
    (other / "data" / "profile.json").write_text(json.dumps({**profile, "profile": "quick"}))
    info = json.loads((other / PART_JSON).read_text())
    info["profile"] = "quick"
    info["files"]["data/profile.json"] = sha256_bytes((other / "data" / "profile.json").read_bytes())
    (other / PART_JSON).write_text(json.dumps(info))
    b = Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))
    with pytest.raises(ValueError, match="holds fits of profile 'quick', the bundle .* those of 'smoke'"):
        merge([other], b)
    assert files(b) == files(bundle)


def test_a_workspace_fit_without_a_fit_key_is_refused(smoke_outputs: Path, tmp_path: Path) -> None:
    ws = keyed_copy(smoke_outputs, tmp_path / "ws")
    run_json = layout.run_files(ws / layout.RESULTS)[0]
    run = json.loads(run_json.read_text())
    del run["fit_key"]
    run_json.write_text(json.dumps(run))
    with pytest.raises(ValueError, match=r"run\.json: no fit_key \(fitted by an older dip\); run `dip run .*` again"):
        merge([ws], tmp_path / layout.PUBLISHED / "b")
    assert not (tmp_path / layout.PUBLISHED / "b").exists()


@pytest.mark.integration
def test_a_merge_killed_with_sigkill_leaves_nothing_that_lasts(parts: dict[str, Path], tmp_path: Path) -> None:
    import signal
    import sys
    import time

    root = tmp_path / layout.PUBLISHED
    b = root / "b"
    merge([parts["first"]], b)
    before = files(b)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "publish", str(parts["second"]), "--into", str(b),
                             "--params", str(REPO / "params.yaml"), "--paper", str(REPO / "data" / "paper.yaml")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(root.glob(".b.merge-*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(root.glob(".b.merge-*"))
    assert left, "the merge ended before it could be killed"
    assert files(b) == before and check_bundle(b) == []  # the old bundle, whole
    r = merge([parts["second"]], b)
    assert r["added"] and not list(root.glob(".b.merge-*")) and check_bundle(b) == []


def test_baselines_go_with_the_inputs_of_their_fit(workspace: Path, bundle: Path, tmp_path: Path) -> None:
    import numpy as np

    ws = Path(shutil.copytree(workspace, tmp_path / "ws"))
    fid, key = f"{TABLE1}/camera/seed_0", f"{TABLE1}/camera"
    obs = ws / layout.CORRUPTED / key / "observation.npy"
    np.save(obs, np.load(obs) * 0.5)  # a fit on other inputs (another corruption)
    run_json = ws / layout.RESULTS / fid / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "fit_key": "d" * 64}))
    b = Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))
    assert key in manifest(b)["baselines"]
    r = merge([part(ws, tmp_path / "refit", [fid], baselines=False)], b)
    assert r["replaced"] == [fid] and r["baselines_dropped"] == [key] and key not in manifest(b)["baselines"]
    assert not (b / layout.BASELINES / TABLE1).exists() and check_bundle(b) == []
    older = part(workspace, tmp_path / "older", [fid])  # the first fit again, with its baselines, from an older run
    (older / PART_JSON).write_text(json.dumps({**json.loads((older / PART_JSON).read_text()), "created": "2000-01-01T00:00:00Z"}))
    r = merge([older], b)
    assert r["older"] == [fid] and r["baselines_refused"] == [key] and not r["changed"]
