"""What a published bundle keeps of each fit: the size policy (the count behind it:
docs/publishing.md, ``benchmarks/bundle_size.py``).

:func:`decide` is a function of the fits a bundle holds only, so a bundle grown part by part
keeps the same files as one merged in one go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from pipeline import layout
from pipeline.outputs.safe import Fields, Unsafe
from pipeline.settings import parse_experiment

MANIFEST = layout.BUNDLE_MANIFEST


class Fit(Protocol):
    """What :func:`decide` needs to know of a fit."""

    id: str
    size: tuple[int, int]  # (height, width) of its case
    scored: bool  # it has a ground truth (its run.json has metrics)

    @property
    def exp(self) -> str: ...

    @property
    def image(self) -> str: ...

    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class Policy:
    """What a bundle keeps of each fit (the count behind the defaults: docs/publishing.md).

    Of an image's first seed (the lowest it holds): ``restored.png`` and the ground truth for every
    image of the ``png`` experiments, and, with ``spot_check``, for the smallest image (fewest
    pixels, then name) of every other experiment that has a ground truth and is not a figure:
    ``dip check-bundle`` recomputes their PSNR/SSIM. Every other first-seed result is a JPEG
    preview (``restored.jpg``, quality ``jpeg_quality``). ``galleries`` (``EXP/IMAGE``) keep
    their snapshots. Further seeds keep only their numbers, unless ``every_seed``: then each seed
    is kept as the first is. ``"*"`` in ``png`` or ``galleries`` means every experiment or image.
    The classical baselines keep their PNG where the image keeps its ground truth, elsewhere only
    their numbers."""

    png: tuple[str, ...] = ("inpaint_p50",)
    spot_check: bool = True
    galleries: tuple[str, ...] = ("inpaint_p50/peppers", "inpaint_p50/man")
    jpeg_quality: int = 85
    every_seed: bool = False

    @classmethod
    def named(cls, name: str) -> "Policy":
        """``paper``: the default above (a GPU bundle of the paper profile, under 15 MB); ``all``:
        every fit of every seed with its PNG, ground truth and snapshots (small profiles such as
        ``quick``: 128-pixel images)."""
        if name == "all":
            return cls(png=("*",), spot_check=False, galleries=("*",), every_seed=True)
        if name == "paper":
            return cls()
        raise ValueError(f"unknown bundle policy {name!r}; give paper or all")

    @classmethod
    def from_dict(cls, d: Any) -> "Policy":
        """The policy a bundle's manifest records; :class:`Unsafe` naming the key if it is malformed."""
        f = Fields(d, f"{MANIFEST} policy")
        quality = f.integer("jpeg_quality", minimum=1) or 0
        if not isinstance(d.get("spot_check"), bool) or quality > 100 or not isinstance(d.get("every_seed", False), bool):
            raise Unsafe(f"{MANIFEST}: policy.spot_check or policy.every_seed is not true or false, or policy.jpeg_quality is over 100")
        return cls(tuple(f.strings("png")), d["spot_check"], tuple(f.strings("galleries")), quality, d.get("every_seed", False))


@dataclass
class Keep:
    """What the bundle keeps of one fit."""

    restored: str | None  # "png" | "jpeg" | None (numbers only)
    truth: bool = False
    snapshots: bool = False


def is_figure(exp: str) -> bool:
    """A figure experiment: an id that is not one of the paper's tables (``denoise_s…``, ``inpaint_p…``, ``sr_x…``)."""
    try:
        parse_experiment(exp)
    except ValueError:
        return True
    return False


def decide(policy: Policy, fits: Sequence[Fit]) -> dict[str, Keep]:
    """:class:`Keep` of every fit under ``policy`` (a function of the fits held only, so the bundle
    is the same whichever order its parts came in)."""
    first: dict[tuple[str, str], int] = {}
    for h in fits:
        first[(h.exp, h.image)] = min(h.seed, first.get((h.exp, h.image), h.seed))
    smallest: dict[str, tuple[int, str]] = {}
    for h in fits:
        if h.scored and h.exp not in policy.png and not is_figure(h.exp):
            smallest[h.exp] = min((h.size[0] * h.size[1], h.image), smallest.get(h.exp, (h.size[0] * h.size[1], h.image)))
    keep: dict[str, Keep] = {}
    for h in fits:
        if h.seed != first[(h.exp, h.image)] and not policy.every_seed:
            keep[h.id] = Keep(None)
            continue
        gallery = "*" in policy.galleries or f"{h.exp}/{h.image}" in policy.galleries
        spot = policy.spot_check and smallest.get(h.exp, (0, ""))[1] == h.image
        png = "*" in policy.png or h.exp in policy.png or spot
        keep[h.id] = Keep("png" if png else "jpeg", truth=png and h.scored, snapshots=gallery)
    return keep
