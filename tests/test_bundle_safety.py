"""Parts and bundles are what strangers send each other: nothing outside one is ever read, a
tarball is checked before one byte is extracted, and every refusal is one ``error:`` line naming
the file and the key, never a traceback."""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bundles import REPO, TABLE1, files, merge, rewrite_manifest
from bundles import bundle, parts, workspace  # noqa: F401 - the shared fixtures
from pipeline import layout
from pipeline.cli import app
from pipeline.outputs.check import check_bundle
from pipeline.outputs.parts import PART_JSON, PartError
from pipeline.outputs.safe import sha256_bytes

OPTIONS = ["--params", str(REPO / "params.yaml"), "--paper", str(REPO / "data" / "paper.yaml")]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real paths of every file opened from now on (``open``, ``io.open``, ``os.open``); a
    test clears it once it has made its files."""
    seen: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, (str, bytes, os.PathLike)):
            seen.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(os.path.realpath(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    return seen


def one_error_line(args: list[str], code: int = 2) -> str:
    res = CliRunner().invoke(app, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == code and lines and all(line.startswith("error: ") for line in lines), res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (RecursionError, KeyError, TypeError, AttributeError))
    return res.output


def refused(source: Path, target: Path, match: str) -> None:
    """Merging ``source`` into the bundle ``target`` is one error line matching ``match``; the bundle is unchanged."""
    before = files(target) if target.exists() else None
    out = one_error_line(["publish", str(source), "--into", str(target), *OPTIONS])
    assert out.count("error:") == 1 and match in out, out
    assert (files(target) if target.exists() else None) == before
    assert not [p for p in target.parent.iterdir() if p.name.endswith((".tmp", ".old"))]


def _copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "b"))


def _relist(part_dir: Path, rel: str) -> None:
    """Give ``rel`` its new sha256 in part.json (a forger's part: consistent, but hostile)."""
    info = json.loads((part_dir / PART_JSON).read_text())
    info["files"][rel] = sha256_bytes((part_dir / rel).read_bytes())
    (part_dir / PART_JSON).write_text(json.dumps(info))


# ------------------------------------------------------------------------------------- tarballs
def _tarball(dest: Path, part_dir: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(part_dir, arcname="p")
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"evil", link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("member, match", [
    (_member("p/results/evil", tarfile.SYMTYPE, link="/etc/passwd"), "is a link or special file"),
    (_member("p/results/hard", tarfile.LNKTYPE, link="p/part.json"), "is a link or special file"),
    (_member("p/../evil.txt"), "has an empty, '.' or '..' part"),
    (_member("/tmp/dip-evil.txt"), "is an absolute path"),
    (_member("q/other.txt"), "holds 2 top-level entries"),
    (_member("p/fifo", tarfile.FIFOTYPE), "is a link or special file"),
], ids=["symlink", "hardlink", "dotdot", "absolute", "two-folders", "fifo"])
def test_a_hostile_tarball_is_refused_before_extraction(parts: dict[str, Path], bundle: Path, tmp_path: Path,
                                                         member: tuple[tarfile.TarInfo, bytes | None], match: str) -> None:
    tarball = _tarball(tmp_path / "run.tar.gz", parts["first"], [member])
    refused(tarball, _copy_bundle(bundle, tmp_path), match)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/dip-evil.txt").exists()


def test_a_damaged_tarball_is_one_line(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "run.tar.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    refused(tmp_path / "run.tar.gz", _copy_bundle(bundle, tmp_path), "not a readable tar archive")


# ------------------------------------------------------------------------------------- part folders
def _part_copy(parts: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(parts["first"], tmp_path / "part"))


def test_a_file_not_listed_is_refused(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    p = _part_copy(parts, tmp_path)
    (p / "results" / TABLE1 / "notes.txt").write_text("not listed")
    refused(p, _copy_bundle(bundle, tmp_path), f"results/{TABLE1}/notes.txt: not listed in part.json files")


def test_a_changed_file_is_refused(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    p = _part_copy(parts, tmp_path)
    curve = next(p.glob("results/*/*/seed_*/curve.csv"))
    curve.write_text(curve.read_text() + "1,2\n")
    refused(p, _copy_bundle(bundle, tmp_path), f"{curve.relative_to(p).as_posix()}: its sha256 is not the one in part.json")


def test_a_link_in_a_part_is_refused_and_not_followed(parts: dict[str, Path], bundle: Path, tmp_path: Path, opened: list[str]) -> None:
    p = _part_copy(parts, tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes((next(p.glob("results/*/*/seed_*/restored.png"))).read_bytes())
    target = next(p.glob("results/*/*/seed_*/restored.png"))
    target.unlink()
    target.symlink_to(secret)
    opened.clear()
    refused(p, _copy_bundle(bundle, tmp_path), f"{target.relative_to(p).as_posix()}: a link")
    assert str(secret) not in opened


@pytest.mark.parametrize("rel, match", [("../outside.txt", "has an empty, '.' or '..' part"), ("/etc/passwd", "is an absolute path"),
                                        ("results/x\\..\\y", "has a backslash")])
def test_a_path_outside_the_part_is_refused(parts: dict[str, Path], bundle: Path, tmp_path: Path, opened: list[str], rel: str, match: str) -> None:
    p = _part_copy(parts, tmp_path)
    (tmp_path / "outside.txt").write_text("secret")
    info = json.loads((p / PART_JSON).read_text())
    info["files"][rel] = "0" * 64
    (p / PART_JSON).write_text(json.dumps(info))
    b = _copy_bundle(bundle, tmp_path)
    opened.clear()
    refused(p, b, match)
    assert str(tmp_path / "outside.txt") not in opened and "/etc/passwd" not in opened


def _rel_of(p: Path, what: str) -> str:
    return {"part.json": PART_JSON, "profile.json": "data/profile.json",
            "experiment.json": f"{layout.CORRUPTED}/{TABLE1}/experiment.json",
            "meta.json": f"{layout.CORRUPTED}/{TABLE1}/camera/meta.json",
            "run.json": f"{layout.RESULTS}/{TABLE1}/camera/seed_0/run.json"}[what]


@pytest.mark.parametrize("what", ["part.json", "profile.json", "experiment.json", "meta.json", "run.json"])
def test_json_that_is_a_list_is_one_line_naming_the_file(parts: dict[str, Path], bundle: Path, tmp_path: Path, what: str) -> None:
    p = _part_copy(parts, tmp_path)
    rel = _rel_of(p, what)
    (p / rel).write_text("[1, 2]")
    if rel != PART_JSON:
        _relist(p, rel)
    refused(p, _copy_bundle(bundle, tmp_path), f"{rel}: a JSON list, not an object")


@pytest.mark.parametrize("what", ["profile.json", "experiment.json", "run.json"])
def test_a_workspace_with_json_that_is_a_list_is_one_line(workspace: Path, tmp_path: Path, what: str) -> None:
    ws = Path(shutil.copytree(workspace, tmp_path / "ws"))
    rel = _rel_of(ws, what)
    (ws / rel).write_text("[1, 2]")
    out = one_error_line(["publish", str(ws), "--into", str(tmp_path / layout.PUBLISHED / "b"), *OPTIONS])
    assert f"{ws}/{rel}: a JSON list, not a mapping" in " ".join(out.split()), out
    assert not (tmp_path / layout.PUBLISHED / "b").exists()


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(size=[48]), "meta.json: size is [48], not [height, width]"),
    (lambda m: m.update(task="deblur"), "meta.json: task is 'deblur'"),
    (lambda m: m.update(image="other"), "meta.json: image is 'other', not 'camera'"),
])
def test_a_bad_field_in_a_part_is_one_line_naming_the_key(parts: dict[str, Path], bundle: Path, tmp_path: Path, change, match: str) -> None:  # noqa: ANN001
    p = _part_copy(parts, tmp_path)
    rel = _rel_of(p, "meta.json")
    meta = json.loads((p / rel).read_text())
    change(meta)
    (p / rel).write_text(json.dumps(meta))
    _relist(p, rel)
    refused(p, _copy_bundle(bundle, tmp_path), match)


def test_a_deeply_nested_part_json_is_one_line(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    p = _part_copy(parts, tmp_path)
    (p / PART_JSON).write_text("[" * 100_000 + "]" * 100_000)
    refused(p, _copy_bundle(bundle, tmp_path), "part.json: nested more than 32 levels deep")


def test_an_image_of_the_wrong_size_is_refused(parts: dict[str, Path], bundle: Path, tmp_path: Path) -> None:
    from PIL import Image

    p = _part_copy(parts, tmp_path)
    rel = f"{layout.RESULTS}/{TABLE1}/camera/seed_0/restored.png"
    Image.new("L", (5, 7)).save(p / rel)
    _relist(p, rel)
    refused(p, _copy_bundle(bundle, tmp_path), f"{rel}: is 5x7, but meta.json gives size [48, 48]")


def test_the_python_api_raises_a_part_error(parts: dict[str, Path], tmp_path: Path) -> None:
    p = _part_copy(parts, tmp_path)
    (p / "extra").write_text("x")
    with pytest.raises(PartError, match=r"^part .*part: extra: not listed in part\.json files$"):
        merge([p], tmp_path / layout.PUBLISHED / "b")


# ------------------------------------------------------------------------------------- check-bundle
def test_check_bundle_never_opens_a_path_outside_the_bundle(bundle: Path, tmp_path: Path, opened: list[str]) -> None:
    b = _copy_bundle(bundle, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    rewrite_manifest(b, lambda m: m["files"].update({str(secret): {"sha256": "0" * 64, "bytes": 10},
                                                     "../../secret.txt": {"sha256": "0" * 64, "bytes": 10}}))
    opened.clear()
    problems = check_bundle(b)
    assert any(p.startswith("manifest.json: files names '/") and p.endswith("which is an absolute path; not opened (a bundle holds only its own files)")
               for p in problems), problems  # the path itself is shortened in the message when it is long
    assert "manifest.json: files names '../../secret.txt', which has an empty, '.' or '..' part; not opened (a bundle holds only its own files)" in problems
    assert str(secret) not in opened and not [p for p in problems if "sha256" in p]


def test_check_bundle_does_not_follow_a_linked_file(bundle: Path, tmp_path: Path, opened: list[str]) -> None:
    b = _copy_bundle(bundle, tmp_path)
    secret = tmp_path / "secret.md"
    secret.write_bytes((b / layout.METRICS / layout.REPORT_MD).read_bytes())  # even the right bytes are not read
    (b / layout.METRICS / layout.REPORT_MD).unlink()
    (b / layout.METRICS / layout.REPORT_MD).symlink_to(secret)
    opened.clear()
    problems = check_bundle(b)
    assert "metrics/report.md: a link (not followed)" in problems and "metrics/report.md: a link (a bundle or part holds none; it was not followed)" in problems
    assert str(secret) not in opened


def test_check_bundle_does_not_follow_a_linked_folder(bundle: Path, tmp_path: Path, opened: list[str]) -> None:
    b = _copy_bundle(bundle, tmp_path)
    outside = Path(shutil.move(str(b / layout.RESULTS / "sr_x4"), str(tmp_path / "outside")))
    (b / layout.RESULTS / "sr_x4").symlink_to(outside, target_is_directory=True)
    opened.clear()
    problems = check_bundle(b)
    assert "results/sr_x4: a link (a bundle or part holds none; it was not followed)" in problems
    assert any(p.startswith("results/sr_x4: a link (not followed)") for p in problems), problems
    assert not [p for p in opened if p.startswith(str(outside))]
    one_error_line(["check-bundle", str(b)], code=1)


def test_a_deeply_nested_manifest_is_one_line(bundle: Path, tmp_path: Path) -> None:
    b = _copy_bundle(bundle, tmp_path)
    (b / layout.BUNDLE_MANIFEST).write_text("{\"a\": " * 100_000 + "1" + "}" * 100_000)
    assert check_bundle(b) == ["manifest.json: nested more than 32 levels deep; not a file dip writes"]
    assert one_error_line(["check-bundle", str(b)], code=1).count("error:") == 1


def _edit(b: Path, rel: str, text: str) -> None:
    (b / rel).write_text(text)
    rewrite_manifest(b, lambda m: m["files"][rel].update(sha256=sha256_bytes(text.encode()), bytes=len(text.encode())))


@pytest.mark.parametrize("case, match", [
    ("short-row", "metrics/per_image.csv line 2: no method (a short row)"),
    ("meta-list", "data/corrupted/sr_x4/coffee/meta.json: a JSON list, not an object (mapping)"),
    ("factor-list", "data/corrupted/sr_x4/coffee/meta.json: factor is [4], not an integer >= 1"),
    ("factor-inf", "data/corrupted/sr_x4/coffee/meta.json: factor is inf, not an integer >= 1"),
    ("run-list", "results/sr_x4/coffee/seed_0/run.json: a JSON list, not an object (mapping)"),
    ("manifest-files-list", "manifest.json: files is not an object (mapping)"),
])
def test_malformed_bundle_files_are_one_line_each(bundle: Path, tmp_path: Path, case: str, match: str) -> None:
    b = _copy_bundle(bundle, tmp_path)
    meta = "data/corrupted/sr_x4/coffee/meta.json"
    if case == "short-row":
        text = (b / layout.METRICS / layout.PER_IMAGE_CSV).read_text().splitlines()
        _edit(b, f"{layout.METRICS}/{layout.PER_IMAGE_CSV}", "\n".join([text[0], "sr_x4,coffee"] + text[1:]) + "\n")
    elif case == "meta-list":
        _edit(b, meta, "[1]")
    elif case == "factor-list":
        _edit(b, meta, (b / meta).read_text().replace('"factor": 4', '"factor": [4]'))
    elif case == "factor-inf":
        _edit(b, meta, (b / meta).read_text().replace('"factor": 4', '"factor": Infinity'))
    elif case == "run-list":
        _edit(b, "results/sr_x4/coffee/seed_0/run.json", "[]")
    else:
        rewrite_manifest(b, lambda m: m.update(files=[]))
    problems = check_bundle(b)
    assert match in problems, problems
    out = one_error_line(["check-bundle", str(b)], code=1)
    assert match in out


def test_a_full_disk_names_the_bundles_file_not_the_part(parts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    real_open = builtins.open

    def full(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "x" in mode and f"{os.sep}bundle{os.sep}" in str(file):
            handle = real_open(file, mode, *args, **kwargs)
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write() would: no file name
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full)
    out = one_error_line(["publish", str(parts["first"]), "--into", str(tmp_path / layout.PUBLISHED / "b"), *OPTIONS])
    assert f"{tmp_path / layout.PUBLISHED}/.b.merge-" in out and "No space left on device; choose an output folder on a writable disk" in out
    assert str(parts["first"]) not in out and not (tmp_path / layout.PUBLISHED / "b").exists()
