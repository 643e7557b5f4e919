"""Peak memory and time of the commands that read files from strangers, on small hostile inputs.

Each case builds a small file that claims something huge (a tarball of 2,000,000 ``./`` members,
a long-name header declaring 3,000 MB, a 320 KB pax header, PNGs whose headers claim 12000² or
13000² pixels), runs the real command on it in a child process, and records the child's peak
resident memory (``wait4``'s ``ru_maxrss``), its wall time and its ``error:`` line. The reference
is ``dip check-bundle`` on the committed quick-profile bundle, untouched.

    python benchmarks/hostile_memory.py [--out benchmarks/results/hostile-memory-<machine>.json]

Exit status 1 if a case goes over ``--limit-mb`` (500) or does not end with the expected
``error:`` line. docs/publishing.md quotes the numbers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "results-published" / "quick-cpu"
OPTIONS = ["--params", str(REPO / "params.yaml"), "--paper", str(REPO / "data" / "paper.yaml")]


def png_of_zeros(path: Path, width: int, height: int, bit_depth: int = 8) -> Path:
    """A valid grey PNG of ``width`` × ``height`` zeros, streamed row by row (a few hundred KB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + width * bit_depth // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def dot_members(path: Path, count: int) -> Path:
    """A gzip tarball of ``count`` folder members named ``./`` (a few MB for millions)."""
    info = tarfile.TarInfo("./")
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    block = info.tobuf(format=tarfile.USTAR_FORMAT)
    batch = gzip.compress(block * 10_000, compresslevel=9)
    with open(path, "wb") as fh:  # concatenated gzip members are one stream
        for _ in range(count // 10_000):
            fh.write(batch)
        fh.write(gzip.compress(bytes(1024)))
    return path


def big_dot(path: Path, size: int) -> Path:
    """A gzip tarball of one ``./`` folder member carrying ``size`` bytes of zeros."""
    info = tarfile.TarInfo("./")
    info.type, info.mode, info.mtime, info.size = tarfile.DIRTYPE, 0o755, 0, size
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1 << 20)
    with open(path, "wb") as fh:
        fh.write(packer.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size >> 20):
            fh.write(packer.compress(zeros))
        fh.write(packer.compress(bytes(1024)) + packer.flush())
    return path


def long_name(path: Path, declared: int) -> Path:
    """A GNU long-name header declaring ``declared`` bytes, followed by 4 KB."""
    header = bytearray(512)
    header[:13] = b"././@LongLink"
    header[100:108] = b"0000644\0"
    header[124:136] = b"%011o\0" % declared
    header[156:157] = b"L"
    header[257:263] = b"ustar "
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    path.write_bytes(gzip.compress(bytes(header) + b"x" * 4096))
    return path


def pax_header(path: Path, length: int) -> Path:
    """A tarball whose one member carries a pax comment of ``length`` ones (CVE-2024-6232)."""
    import io

    info = tarfile.TarInfo("p/x.txt")
    info.pax_headers = {"comment": "1" * length}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    return path


def huge_pngs_bundle(folder: Path, side: int) -> Path:
    """The committed quick bundle with every ``restored.png`` replaced by a ``side``² PNG of zeros,
    the manifest's sizes and hashes updated (a consistent forgery)."""
    import hashlib

    from pipeline import layout

    bundle = Path(shutil.copytree(BUNDLE, folder / "bundle"))
    big = png_of_zeros(folder / "big.png", side, side)
    manifest = json.loads((bundle / layout.BUNDLE_MANIFEST).read_text())
    data = big.read_bytes()
    for png in bundle.rglob(layout.RESTORED):
        shutil.copyfile(big, png)
        manifest["files"][png.relative_to(bundle).as_posix()] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (bundle / layout.BUNDLE_MANIFEST).write_text(json.dumps(manifest))
    return bundle


def upload_command(png: Path) -> list[str]:
    """What the Restore page does with an uploaded file's bytes."""
    code = ("import sys; from dashboard.uploads import decode, UploadError\n"
            "try:\n    decode(sys.argv[1], open(sys.argv[1], 'rb').read())\n"
            "except UploadError as err:\n    print('error:', err); sys.exit(2)")
    return [sys.executable, "-c", code, str(png)]


def dip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def cases(tmp: Path) -> dict[str, tuple[Callable[[], list[str]], str]]:
    """name: (build the input and return the command, what its error line says)."""
    into = str(tmp / "into")
    return {
        "check-bundle, the committed quick bundle (reference)": (lambda: dip("check-bundle", str(BUNDLE)), ""),
        "publish: tarball of 2,000,000 './' members (gzip)": (
            lambda: dip("publish", str(dot_members(tmp / "dots.tar.gz", 2_000_000)), "--into", into, *OPTIONS), "more than 50000 members"),
        "publish: one './' member of 600 MB": (
            lambda: dip("publish", str(big_dot(tmp / "big.tar.gz", 600 << 20)), "--into", into, *OPTIONS), "unpacks to more than 512 MiB"),
        "publish: GNU long-name header declaring 3,000 MB": (
            lambda: dip("publish", str(long_name(tmp / "long.tar.gz", 3000 << 20)), "--into", into, *OPTIONS), "long-name header of"),
        "publish: pax header of 320,000 ones (CVE-2024-6232)": (
            lambda: dip("publish", str(pax_header(tmp / "pax.tar.gz", 320_000)), "--into", into, *OPTIONS), "pax header of"),
        "check-bundle: its 18 restored.png made 12000x12000 (140 KB each)": (
            lambda: dip("check-bundle", str(huge_pngs_bundle(tmp, 12_000))), "nothing was decoded"),
        "Restore page upload: 13000x13000 16-bit PNG": (
            lambda: upload_command(png_of_zeros(tmp / "up.png", 13_000, 13_000, 16)), "more than the limit"),
    }


def measure(command: list[str]) -> dict[str, object]:
    """Run ``command``; its peak RSS (MB), wall seconds, exit status and output's first error line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    lines = [line for line in out.splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("error:")), lines[-1] if lines else "")
    return {"peak_mb": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 2),
            "exit": os.waitstatus_to_exitcode(status), "line": error[:300]}


def _bytes(folder: Path) -> int:
    """Bytes of the hostile files in ``folder`` (tarballs and PNGs; a copied bundle's own files not counted twice)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in (".gz", ".png") and "bundle" not in p.parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--limit-mb", type=float, default=500.0)
    args = parser.parse_args()
    if args.out and not args.out.parent.is_dir():
        print(f"error: {args.out.parent} is not a folder; give --out a file in an existing folder", file=sys.stderr)
        return 2
    rows, bad = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, expect) in cases(Path(tmp)).items():
            before = _bytes(Path(tmp))
            command = build()
            row = {"case": name, "input_mb": round((_bytes(Path(tmp)) - before) / 1e6, 2), **measure(command)}
            ok = row["peak_mb"] <= args.limit_mb and (expect in str(row["line"]) if expect else row["exit"] == 0)
            bad += not ok
            rows.append({**row, "ok": ok})
            print(f"{'ok ' if ok else 'BAD'} {row['peak_mb']:>7} MB {row['seconds']:>6} s  {name}  ({row['input_mb']} MB of input)\n"
                  f"      {row['line']}", flush=True)
    if args.out:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        args.out.write_text(json.dumps({"machine": machine, "limit_mb": args.limit_mb, "rows": rows}, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
