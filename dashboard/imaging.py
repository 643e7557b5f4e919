"""Pixel-exact image helpers for the Compare page: nearest-neighbour crops and a before/after slider."""

from __future__ import annotations

import base64

import numpy as np


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
