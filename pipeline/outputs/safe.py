"""Reading result trees that strangers send (parts, bundles) without trusting them.

* :func:`rel_problem` — why a path named inside a file (a manifest's ``files``, a tar member)
  is not a plain relative path below its root: absolute, ``..``, ``.``, empty parts, backslashes
  or control characters.
* :func:`walk` — every regular file below a root, never following a link; links and special
  files are reported, not entered.
* :func:`regular_file` — the path ``root/rel`` only if every component below ``root`` is a real
  folder and the last one a regular file (no link anywhere; unlike :func:`pipeline.files.inside`, which
  bounds where dip writes, lexically);
* :func:`read_inside` — the bytes of ``root/rel`` only if every component below ``root`` is a real
  folder and the last one a regular file (no link anywhere), at most ``limit`` bytes.
* :func:`parse_json` — JSON whose nesting is bounded: one line naming the file, never a
  ``RecursionError``.
* :class:`Fields` — the type checks of a JSON mapping, each failure one line naming the file and
  the key (``meta.json: factor is [4], not a positive integer``).

Nothing here reads a file outside the root it is given.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 64 << 20  # one file of a part or bundle (a 4k RGB PNG is ~30 MB)
MAX_DEPTH = 32  # JSON nesting; the project's files nest 4 deep


class Unsafe(ValueError):
    """A file or path that a reader refuses: the message is one line naming it."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def rel_problem(rel: object) -> str | None:
    """Why ``rel`` is not a safe relative POSIX path below a root (``None`` when it is one)."""
    if not isinstance(rel, str) or not rel:
        return "is not a path"
    if any(ord(c) < 32 or c in "\\\x7f" for c in rel):
        return "has a backslash or a control character"
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "has an empty, '.' or '..' part"
    return None


def walk(root: Path) -> tuple[list[str], list[str]]:
    """``(files, problems)``: the relative paths of the regular files below ``root`` (sorted) and
    one line for each link or special file found (links are never followed)."""
    files: list[str] = []
    problems: list[str] = []
    stack = [(Path(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_symlink():
                    problems.append(f"{rel}: a link (a bundle or part holds none; it was not followed)")
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    files.append(rel)
                else:
                    problems.append(f"{rel}: not a regular file")
    return sorted(files), problems


def regular_file(root: Path, rel: str) -> Path:
    """``root/rel`` when ``rel`` is safe and every component below ``root`` is a real folder and
    the last a regular file, without following any link; :class:`Unsafe` (or
    ``FileNotFoundError``) otherwise."""
    why = rel_problem(rel)
    if why:
        raise Unsafe(f"{rel!r}: {why}")
    path = Path(root)
    parts = rel.split("/")
    for i, part in enumerate(parts):
        path = path / part
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise Unsafe(f"{'/'.join(parts[: i + 1])}: a link (not followed)")
        if i < len(parts) - 1 and not stat.S_ISDIR(mode):
            raise Unsafe(f"{'/'.join(parts[: i + 1])}: not a folder")
    if not stat.S_ISREG(mode):
        raise Unsafe(f"{rel}: not a regular file")
    return path


def read_inside(root: Path, rel: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``root/rel`` (see :func:`regular_file`), refusing more than ``limit`` bytes."""
    path = regular_file(root, rel)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise Unsafe(f"{rel}: larger than {limit} bytes")
    return data


def parse_json(data: bytes | str, where: str) -> Any:
    """Parsed JSON of ``data``; :class:`Unsafe` naming ``where`` when it is not UTF-8 JSON or nests
    deeper than :data:`MAX_DEPTH` (checked before parsing, so a 100k-deep file costs nothing)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise Unsafe(f"{where}: not UTF-8 text") from None
    level = 0
    in_string = escaped = False
    for c in text:  # bracket depth outside strings: a cheap bound before json's recursive parser
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            level += 1
            if level > MAX_DEPTH:
                raise Unsafe(f"{where}: nested more than {MAX_DEPTH} levels deep; not a file dip writes")
        elif c in "]}":
            level -= 1
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise Unsafe(f"{where}: not valid JSON ({str(err).splitlines()[0][:80]})") from None
    return value


def load_json(root: Path, rel: str, limit: int = MAX_FILE_BYTES) -> Any:
    """:func:`parse_json` of ``root/rel`` read with :func:`read_inside`."""
    return parse_json(read_inside(root, rel, limit), rel)


class Fields:
    """Checked access to a JSON mapping ``obj`` read from ``where``: each getter returns the value
    or raises :class:`Unsafe` with one line naming the file and the key."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise Unsafe(f"{where}: a JSON {type(obj).__name__}, not an object (mapping)")
        self.obj, self.where = obj, where

    def _bad(self, key: str, expected: str) -> Unsafe:
        value = repr(self.obj.get(key, "<missing>"))
        return Unsafe(f"{self.where}: {key} is {value[:60]}, not {expected}")

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def text(self, key: str, *, optional: bool = False) -> str | None:
        v = self.obj.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise self._bad(key, "a non-empty string")
        return v

    def integer(self, key: str, *, minimum: int = 0, optional: bool = False) -> int | None:
        v = self.obj.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self._bad(key, f"an integer >= {minimum}")
        return v

    def number(self, key: str, *, allow_inf: bool = False, optional: bool = False) -> float | None:
        v = self.obj.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise self._bad(key, "a finite number" if not allow_inf else "a number")
        return float(v)

    def mapping(self, key: str, *, optional: bool = False) -> dict[str, Any] | None:
        v = self.obj.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            raise self._bad(key, "an object (mapping)")
        return v

    def strings(self, key: str) -> list[str]:
        v = self.obj.get(key)
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self._bad(key, "a list of strings")
        return list(v)

    def hex64(self, key: str) -> str:
        v = self.obj.get(key)
        if not is_hex64(v):
            raise self._bad(key, "a sha256 (64 hex digits)")
        return str(v)

    def equals(self, key: str, expected: Any) -> None:
        if key in self.obj and self.obj[key] != expected:
            raise self._bad(key, repr(expected))
