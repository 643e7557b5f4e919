"""A *part*: the finished fits of one GPU run (or of a workspace), self-describing, so that any
checkout can verify it and merge it into a bundle (``dip publish PART --into BUNDLE``).

A part is a folder, or a ``.tar.gz`` of one folder::

    part.json      {"format": "dip-results-part/1", "created": UTC ISO, "commit": sha | null,
                    "machine": {"device", "device_name", "torch", "cuda", "hostname"},
                    "profile", "params_sha256": sha | null,
                    "experiments": {exp: {"task", "images": [every image of exp in the profile]}},
                    "fits": {"<exp>/<image>/seed_<s>": {"fit_key", "wall_seconds", "iterations",
                                                        "inputs": {case file: sha256}}},
                    "baselines": {"<exp>/<image>": {"inputs": {case file: sha256}, "methods": [...]}},  (optional)
                    "files": {relative path: sha256}}           every other file of the part
    data/profile.json
    data/corrupted/<exp>/experiment.json                    every experiment of ``experiments``
    data/corrupted/<exp>/<image>/meta.json, ground_truth.png   each image with a fit or baselines here
    results/<exp>/<image>/seed_<s>/run.json, curve.csv, restored.png, final.png?, snapshots/iter_NNNNN.png?
    baselines/<exp>/<image>/<method>.png, <method>.json     the classical methods of ``baselines``

``inputs`` are the sha256 of the files of the corrupted case folder the fit (or the baselines)
ran on, so that a reader can prove two results used the same inputs.

:func:`open_part` verifies a part completely before anything uses it: the format, the type of
every JSON field it reads, every file's sha256 against ``files``, that nothing else is there,
no link, no absolute path, no ``..``, sizes, and image dimensions against ``meta.json``; a
tarball's members are checked before one byte is extracted, and extracted by hand (never
``extractall``). :func:`check_listing`, :func:`check_fit_files` and the other ``check_*`` are
the checks that ``dip check-bundle`` (:mod:`pipeline.outputs.check`) makes of a bundle's files
too. Parts are written by :mod:`pipeline.outputs.part_writer`.
"""

from __future__ import annotations

import errno
import lzma
import math
import re
import tarfile
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from pipeline import layout
from pipeline.images.manifest import SAFE_NAME
from pipeline.outputs.safe import MAX_FILE_BYTES, Fields, Unsafe, is_hex64, load_json, read_inside, regular_file, rel_problem, sha256_bytes, walk
from pipeline.settings import PROFILE_FILE

PART_FORMAT = "dip-results-part/1"
PART_JSON = layout.PART_JSON
REL = layout.Tree(PurePosixPath())  # the names of the files inside a part (and a bundle)
PROFILE = PROFILE_FILE.as_posix()
MAX_PART_BYTES = 512 << 20  # everything a part holds, unpacked
MAX_PART_FILES = 50_000
MAX_PIXELS = 4 << 20  # an image header claiming more (2048², dip restore's own limit; far above the paper's images) is not a result of this project
TASKS = ("denoise", "inpaint", "sr")
CLOCK_SKEW = timedelta(minutes=10)  # a part may be dated this far ahead of this machine's clock, no further

_N, _E = SAFE_NAME.pattern, re.escape
_FIT = rf"(?P<exp>{_N})/(?P<image>{_N})/{_E(layout.SEED_PREFIX)}(?P<seed>\d+)"
_SNAPSHOT = rf"{_E(layout.SNAPSHOTS)}/{_E(layout.SNAPSHOT_PREFIX)}\d{{5,}}{_E(layout.SNAPSHOT_SUFFIX)}"
PATTERNS = {
    "profile": re.compile(_E(PROFILE)),
    "experiment": re.compile(rf"{_E(layout.CORRUPTED)}/(?P<exp>{_N})/{_E(layout.EXPERIMENT_JSON)}"),
    "case": re.compile(rf"{_E(layout.CORRUPTED)}/(?P<exp>{_N})/(?P<image>{_N})/(?P<file>{_E(layout.META)}|{_E(layout.GROUND_TRUTH)})"),
    "fit": re.compile(rf"{_E(layout.RESULTS)}/{_FIT}/"
                      rf"(?P<file>{'|'.join(map(_E, (layout.RUN_JSON, layout.CURVE, layout.RESTORED, layout.FINAL)))}|{_SNAPSHOT})"),
    "baseline": re.compile(rf"{_E(layout.BASELINES)}/(?P<exp>{_N})/(?P<image>{_N})/(?P<method>{_N})\.(?P<ext>png|json)"),
}
FIT_ID = re.compile(_FIT)
IMAGE_ID = re.compile(rf"(?P<exp>{_N})/(?P<image>{_N})")


