"""Issue 27 (part 3), bundles: a part cannot claim numbers that cannot be, date itself in the
future, redefine an experiment or leave out its fit key; check-bundle never decodes a huge image."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bundles import REPO, TABLE1, files, rewrite_manifest
from bundles import bundle, parts, workspace  # noqa: F401 - the shared fixtures
from pipeline import layout
from pipeline.cli import app
from pipeline.outputs.parts import PART_JSON, psnr_bound
from pipeline.outputs.safe import sha256_bytes

OPTIONS = ["--params", str(REPO / "params.yaml"), "--paper", str(REPO / "data" / "paper.yaml")]
RUN = f"{layout.RESULTS}/{TABLE1}/camera/seed_0/run.json"
EXPERIMENT = f"{layout.CORRUPTED}/{TABLE1}/experiment.json"


def _copies(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> tuple[Path, Path]:
    return Path(shutil.copytree(parts["first"], tmp_path / "part")), Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))


def _edit(part: Path, rel: str, change) -> None:  # noqa: ANN001
    """Change one JSON file of ``part`` and give it its new sha256 (a forger's consistent part)."""
    value = json.loads((part / rel).read_text())
    change(value)
    (part / rel).write_text(json.dumps(value))
    if rel != PART_JSON:
        info = json.loads((part / PART_JSON).read_text())
        info["files"][rel] = sha256_bytes((part / rel).read_bytes())
        (part / PART_JSON).write_text(json.dumps(info))


def _refused(part: Path, bundle: Path, match: str) -> None:
    before = files(bundle)
    res = CliRunner().invoke(app, ["publish", str(part), "--into", str(bundle), *OPTIONS])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.output
    assert files(bundle) == before


@pytest.mark.parametrize("psnr, ssim, match", [(99.0, 5.0, "ssim is 5.0, outside [-1, 1]"), (-math.inf, 0.5, "psnr is -inf"),
                                               (500.0, 0.9, "dB, the most two different 8-bit images")])
def test_scores_that_cannot_be_are_refused(parts, bundle, tmp_path: Path, psnr: float, ssim: float, match: str) -> None:  # noqa: ANN001, F811
    part, target = _copies(parts, bundle, tmp_path)
    _edit(part, RUN, lambda run: run["metrics"]["restored"].update(psnr=psnr, ssim=ssim))
    _refused(part, target, match)


def test_the_psnr_bound_is_that_of_one_level_off_in_one_value() -> None:
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    mse = np.mean(((a - b.astype(float)) / 255) ** 2)
    assert psnr_bound(4, 5) == pytest.approx(10 * math.log10(1 / mse))


def test_a_part_dated_in_the_future_is_refused(parts, bundle, tmp_path: Path) -> None:  # noqa: ANN001, F811
    part, target = _copies(parts, bundle, tmp_path)
    _edit(part, PART_JSON, lambda info: info.update(created="9999-12-31T00:00:00Z"))
    _refused(part, target, "created 9999-12-31T00:00:00Z lies in the future")


def test_a_run_json_without_its_fit_key_is_refused(parts, bundle, tmp_path: Path) -> None:  # noqa: ANN001, F811
    part, target = _copies(parts, bundle, tmp_path)
    _edit(part, RUN, lambda run: run.pop("fit_key"))
    _refused(part, target, "fit_key is '<missing>'")


def test_a_part_cannot_change_an_experiments_images(parts, bundle, tmp_path: Path) -> None:  # noqa: ANN001, F811
    part, target = _copies(parts, bundle, tmp_path)
    _edit(part, EXPERIMENT, lambda e: e.update(images=["camera", "coins", "moon", "page"]))  # 1 of 1 would become 1 of 4
    _edit(part, PART_JSON, lambda info: info["experiments"][TABLE1].update(images=["camera", "coins", "moon", "page"]))
    _refused(part, target, "gives inpaint_p50 other images or another task than the bundle")


def test_check_bundle_never_decodes_a_huge_image(bundle, tmp_path: Path) -> None:  # noqa: F811
    from pipeline.outputs.check import check_bundle

    target = Path(shutil.copytree(bundle, tmp_path / "b"))
    png = target / layout.RESULTS / TABLE1 / "camera" / "seed_0" / layout.RESTORED
    Image.new("L", (3000, 3000)).save(png)  # 9 M pixels, a few KB
    rel = png.relative_to(target).as_posix()
    rewrite_manifest(target, lambda m: m["files"].update({rel: {"bytes": png.stat().st_size, "sha256": sha256_bytes(png.read_bytes())}}))
    problems = check_bundle(target)
    assert any("more than the limit" in p and "nothing was decoded" in p for p in problems), problems


def test_the_report_marks_scores_the_bundle_cannot_rederive(bundle) -> None:  # noqa: F811
    from pipeline.outputs.check import check_bundle

    report = (bundle / layout.METRICS / layout.REPORT_MD).read_text()
    section = report.split("## Scores this bundle cannot re-derive", 1)[1]
    kept = f"{TABLE1}/camera/seed_0"  # the smoke policy keeps its restored.png: re-derived by check-bundle
    assert (bundle / layout.RESULTS / kept / layout.RESTORED).is_file() and f"`{kept}`" not in section
    previews = [p.parent.relative_to(bundle / layout.RESULTS).as_posix() for p in (bundle / layout.RESULTS).rglob(layout.RUN_JSON)
                if not (p.parent / layout.RESTORED).is_file() and "metrics" in json.loads(p.read_text())]
    assert previews and all(f"`{fid}`" in section for fid in previews)
    assert check_bundle(bundle) == []


# --- 16. odd lines and tracebacks --------------------------------------------------------------------

def _one_line(args: list[str], match: str) -> str:
    res = CliRunner().invoke(app, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.output
    assert len(lines[0]) < 600, len(lines[0])
    return lines[0]


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_max_mb_that_is_not_a_size_is_one_line(parts, tmp_path: Path, value: str) -> None:  # noqa: ANN001, F811
    _one_line(["publish", str(parts["first"]), "--into", str(tmp_path / "b"), "--max-mb", value, *OPTIONS], "--max-mb must be a positive number")


def test_a_tar_member_inside_a_file_names_no_scratch_path(parts, tmp_path: Path) -> None:  # noqa: ANN001, F811
    import io
    import tarfile

    tarball = tmp_path / "p.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(parts["first"], arcname="p")
        info = tarfile.TarInfo("p/part.json/child")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    line = _one_line(["publish", str(tarball), "--into", str(tmp_path / "b"), *OPTIONS], "p/part.json/child")
    assert ".merge-" not in line and ".tmp" not in line


def test_a_deeply_nested_bundle_manifest_is_one_line_for_publish_run(tmp_path: Path) -> None:
    from pipeline.outputs.publish_run import published_keys

    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / layout.BUNDLE_MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a JSON file; restore it from git"):
        published_keys(bundle)


def test_paper_as_a_yaml_list_is_refused(parts, tmp_path: Path) -> None:  # noqa: ANN001, F811
    paper = tmp_path / "paper.yaml"
    paper.write_text("- 1\n- 2\n")
    _one_line(["publish", str(parts["first"]), "--into", str(tmp_path / "b"), "--params", str(REPO / "params.yaml"), "--paper", str(paper)],
              "not a mapping of experiments")


def test_into_inside_a_part_leaves_no_lock_there(parts, tmp_path: Path) -> None:  # noqa: ANN001, F811
    part = Path(shutil.copytree(parts["first"], tmp_path / "part"))
    before = sorted(p.name for p in part.iterdir())
    CliRunner().invoke(app, ["publish", str(parts["second"]), "--into", str(part / "b"), *OPTIONS])
    assert sorted(p.name for p in part.iterdir() if p.name != "b") == before


def test_a_deep_folder_is_a_short_line(parts, tmp_path: Path) -> None:  # noqa: ANN001, F811
    import os

    part = Path(shutil.copytree(parts["first"], tmp_path / "part"))
    fds = [os.open(part / "results", os.O_RDONLY)]
    for _ in range(2100):  # deeper than a path may be written whole
        os.mkdir("a", dir_fd=fds[-1])
        fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
    try:
        _one_line(["publish", str(part), "--into", str(tmp_path / "b"), *OPTIONS], "nested deeper than a path may be")
    finally:  # bottom up: pytest's clean-up (recursive) would not get that deep
        os.close(fds.pop())
        while len(fds) > 0:
            os.rmdir("a", dir_fd=fds[-1])
            os.close(fds.pop())


def test_a_workspace_run_folder_linked_from_outside_is_refused(workspace, tmp_path: Path) -> None:  # noqa: ANN001, F811
    ws = Path(shutil.copytree(workspace, tmp_path / "ws", symlinks=True))
    run = next((ws / layout.RESULTS).rglob(layout.RUN_JSON)).parent
    outside = Path(shutil.move(str(run), str(tmp_path / "outside")))
    run.symlink_to(outside, target_is_directory=True)
    _one_line(["publish", str(ws), "--into", str(tmp_path / "b"), *OPTIONS], "link")
    assert not (tmp_path / "b").exists()


# --- 9. tarballs: bounded time and memory before tarfile parses a header -----------------------------

def _tar_with(dest: Path, part: Path, extra) -> Path:  # noqa: ANN001
    import io
    import tarfile

    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.add(part, arcname="p")
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def test_a_huge_pax_header_is_refused_at_once(parts, tmp_path: Path) -> None:  # noqa: ANN001, F811
    import tarfile
    import time

    info = tarfile.TarInfo("p/x.txt")
    info.pax_headers = {"comment": "1" * 320_000}  # CVE-2024-6232: minutes of tarfile's regex
    tarball = _tar_with(tmp_path / "p.tar.gz", parts["first"], [(info, b"")])
    start = time.monotonic()
    _one_line(["publish", str(tarball), "--into", str(tmp_path / "b"), *OPTIONS], "a pax header of")
    assert time.monotonic() - start < 20


def test_a_gnu_long_name_declaring_gigabytes_is_refused_unread(tmp_path: Path) -> None:
    import gzip

    header = bytearray(512)
    header[:13] = b"././@LongLink"
    header[100:108] = b"0000644\0"
    header[124:136] = b"%011o\0" % (3000 << 20)
    header[156:157] = b"L"
    header[257:263] = b"ustar "
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    tarball = tmp_path / "p.tar.gz"
    tarball.write_bytes(gzip.compress(bytes(header) + b"x" * 4096))
    _one_line(["publish", str(tarball), "--into", str(tmp_path / "b"), *OPTIONS], "a long-name header of 3,145,728,000 bytes")


def test_dot_members_count_toward_both_caps(parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001, F811
    import tarfile

    from pipeline.outputs import parts as parts_module

    files = sum(1 for p in parts["first"].rglob("*"))
    monkeypatch.setattr(parts_module, "MAX_PART_FILES", files + 5)
    dots = []
    for _ in range(3 * files + 20):
        info = tarfile.TarInfo("./")
        info.type = tarfile.DIRTYPE
        dots.append((info, None))
    tarball = _tar_with(tmp_path / "dots.tar.gz", parts["first"], dots)
    _one_line(["publish", str(tarball), "--into", str(tmp_path / "b"), *OPTIONS], f"more than {files + 5} members")
    total = sum(p.stat().st_size for p in parts["first"].rglob("*") if p.is_file())
    monkeypatch.setattr(parts_module, "MAX_PART_BYTES", total + 1000)
    big = tarfile.TarInfo("./")
    big.size = 5000
    tarball = _tar_with(tmp_path / "big.tar.gz", parts["first"], [(big, b"0" * 5000)])
    _one_line(["publish", str(tarball), "--into", str(tmp_path / "b2"), *OPTIONS], "unpacks to more than")
