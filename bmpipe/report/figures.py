"""Figures for the report, as PNG bytes ready to inline (the report must open with no other file)."""

from __future__ import annotations

import io

import cv2
import matplotlib
import numpy as np

from bmpipe.imaging.smear import EDGE, MONOLAYER, THICK
from bmpipe.taxonomy import Taxonomy

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ZONE_RGB = {MONOLAYER: (46, 160, 67), THICK: (200, 40, 40), EDGE: (230, 160, 20)}


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode PNG")
    return buf.tobytes()


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode JPEG")
    return buf.tobytes()


def overview_with_zones(overview: np.ndarray, zones: np.ndarray, cells_xy: np.ndarray, scale: float) -> bytes:
    """The overview (JPEG: it is a photograph, and must keep the report light) with zone outlines (green
    monolayer, red thick, amber edge) and a cell-density heat map."""
    out = overview.copy()
    for zone, rgb in ZONE_RGB.items():
        mask = (zones == zone).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, rgb, thickness=max(1, out.shape[1] // 400))
    if len(cells_xy):
        density = np.zeros(zones.shape, np.float32)
        ix = np.clip((cells_xy[:, 0] / scale).astype(int), 0, zones.shape[1] - 1)
        iy = np.clip((cells_xy[:, 1] / scale).astype(int), 0, zones.shape[0] - 1)
        np.add.at(density, (iy, ix), 1.0)
        density = cv2.GaussianBlur(density, (0, 0), max(2.0, zones.shape[1] / 100))
        density /= max(float(density.max()), 1e-6)
        heat = cv2.applyColorMap((density * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
        alpha = (0.55 * density)[..., None]
        out = (out * (1 - alpha) + heat * alpha).astype(np.uint8)
    return jpeg_bytes(out)


def class_bar_chart(percent: dict[str, float], taxonomy: Taxonomy) -> bytes:
    """Bar chart of the differential, bars coloured by BMSNet group."""
    codes = [c for c, p in percent.items() if p > 0] or list(percent)[:1]
    colours = [np.array(taxonomy.colour(c)) / 255 for c in codes]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.bar(codes, [percent[c] for c in codes], color=colours)
    ax.set_ylabel("% of nucleated cells")
    ax.spines[["top", "right"]].set_visible(False)
    plt.setp(ax.get_xticklabels(), rotation=60, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
