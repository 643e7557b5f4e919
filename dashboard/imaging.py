"""Images for the dashboard, pixel-exact: cached PNG bytes and pixels of an image file (never
re-encoded lossily), PNG encoding, and the Compare page's nearest-neighbour crops and
before/after slider."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.load import file_mtime


@st.cache_data(show_spinner=False, max_entries=1024)
def _read_bytes(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


def png_bytes(path: Path) -> bytes | None:
    """The file's bytes, unchanged (PNG stays PNG: the dashboard never re-encodes lossily)."""
    return _read_bytes(str(path), file_mtime(path)) if path.is_file() else None


def decode(data: bytes) -> np.ndarray:
    """PNG bytes → uint8 array (H, W) or (H, W, 3)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
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


def encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()





def slider_html(a: bytes, b: bytes, label_a: str, label_b: str, width: int, height: int, scale: int) -> str:
    """A self-contained before/after slider: A on the left of the handle, B on the right."""
    ua, ub = (f"data:image/png;base64,{base64.b64encode(x).decode()}" for x in (a, b))
    w, h = width * scale, height * scale
    return f"""<!doctype html><html><body style="margin:0;font-family:sans-serif">
<div id="box" style="position:relative;width:{w}px;height:{h}px;user-select:none">
  <img src="{ub}" width="{w}" height="{h}" style="position:absolute;left:0;top:0;image-rendering:pixelated">
  <img id="top" src="{ua}" width="{w}" height="{h}" style="position:absolute;left:0;top:0;image-rendering:pixelated;clip-path:inset(0 50% 0 0)">
  <div id="bar" style="position:absolute;top:0;left:50%;width:2px;height:100%;background:#ff4b4b"></div>
  <span style="position:absolute;left:4px;top:4px;background:#000a;color:#fff;padding:1px 4px;font-size:12px">{label_a}</span>
  <span style="position:absolute;right:4px;top:4px;background:#000a;color:#fff;padding:1px 4px;font-size:12px">{label_b}</span>
</div>
<input id="pos" type="range" min="0" max="100" value="50" step="0.5" style="width:{w}px" aria-label="before/after position">
<script>
const pos = document.getElementById('pos'), top_ = document.getElementById('top'), bar = document.getElementById('bar');
function set(v) {{ top_.style.clipPath = 'inset(0 ' + (100 - v) + '% 0 0)'; bar.style.left = v + '%'; }}
pos.addEventListener('input', e => set(e.target.value));
document.getElementById('box').addEventListener('mousemove', e => {{
  if (e.buttons !== 1) return; const r = e.currentTarget.getBoundingClientRect();
  const v = Math.max(0, Math.min(100, 100 * (e.clientX - r.left) / r.width)); pos.value = v; set(v); }});
</script></body></html>"""


def crop(img: np.ndarray, cy: int, cx: int, size: int, zoom: int) -> np.ndarray:
    h, w = img.shape[:2]
    size = min(size, h, w)
    top = int(np.clip(cy - size // 2, 0, h - size))
    left = int(np.clip(cx - size // 2, 0, w - size))
    part = img[top : top + size, left : left + size]
    return np.repeat(np.repeat(part, zoom, axis=0), zoom, axis=1)
