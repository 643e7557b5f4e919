"""Two runs into one output, and what a killed run leaves: one writer per output (a second one
stops at once with one line), no stale lock after SIGKILL, temporary folders of dead runs removed
by the next run, a running process's never."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.files import MARKER, atomic_directory
from dip.metrics import to_uint8

ROOT = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def leftover(folder: Path, name: str, pid: int, kind: str = "tmp", directory: bool = True) -> Path:
    path = folder / f".{name}.dip{pid}.abcd1234.{kind}"
    if directory:
        path.mkdir(parents=True)
        (path / MARKER).write_text("dip")
        (path / "restored.png").write_bytes(b"half")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    return path


def test_a_second_writer_of_one_output_is_refused_at_once(tmp_path: Path) -> None:
    from pipeline.files import OutputBusy, lock_file, output_lock

    out = tmp_path / "cc"
    with output_lock(out):
        assert lock_file(out).read_text().strip() == str(os.getpid())
        with pytest.raises(OutputBusy, match=rf"{out} is being written by another dip process \(pid {os.getpid()}\)"):
            with output_lock(out):
                pass
    assert not lock_file(out).exists()  # removed at the end
    with output_lock(tmp_path / "root", inside=True) as where:  # a root that stays in place holds its own lock
        assert where == tmp_path / "root" / ".dip-lock"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"] and not any((tmp_path / "root").iterdir())


def test_leftovers_of_dead_runs_go_live_ones_stay(tmp_path: Path) -> None:
    from pipeline.files import atomic_path, clean_leftovers

    live = subprocess.Popen(["sleep", "60"])
    try:
        dead = leftover(tmp_path, "img04", dead_pid())
        dead_old = leftover(tmp_path, "img05", dead_pid(), kind="old")
        dead_file = leftover(tmp_path, "run.json", dead_pid(), directory=False)
        running = leftover(tmp_path, "img06", live.pid)
        mine = leftover(tmp_path, "img07", os.getpid())
        other = tmp_path / ".img04.tmp"  # not named as dip names its temporaries: not dip's to remove
        other.mkdir()
        with atomic_directory(tmp_path / "img08") as tmp:
            assert ".dip" + str(os.getpid()) in tmp.name
        assert not dead.exists() and not dead_old.exists() and not dead_file.exists()
        assert running.is_dir() and mine.is_dir() and other.is_dir() and (tmp_path / "img08" / MARKER).is_file()
        with atomic_path(tmp_path / "x.json") as tmp:  # a file's temporary carries the pid too
            assert tmp.name.startswith(f".x.json.dip{os.getpid()}.")
            tmp.write_text("{}")
        live.kill()
        live.wait()
        assert clean_leftovers(tmp_path) == [running]
    finally:
        live.kill()
        live.wait()


KILLED_MID_WRITE = """
import os, signal, sys
from pipeline.files import atomic_directory
with atomic_directory(sys.argv[1]) as tmp:
    (tmp / "restored.png").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_what_a_run_killed_mid_write_leaves_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """SIGKILL while a result folder is being written leaves its hidden temporary folder; the next
    write into the same folder removes it (before: it stayed for good, and `git add` took it)."""
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "img04")], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".img04.")]  # what the killed run left
    with atomic_directory(tmp_path / "img05"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img05"]


def test_prune_never_removes_a_running_fit_s_temporary_folder(tmp_path: Path) -> None:
    from pipeline.stages.run import prune

    live = subprocess.Popen(["sleep", "60"])
    try:
        image = tmp_path / "results" / "exp" / "img"
        running = leftover(image, "seed_0", live.pid)
        dead = leftover(image, "seed_1", dead_pid())
        prune(tmp_path / "results" / "exp", [])
        assert running.is_dir() and not dead.exists()
    finally:
        live.kill()
        live.wait()


def test_force_never_replaces_a_users_folder_that_holds_a_run_json(tmp_path: Path) -> None:
    """Only dip's own marker makes a folder dip's: a run.json of the user's is not one."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    image = tmp_path / "clean.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(image)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "run.json").write_text('{"my": "experiment"}')
    (mine / "thesis.tex").write_text("three years of work")
    result = CliRunner().invoke(app, ["restore", str(image), "--out", str(mine), "--force", "--iterations", "1", "--preset", "quick",
                                      "--device", "cpu"])
    assert result.exit_code == 2 and "not an output of dip" in result.output, result.output
    assert (mine / "thesis.tex").read_text() == "three years of work"
    from pipeline.stages.run import prune

    results = tmp_path / "results"
    (results / "img").mkdir(parents=True)
    os.replace(mine, results / "img" / "seed_8")  # pruning (a seed no longer in the plan) keeps it too
    prune(results, [])
    assert (results / "img" / "seed_8" / "thesis.tex").read_text() == "three years of work"


# --- two real processes -----------------------------------------------------------------------

def dip(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", "from pipeline.cli import main; main()", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def started(lock: Path, proc: subprocess.Popen, at_most: float = 15) -> None:
    """Wait until ``proc`` holds ``lock`` (or, without locking, until it has had ``at_most``
    seconds to start fitting); it must still be running."""
    end = time.time() + at_most
    while not lock.exists() and time.time() < end:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.integration
def test_two_restores_into_one_output(tmp_path: Path, camera64: np.ndarray) -> None:
    """The second `dip restore … --out cc --force` (another seed) stops at once with one line; the
    folder is wholly the first one's."""
    Image.fromarray(to_uint8(camera64)).save(tmp_path / "photo.png")
    common = ["restore", "photo.png", "--out", "cc", "--force", "--preset", "quick", "--device", "cpu", "--log-every", "10", "--snapshots", "0,300"]
    first = dip(*common, "--iterations", "1000", "--seed", "1", cwd=tmp_path)
    started(tmp_path / ".cc.dip-lock", first)
    second = dip(*common, "--iterations", "2", "--seed", "2", cwd=tmp_path)
    out2, err2 = second.communicate(timeout=120)
    assert second.returncode == 2 and error_lines(out2 + err2) == [
        f"error: cc is being written by another dip process (pid {first.pid}); wait until it ends, or choose another output"], err2
    out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0, err1
    run = json.loads((tmp_path / "cc" / "run.json").read_text())
    assert run["seed"] == 1 and run["iterations_run"] == 1000 and sorted(p.name for p in (tmp_path / "cc" / "snapshots").iterdir()) == [
        "iter_00000.png", "iter_00300.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc", "photo.png"]  # no lock file, no temporary left


def tiny_workspace(root: Path, camera64: np.ndarray, iterations: int) -> Path:
    """params.yaml with a tiny profile, its data/profile.json and corrupted inputs: what `dip run` reads."""
    from conftest import tiny_profile
    from pipeline.images.manifest import ImageEntry
    from pipeline.settings import Profile
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.files import save_image

    prof = tiny_profile(iterations)
    prof["fit"]["denoise"]["snapshots"] = [0]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(profile="tiny", profiles={"tiny": prof}, experiments=["denoise_s25", "inpaint_p50"], seeds=[0, 1], figures={})
    params["engine"]["threads"] = 1
    (root / "data").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "data" / "profile.json").write_text(json.dumps({"requested": "tiny", "profile": "tiny", "device": "cpu", "device_name": "cpu"}))
    for name in ("a", "b"):
        save_image(root / "images" / "t" / f"{name}.png", camera64[:24, :20] if name == "a" else camera64[24:48, 20:40])
    entries = [ImageEntry(set="t", name=n, pixel_sha256="-") for n in ("a", "b")]
    corrupt_all(["denoise_s25"], Profile("tiny", prof), {"denoise": entries}, root / "images", root / "data" / "corrupted", 0)
    return root


