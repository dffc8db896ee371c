"""Per-DPU load as a PNG bar chart, with no plotting library: a tiny rasteriser and a PNG writer.

One bar per DPU (stacked when several series are given), a grey line at the mean and a red line at
the maximum; the caption (title, series names, scale) goes into the PNG's ``tEXt`` chunks.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

# colours of stacked series (RGB), then the mean and max lines
_SERIES_RGB = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189)]
_MEAN_RGB = (128, 128, 128)
_MAX_RGB = (214, 39, 40)


def write_png(path: str | Path, rgb: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Write an ``[height, width, 3]`` uint8 image as an 8-bit RGB PNG (with optional tEXt chunks)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an [h, w, 3] image, got shape {rgb.shape}")
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    # each scanline starts with filter type 0 (none)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    for key, value in (text or {}).items():
        out += chunk(b"tEXt", key.encode("latin-1", "replace")[:79] + b"\0" + value.encode("latin-1", "replace"))
    out += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(out)
    return path


def bar_chart(values: np.ndarray, *, height: int = 240, bar_width: int | None = None,
              margin: int = 8) -> np.ndarray:
    """Rasterise ``values`` (``[n]`` or ``[n, series]``, non-negative) as stacked bars, white
    background; returns the ``[h, w, 3]`` uint8 image."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    v = np.clip(np.nan_to_num(v), 0, None)
    n = v.shape[0]
    bw = bar_width or max(1, min(8, 1200 // max(n, 1)))
    width, plot_h = n * bw + 2 * margin, height - 2 * margin
    img = np.full((height, width, 3), 255, np.uint8)
    total = v.sum(axis=1)
    top = total.max() if total.size and total.max() > 0 else 1.0
    scale = plot_h / top
    base = np.zeros(n)
    for s in range(v.shape[1]):
        lo = np.round(base * scale).astype(int)
        hi = np.round((base + v[:, s]) * scale).astype(int)
        colour = _SERIES_RGB[s % len(_SERIES_RGB)]
        for i in range(n):
            if hi[i] > lo[i]:
                x0 = margin + i * bw
                img[height - margin - hi[i]:height - margin - lo[i], x0:x0 + bw] = colour
        base += v[:, s]
    for level, colour in ((total.mean() if n else 0.0, _MEAN_RGB), (top, _MAX_RGB)):
        y = height - margin - int(round(level * scale))
        img[max(y, 0):max(y, 0) + 1, margin:width - margin] = colour
    img[height - margin:height - margin + 1, margin:width - margin] = 0    # x axis
    return img


def write_load_png(path: str | Path, values: np.ndarray, *, title: str,
                   series: Sequence[str] = ("load",), unit: str = "") -> Path:
    """Bar chart of per-DPU values to ``path``; the caption is stored as PNG text."""
    v = np.asarray(values, dtype=np.float64)
    total = v.sum(axis=1) if v.ndim == 2 else v
    mean = float(total.mean()) if total.size else 0.0
    text = {"Title": title,
            "Description": (f"one bar per DPU ({len(total)}), stacked series: {', '.join(series)}; grey line = "
                            f"mean {mean:.6g}{unit}, red line = max {float(total.max(initial=0)):.6g}{unit}; "
                            f"imbalance max/mean = {float(total.max(initial=0)) / mean if mean else 0:.4f}"),
            "Software": "updlrm.pim.plot"}
    return write_png(path, bar_chart(v), text)