class PartError(ValueError):
    """A part that is refused: one line saying which part, which file, which key."""


def parse_time(text: str) -> datetime:
    """A UTC ISO time (``2026-05-01T12:00:00Z``) → aware datetime; ``ValueError`` otherwise."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def check_created(text: str, where: str) -> datetime:
    """A part's ``created``: a UTC ISO time not in the future (beyond :data:`CLOCK_SKEW`), since a
    part dated 9999 would replace every fit and make every later honest part "older" for ever."""
    try:
        t = parse_time(text)
    except ValueError:
        raise Unsafe(f"{where}: created is not a UTC ISO time") from None
    if t > datetime.now(timezone.utc) + CLOCK_SKEW:
        raise Unsafe(f"{where}: created {text[:40]} lies in the future; a part is dated when it is made (check that machine's clock)")
    return t


def psnr_bound(height: int, width: int) -> float:
    """The highest PSNR (dB) two different 8-bit images of ``height`` × ``width`` × 3 values can
    have: one value off by one level, :math:`20\\log_{10}255 + 10\\log_{10}(3HW)`. Every score of
    this project compares with an 8-bit ground truth (a float output matching it closer than that
    everywhere does not happen), and a smaller set of values (one channel, a shaved border) only
    lowers the true bound, so a higher number cannot be a score."""
    return 20 * math.log10(255) + 10 * math.log10(3 * height * width)


def check_scores(f: Fields, size: tuple[int, int] | None) -> None:
    """``psnr`` and ``ssim`` of one result that can be: SSIM in [-1, 1], PSNR finite and at most
    :func:`psnr_bound` of the image's ``size`` (height, width; a fixed cap when unknown)."""
    psnr, ssim = f.number("psnr"), f.number("ssim")
    bound = psnr_bound(*size) if size else psnr_bound(8192, 8192)
    if not -1.0 <= ssim <= 1.0:  # type: ignore[operator]
        raise Unsafe(f"{f.where}: ssim is {ssim}, outside [-1, 1]; not a score")
    if psnr > bound:  # type: ignore[operator]
        raise Unsafe(f"{f.where}: psnr is {psnr} dB, above {bound:.1f} dB, the most two different 8-bit images of this size can give; not a score")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Part:
    """A part: its folder (a tarball's is a scratch copy), the name it came from and its
    ``part.json`` (:func:`open_part` returns one once every check passed; :func:`verify`'s
    steps read the one being checked)."""

    root: Path
    name: str
    info: dict[str, Any]

    @property
    def created(self) -> datetime:
        return parse_time(self.info["created"])

    @property
    def experiments(self) -> dict[str, dict[str, Any]]:
        return self.info["experiments"]

    @property
    def fits(self) -> dict[str, dict[str, Any]]:
        return self.info["fits"]

    @property
    def baselines(self) -> dict[str, dict[str, Any]]:
        return self.info.get("baselines") or {}

    @property
    def files(self) -> dict[str, str]:
        return self.info["files"]

    @property
    def images(self) -> set[tuple[str, str]]:
        """(experiment, image) of every fit and baselines entry."""
        return {(fid.split("/")[0], fid.split("/")[1]) for fid in self.fits} | {(k.split("/")[0], k.split("/")[1]) for k in self.baselines}

    @property
    def ref(self) -> dict[str, str]:
        """How a bundle's manifest names this part: its ``created`` and file name."""
        return {"created": self.info["created"], "name": self.name}