@pytest.mark.integration
def test_two_dip_runs_on_one_workspace_and_a_killed_one(tmp_path: Path, camera64: np.ndarray) -> None:
    """A second `dip run` of the experiment stops at once with one line while the first fits;
    after a SIGKILL the next run starts (no stale lock), resumes, and leaves nothing hidden behind."""
    ws = tiny_workspace(tmp_path / "ws", camera64, iterations=1000)
    first = dip("run", "denoise_s25", cwd=ws)
    started(ws / "results" / "denoise_s25" / ".dip-lock", first)
    second = dip("run", "denoise_s25", cwd=ws)
    out2, err2 = second.communicate(timeout=120)
    assert second.returncode == 2 and error_lines(out2 + err2) == [
        f"error: results/denoise_s25 is being written by another dip process (pid {first.pid}); wait until it ends, or choose another output"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = dip("run", "denoise_s25", cwd=ws)
    out3, err3 = third.communicate(timeout=600)
    assert third.returncode == 0, err3
    counts = re.search(r"denoise_s25 \(active\): (\d+) run, (\d+) reused", out3)
    assert counts and int(counts[1]) + int(counts[2]) == 4, out3
    results = ws / "results" / "denoise_s25"
    assert sorted(p.name for p in results.iterdir()) == ["a", "b", "experiment.json"]
    assert all(sorted(p.name for p in (results / i).iterdir()) == ["seed_0", "seed_1"] for i in "ab")
