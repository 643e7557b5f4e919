"""Images for the dashboard, pixel-exact: cached PNG bytes and pixels of an image file (never
re-encoded lossily), PNG encoding, and the Compare page's nearest-neighbour crops and
before/after slider.

A results folder may come from anyone (a bundle is what strangers send each other), so its file
names are text, never markup: the slider's labels are escaped, its page allows no script but its
own (a Content-Security-Policy with that script's hash) and runs in an inner frame without the
parent page's origin; an image whose header claims more than :data:`MAX_PIXELS` is not decoded."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import warnings
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.load import file_mtime
from dashboard.uploads import encode_png  # noqa: F401 - the PNG encoder (uploads.py: the worker has no Streamlit); the pages call imaging.encode_png


@st.cache_data(show_spinner=False, max_entries=1024)
def _read_bytes(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


def png_bytes(path: Path) -> bytes | None:
    """The file's bytes, unchanged (PNG stays PNG: the dashboard never re-encodes lossily)."""
    return _read_bytes(str(path), file_mtime(path)) if path.is_file() else None


MAX_PIXELS = 64_000_000  # far beyond any image of a run; a header claiming more is a broken or hostile file


def decode(data: bytes) -> np.ndarray:
    """PNG bytes → uint8 array (H, W) or (H, W, 3); ``ValueError`` for an image over :data:`MAX_PIXELS`
    (from its header, before decoding)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise ValueError(f"{im.size[0]}x{im.size[1]} pixels, too large to show")
            return np.asarray(im.convert("L" if im.mode in ("L", "1", "I", "I;16") else "RGB"))


@st.cache_data(show_spinner=False, max_entries=256)
def _load_image(path: str, mtime: float) -> tuple[bytes, np.ndarray] | str:
    try:
        raw = Path(path).read_bytes()
        return raw, decode(raw)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for a broken file; all mean "unreadable"
        return f"not a readable image ({type(err).__name__})"


def load_image(path: Path) -> tuple[bytes, np.ndarray] | str:
    """``(PNG bytes, pixels)`` of an image file, or a short reason why it cannot be shown."""
    return _load_image(str(path), file_mtime(path)) if path.is_file() else "missing"





SLIDER_SCRIPT = """
const pos = document.getElementById('pos'), top_ = document.getElementById('top'), bar = document.getElementById('bar');
function set(v) { top_.style.clipPath = 'inset(0 ' + (100 - v) + '% 0 0)'; bar.style.left = v + '%'; }
pos.addEventListener('input', e => set(e.target.value));
document.getElementById('box').addEventListener('mousemove', e => {
  if (e.buttons !== 1) return; const r = e.currentTarget.getBoundingClientRect();
  const v = Math.max(0, Math.min(100, 100 * (e.clientX - r.left) / r.width)); pos.value = v; set(v); });
"""
SLIDER_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SLIDER_SCRIPT.encode()).digest()).decode()}'")


def slider_html(a: bytes, b: bytes, label_a: str, label_b: str, width: int, height: int, scale: int) -> str:
    """A self-contained before/after slider: A on the left of the handle, B on the right.

    The labels (file names, from the results folder) are escaped; the page runs only
    :data:`SLIDER_SCRIPT` (:data:`SLIDER_CSP`), inside an inner frame sandboxed to scripts alone,
    so that nothing in it can reach the dashboard's page."""
    ua, ub = (f"data:image/png;base64,{base64.b64encode(x).decode()}" for x in (a, b))
    w, h = int(width) * int(scale), int(height) * int(scale)
    la, lb = html.escape(str(label_a), quote=True), html.escape(str(label_b), quote=True)
    inner = f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{SLIDER_CSP}"></head><body style="margin:0;font-family:sans-serif">
<div id="box" style="position:relative;width:{w}px;height:{h}px;user-select:none">
  <img src="{ub}" width="{w}" height="{h}" style="position:absolute;left:0;top:0;image-rendering:pixelated" alt="B">
  <img id="top" src="{ua}" width="{w}" height="{h}" style="position:absolute;left:0;top:0;image-rendering:pixelated;clip-path:inset(0 50% 0 0)" alt="A">
  <div id="bar" style="position:absolute;top:0;left:50%;width:2px;height:100%;background:#ff4b4b"></div>
  <span style="position:absolute;left:4px;top:4px;background:#000a;color:#fff;padding:1px 4px;font-size:12px">{la}</span>
  <span style="position:absolute;right:4px;top:4px;background:#000a;color:#fff;padding:1px 4px;font-size:12px">{lb}</span>
</div>
<input id="pos" type="range" min="0" max="100" value="50" step="0.5" style="width:{w}px" aria-label="before/after position">
<script>{SLIDER_SCRIPT}</script></body></html>"""
    return (f'<!doctype html><html><body style="margin:0"><iframe sandbox="allow-scripts" title="before/after slider" '
            f'style="border:0;width:{w + 4}px;height:{h + 36}px" srcdoc="{html.escape(inner, quote=True)}"></iframe></body></html>')


def crop(img: np.ndarray, cy: int, cx: int, size: int, zoom: int) -> np.ndarray:
    h, w = img.shape[:2]
    size = min(size, h, w)
    top = int(np.clip(cy - size // 2, 0, h - size))
    left = int(np.clip(cx - size // 2, 0, w - size))
    part = img[top : top + size, left : left + size]
    return np.repeat(np.repeat(part, zoom, axis=0), zoom, axis=1)