# ------------------------------------------------------------------------------------ reading
def is_part(path: Path) -> bool:
    """A part folder (it holds ``part.json``) or a tarball (the reader decides whether it is one)."""
    path = Path(path)
    if path.is_symlink():
        return False
    return (path.is_dir() and (path / PART_JSON).is_file()) or (path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")))


def open_part(source: Path, scratch: Path) -> Part:
    """Verify the part ``source`` (a folder or a tarball, unpacked into the new folder ``scratch``)
    and return it; :class:`PartError` (one line) for anything a part must not be."""
    source = Path(source)
    try:
        if source.is_symlink():
            raise Unsafe("a link; give the part itself")
        if source.is_file():
            root = _unpack(source, Path(scratch))
        elif source.is_dir():
            root = source
        else:
            raise Unsafe("no such file or folder")
        return Part(root, source.name, verify(root))
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # unpacking: the disk, not the part
            raise
        if err.errno == errno.ENAMETOOLONG:
            raise PartError(f"part {source}: folders nested deeper than a path may be; a part is a few levels deep") from None
        raise PartError(f"part {source}: {err}") from None
    except Unsafe as err:
        raise PartError(f"part {source}: {err}") from None


MAX_META_HEADER = 4096  # a pax or GNU long-name header: a part's longest name is a few hundred bytes
_META_TYPES = (b"x", b"g", b"L", b"K")  # pax (per member, global), GNU long name, long link name


def _stream(tarball: Path) -> Any:
    """The uncompressed bytes of ``tarball`` as a file (gzip, bzip2, xz or none, by its magic bytes)."""
    import bz2
    import gzip

    with open(tarball, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(tarball, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(tarball, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(tarball, "rb")
    return open(tarball, "rb")


def _octal(field: bytes) -> int:
    """A tar header's number field: octal text, or base-256 when its first byte has the high bit."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def prescan(tarball: Path) -> None:
    """Read ``tarball``'s headers in one bounded pass, before :mod:`tarfile` parses any of them:
    :class:`Unsafe` for more than :data:`MAX_PART_FILES` headers of any kind (``./`` entries count),
    more than :data:`MAX_PART_BYTES` of contents (whatever the names), or a pax or GNU long-name
    header over :data:`MAX_META_HEADER` bytes (which Python's tarfile would read whole into memory,
    and parse in quadratic time: CVE-2024-6232). Memory stays at one block; time is one
    decompression of at most the size cap."""
    headers, total = 0, 0
    try:
        with _stream(tarball) as fh:
            while True:
                block = fh.read(512)
                if len(block) < 512 or block == bytes(512):
                    return  # the end (tarfile says whether a short one is damaged)
                headers += 1
                if headers > 2 * MAX_PART_FILES + 2:  # each file may carry a pax header
                    raise Unsafe(f"more than {MAX_PART_FILES} members")
                size, kind = _octal(block[124:136]), block[156:157]
                if kind in _META_TYPES and size > MAX_META_HEADER:
                    raise Unsafe(f"a {'pax' if kind in (b'x', b'g') else 'long-name'} header of {size:,} bytes (at most {MAX_META_HEADER:,})")
                total += size
                if total > MAX_PART_BYTES:
                    raise Unsafe(f"unpacks to more than {MAX_PART_BYTES >> 20} MiB")
                left = (size + 511) // 512 * 512
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as err:
        if isinstance(err, Unsafe):
            raise
        raise Unsafe(f"not a readable tar archive ({type(err).__name__})") from None


def _unpack(tarball: Path, scratch: Path) -> Path:
    """Check every member of ``tarball`` (one top folder, regular files and folders only, safe
    names, sizes), then copy the files out by hand into ``scratch``; returns the top folder."""
    prescan(tarball)
    try:
        tar = tarfile.open(tarball, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise Unsafe(f"not a readable tar archive ({type(err).__name__})") from None
    with tar:
        try:
            members = _members(tar)
        except tarfile.TarError as err:
            raise Unsafe(f"a damaged tar archive ({err})") from None
        tops = {name.split("/")[0] for name, _ in members}
        if len(tops) != 1:
            raise Unsafe(f"holds {len(tops)} top-level entries; a part is a tarball of one folder")
        scratch.mkdir(parents=True)
        for name, m in members:
            _extract(tar, name, m, scratch / name)
    top = scratch / tops.pop()
    if not top.is_dir():
        raise Unsafe("is a tarball of one file, not of a part folder")
    return top


def _members(tar: tarfile.TarFile) -> list[tuple[str, tarfile.TarInfo]]:
    """Every member of ``tar`` with its name (``./`` and a folder's ``/`` taken off), checked
    before anything is extracted: counts and sizes, safe names, regular files and folders only, no
    name twice."""
    members: list[tuple[str, tarfile.TarInfo]] = []
    seen, total = set(), 0
    for count, m in enumerate(tar, 1):
        if count > MAX_PART_FILES:  # every member counts, "./" too
            raise Unsafe(f"more than {MAX_PART_FILES} members")
        total += m.size
        if total > MAX_PART_BYTES:
            raise Unsafe(f"unpacks to more than {MAX_PART_BYTES >> 20} MiB")
        name = m.name[2:] if m.name.startswith("./") else m.name
        name = name.rstrip("/") if m.isdir() else name
        if not name:
            if not m.isdir():
                raise Unsafe(f"member {m.name[:40]!r} is a file without a name")
            continue
        why = rel_problem(name)
        if why:
            raise Unsafe(f"member {name!r} {why}")
        if not (m.isfile() or m.isdir()) or m.type == tarfile.GNUTYPE_SPARSE:
            raise Unsafe(f"member {name} is a link or special file; a part holds regular files only")
        if name in seen:
            raise Unsafe(f"member {name} appears twice")
        seen.add(name)
        if m.size > MAX_FILE_BYTES:
            raise Unsafe(f"member {name} is larger than {MAX_FILE_BYTES >> 20} MiB")
        members.append((name, m))
    return members


def _extract(tar: tarfile.TarFile, name: str, m: tarfile.TarInfo, dest: Path) -> None:
    """Write the checked member ``m`` (``name``) to ``dest``, never over another file."""
    try:
        (dest if m.isdir() else dest.parent).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # p/part.json/child: a file that would be a folder
        raise Unsafe(f"member {name} lies inside a file of the tarball; a part is a folder of regular files") from None
    if m.isdir():
        return
    src = tar.extractfile(m)
    if src is None:
        raise Unsafe(f"member {name} cannot be read")
    data = src.read(m.size + 1)
    if len(data) != m.size:
        raise Unsafe(f"member {name} is not {m.size} bytes long")
    try:
        with open(dest, "xb") as fh:  # "x": never overwrite (a folder and a file of the same name)
            fh.write(data)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise Unsafe(f"member {name} is both a file and a folder") from None
    except OSError as err:  # a full disk: name the file being written, not the tarball
        raise OSError(err.errno, err.strerror, str(dest)) from None


def _image_size(root: Path, rel: str) -> tuple[int, int]:
    """(height, width) from an image file's header (not decoded); :class:`Unsafe` above :data:`MAX_PIXELS`."""
    from PIL import Image

    too_many = f"more than the limit of {MAX_PIXELS:,} (nothing was decoded)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below, from the header
            with Image.open(regular_file(root, rel)) as im:
                w, h = im.size
    except Unsafe:
        raise
    except Image.DecompressionBombError:
        raise Unsafe(f"{rel}: claims {too_many}") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds for a bad header
        raise Unsafe(f"{rel}: not a readable image ({type(err).__name__})") from None
    if w * h > MAX_PIXELS:
        raise Unsafe(f"{rel}: claims {w}x{h} = {w * h:,} pixels, {too_many}")
    return h, w


def check_inputs(f: Fields) -> None:
    """``inputs`` of a fit or baselines entry: case file names and their sha256."""
    for name, digest in (f.mapping("inputs") or {}).items():
        if not SAFE_NAME.fullmatch(name) or not is_hex64(digest):
            raise Unsafe(f"{f.where}: inputs maps {name!r} to {str(digest)[:20]!r}; expected a case file name and its sha256")


def check_fit_entry(f: Fields) -> None:
    """A fit's entry in ``part.json`` or a bundle's manifest: what the merge and the metrics read."""
    f.text("fit_key")
    f.number("wall_seconds")
    f.integer("iterations")
    check_inputs(f)


def check_baseline_entry(f: Fields) -> list[str]:
    """A baselines entry in ``part.json`` or a bundle's manifest; returns its methods."""
    check_inputs(f)
    methods = f.strings("methods")
    for method in methods:
        if not SAFE_NAME.fullmatch(method):
            raise Unsafe(f"{f.where}: methods holds {method[:40]!r}")
    return methods


def kind_of(rel: str) -> tuple[str, dict[str, str]] | None:
    """Which file of :data:`PATTERNS` ``rel`` is (its kind and the names in its path), or ``None``."""
    return next(((k, m.groupdict()) for k, p in PATTERNS.items() if (m := p.fullmatch(rel))), None)


def check_listing(root: Path, listed: dict[str, tuple[Any, Any]], name: str,
                  unlisted_ok: Iterable[str] = ()) -> tuple[dict[str, int], list[str]]:
    """The one check of a part's or a bundle's files against its list ``name`` (``part.json``,
    ``manifest.json``): ``listed`` maps each path to its (sha256, size or ``None``). Returns the
    size of each listed file that is what the list says, and one line per problem: a path that is
    not a plain relative one (never opened), no sha256, a file missing, unreadable, changed, a
    link or special file anywhere (never followed), a file not listed (but ``unlisted_ok``)."""
    sizes: dict[str, int] = {}
    problems: list[str] = []
    for rel, (digest, size) in sorted(listed.items()):
        why = rel_problem(rel)
        if why:
            holder = "part" if name == PART_JSON else "bundle"
            problems.append(f"{name}: files names {str(rel)[:80]!r}, which {why}; not opened (a {holder} holds only its own files)")
        elif not is_hex64(digest):
            problems.append(f"{name}: files.{rel} is not a sha256")
        else:
            try:
                data = read_inside(root, rel)
            except FileNotFoundError:
                problems.append(f"{rel}: listed in {name} but missing")
                continue
            except Unsafe as err:
                problems.append(str(err))
                continue
            except OSError as err:
                problems.append(f"{rel}: cannot be read ({err.strerror})")
                continue
            if sha256_bytes(data) != digest or size not in (None, len(data)):
                problems.append(f"{rel}: its sha256 is not the one in {name} (the file changed)")
            else:
                sizes[rel] = len(data)
    present, found = walk(root)
    skip = {name, *unlisted_ok}
    return sizes, problems + found + [f"{rel}: not listed in {name} files" for rel in present if rel not in listed and rel not in skip]


def check_fit_files(root: Path, fid: str, fit_key: str, size: tuple[int, int]) -> Fields:
    """A fit's ``run.json`` (:func:`check_run`, of this fit and ``fit_key``: a run.json without its
    key could claim any settings) and ``curve.csv`` in the part or bundle ``root``."""
    exp, image, seed = fid.split("/")
    run_dir = REL.fit(fid)
    where = str(run_dir.run_json)
    run = check_run(load_json(root, where), where, int(seed.removeprefix(layout.SEED_PREFIX)), size)
    run.text("fit_key")
    run.equals("fit_key", fit_key)
    run.equals("experiment", exp)
    run.equals("image", image)
    check_curve(read_inside(root, str(run_dir.curve)), str(run_dir.curve))
    return run


def check_image_size(root: Path, rel: str, size: tuple[int, int]) -> None:
    """The header of the image ``rel`` gives the (height, width) of its case's ``meta.json``."""
    got = _image_size(root, rel)
    if got != size:
        raise Unsafe(f"{rel}: is {got[1]}x{got[0]}, but {layout.META} gives size {list(size)}")


def verify(root: Path) -> dict[str, Any]:
    """``part.json`` of the part folder ``root`` once every check of :func:`open_part` passed;
    :class:`Unsafe` naming the file (and key) of the first problem otherwise."""
    part = Part(root, root.name, _read_part_json(load_json(root, PART_JSON)))
    present, _ = walk(root)
    if len(present) > MAX_PART_FILES or sum((root / rel).stat().st_size for rel in present) > MAX_PART_BYTES:
        raise Unsafe(f"holds more than {MAX_PART_FILES} files or {MAX_PART_BYTES >> 20} MiB")
    _, problems = check_listing(root, {rel: (digest, None) for rel, digest in part.files.items()}, PART_JSON)
    if problems:
        raise Unsafe(problems[0])
    kinds = _kinds(part)
    _check_complete(part)
    sizes = _check_records(root, part)
    for rel, (_, g) in kinds.items():
        if rel.endswith(".png") and (g.get("exp"), g.get("image")) in sizes:
            check_image_size(root, rel, sizes[(g["exp"], g["image"])])
    return part.info


def _read_part_json(info: Any) -> dict[str, Any]:
    """``part.json`` once the type of every field that the merge reads is checked."""
    f = Fields(info, PART_JSON)
    if info.get("format") != PART_FORMAT:
        raise Unsafe(f"{PART_JSON}: format is {str(info.get('format'))[:40]!r}, not {PART_FORMAT!r}")
    check_created(f.text("created") or "", PART_JSON)
    f.text("commit", optional=True)
    f.text("params_sha256", optional=True)
    f.text("profile")
    machine = Fields(f.mapping("machine"), f"{PART_JSON} machine")
    for key in machine.obj:
        machine.text(key, optional=True)
    experiments = f.mapping("experiments") or {}
    for exp, entry in experiments.items():
        e = Fields(entry, f"{PART_JSON} experiments.{exp}")
        if not SAFE_NAME.fullmatch(exp) or e.text("task") not in TASKS:
            raise Unsafe(f"{PART_JSON}: experiments.{exp[:40]} is not an experiment id with a task of {', '.join(TASKS)}")
        for image in e.strings("images"):
            if not SAFE_NAME.fullmatch(image):
                raise Unsafe(f"{PART_JSON}: experiments.{exp}.images holds {image[:40]!r}, not an image name")
    fits = f.mapping("fits") or {}
    for fid, entry in fits.items():
        m = FIT_ID.fullmatch(fid)
        if not m or m["exp"] not in experiments or m["image"] not in experiments[m["exp"]]["images"]:
            raise Unsafe(f"{PART_JSON}: fits.{fid[:80]} is not <experiment>/<image>/seed_<s> of an image in experiments")
        check_fit_entry(Fields(entry, f"{PART_JSON} fits.{fid}"))
    baselines = f.mapping("baselines", optional=True) or {}
    for key, entry in baselines.items():
        if not IMAGE_ID.fullmatch(key):
            raise Unsafe(f"{PART_JSON}: baselines.{key[:80]} is not <experiment>/<image>")
        check_baseline_entry(Fields(entry, f"{PART_JSON} baselines.{key}"))
    if len(f.mapping("files") or {}) > MAX_PART_FILES:
        raise Unsafe(f"{PART_JSON}: lists more than {MAX_PART_FILES} files")
    return info


def _kinds(part: Part) -> dict[str, tuple[str, dict[str, str]]]:
    """The kind of each listed file (:data:`PATTERNS`), each belonging to something ``part.json`` describes."""
    kinds: dict[str, tuple[str, dict[str, str]]] = {}
    images = part.images
    for rel in part.files:
        kind = kinds[rel] = kind_of(rel)  # type: ignore[assignment]
        if kind is None:
            raise Unsafe(f"{rel}: not a file a part holds (docs/publishing.md)")
        what, g = kind
        methods = part.baselines.get(f"{g.get('exp')}/{g.get('image')}", {}).get("methods", [])
        if what == "experiment" and g["exp"] not in part.experiments:
            raise Unsafe(f"{rel}: its experiment is not in {PART_JSON} experiments")
        if what == "case" and (g["exp"], g["image"]) not in images:
            raise Unsafe(f"{rel}: no fit or baseline of this image in {PART_JSON}")
        if what == "fit" and layout.fit_id(g["exp"], g["image"], g["seed"]) not in part.fits:
            raise Unsafe(f"{rel}: its fit is not in {PART_JSON} fits")
        if what == "baseline" and g["method"] not in methods:
            raise Unsafe(f"{rel}: not a method of {PART_JSON} baselines")
    return kinds


def _check_complete(part: Part) -> None:
    """Every file a part must hold of its experiments, fits and baselines is listed."""
    need = [PROFILE] + [str(REL.corrupted_of(e).record) for e in part.experiments]
    for fid in part.fits:
        exp, image, _ = fid.split("/")
        run_dir = REL.fit(fid)
        need += [str(p) for p in (*run_dir.records, run_dir.restored, REL.case(exp, image).meta)]
    for key, entry in part.baselines.items():
        exp, image = key.split("/")
        need += [str(REL.case(exp, image).meta), str(REL.case(exp, image).ground_truth)]
        need += [str(p) for m in entry["methods"] for p in (REL.baselines_of(exp).png(image, m), REL.baselines_of(exp).record(image, m))]
    for rel in need:
        if rel not in part.files:
            raise Unsafe(f"{rel}: missing (every part holds it; see docs/publishing.md)")


def _check_records(root: Path, part: Part) -> dict[tuple[str, str], tuple[int, int]]:
    """The JSON files and curves that the merge and the metrics read; returns each image's size."""
    Fields(load_json(root, PROFILE), PROFILE).equals("profile", part.info["profile"])
    for exp, entry in part.experiments.items():
        where = str(REL.corrupted_of(exp).record)
        e = Fields(load_json(root, where), where)
        e.equals("experiment", exp)
        e.equals("task", entry["task"])
        if e.strings("images") != entry["images"]:
            raise Unsafe(f"{where}: images differ from {PART_JSON} experiments.{exp}.images")
    sizes = {(exp, image): check_meta(load_json(root, str(REL.case(exp, image).meta)), str(REL.case(exp, image).meta), exp, image)
             for exp, image in sorted(part.images)}
    for fid, entry in part.fits.items():
        exp, image, _ = fid.split("/")
        run = check_fit_files(root, fid, entry["fit_key"], sizes[(exp, image)])
        truth = str(REL.case(exp, image).ground_truth)
        if run.has("metrics") and truth not in part.files:
            raise Unsafe(f"{truth}: missing, but {REL.fit(fid).run_json} has metrics")
    for key, entry in part.baselines.items():
        exp, image = key.split("/")
        for method in entry["methods"]:
            rel = str(REL.baselines_of(exp).record(image, method))
            Fields(load_json(root, rel), rel).equals("method", method)
    return sizes

def check_meta(meta: Any, where: str, exp: str, image: str) -> tuple[int, int]:
    """The fields of a case's ``meta.json`` that readers use; returns its size (H, W)."""
    f = Fields(meta, where)
    f.equals("experiment", exp)
    f.equals("image", image)
    if f.text("task") not in TASKS:
        raise Unsafe(f"{where}: task is {str(meta.get('task'))[:30]!r}, not one of {', '.join(TASKS)}")
    if meta["task"] == "sr":
        f.integer("factor", minimum=1)
    size = meta.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise Unsafe(f"{where}: size is {str(size)[:40]}, not [height, width]")
    if "ground_truth" in meta and not isinstance(meta["ground_truth"], bool):
        raise Unsafe(f"{where}: ground_truth is {str(meta['ground_truth'])[:20]}, not true or false")
    return size[0], size[1]


def check_run(run: Any, where: str, seed: int, size: tuple[int, int] | None = None) -> Fields:
    """The fields of a fit's ``run.json`` that the metrics read (``wall_seconds``, ``metrics``: scores
    that can be, :func:`check_scores`, for an image of ``size``)."""
    f = Fields(run, where)
    f.equals("seed", seed)
    f.number("wall_seconds")
    for key in ("iterations_run",):
        f.integer(key, optional=True)
    for key, value in (f.mapping("metrics", optional=True) or {}).items():
        check_scores(Fields(value, f"{where} metrics.{key}"), size)
    return f


def check_curve(data: bytes, where: str) -> None:
    """``curve.csv`` is UTF-8 CSV whose header starts with ``iteration, loss``."""
    try:
        header = data.decode("utf-8").split("\n", 1)[0].strip().split(",")
    except UnicodeDecodeError:
        raise Unsafe(f"{where}: not UTF-8 text") from None
    if header[:2] != ["iteration", "loss"]:
        raise Unsafe(f"{where}: its header is not iteration,loss,…")


# ------------------------------------------------------------------------------------ provenance
def _cuda(versions: dict[str, Any]) -> str | None:
    """``versions.cuda`` where run.json records it, else what torch's local version says
    (``2.5.1+cu124`` → ``12.4``), else ``None`` (a CPU build)."""
    if versions.get("cuda"):
        return str(versions["cuda"])
    m = re.search(r"\+cu(\d+)(\d)$", str(versions.get("torch", "")))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def fit_provenance(run: dict[str, Any]) -> dict[str, Any]:
    """device, device_name, torch and cuda of a fit's run.json."""
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    return {"device": run.get("device"), "device_name": run.get("device_name"), "torch": versions.get("torch"), "cuda": _cuda(versions)}
