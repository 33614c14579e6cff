"""Figures for the report, as PNG/JPEG bytes ready to inline (the report must open with no other file)."""

from __future__ import annotations

import io

import cv2
import matplotlib
import numpy as np

from bmpipe.imaging.smear import EDGE, MONOLAYER, THICK
from bmpipe.resolution import Mpp
from bmpipe.taxonomy import Taxonomy

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first

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


def decode_rgb(data: bytes) -> np.ndarray:
    """An encoded PNG/JPEG as an RGB array."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _fig_bytes(fig, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=fig.dpi)
    plt.close(fig)
    return buf.getvalue()


def overview_with_zones(overview: np.ndarray, zones: np.ndarray) -> bytes:
    """The overview (JPEG: it is a photograph, and must keep the report light) with the smear mask: zone
    outlines (green readable monolayer, red thick zone, amber feathered edge) over a light tint of each zone."""
    out = overview.astype(np.float32)
    for zone, rgb in ZONE_RGB.items():
        inside = zones == zone
        out[inside] = 0.8 * out[inside] + 0.2 * np.array(rgb, np.float32)
    out = out.astype(np.uint8)
    for zone, rgb in ZONE_RGB.items():
        mask = (zones == zone).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, rgb, thickness=max(1, out.shape[1] // 400))
    return jpeg_bytes(out)


def cell_density(shape: tuple[int, int], cells_xy: np.ndarray, scale: float, overview_mpp: Mpp) -> np.ndarray:
    """Detected nucleated cells per mm² on the overview grid, smoothed over ~2% of its width.

    The Gaussian keeps the total, so the map integrates to the number of cells."""
    density = np.zeros(shape, np.float32)
    if len(cells_xy):
        ix = np.clip((cells_xy[:, 0] / scale).astype(int), 0, shape[1] - 1)
        iy = np.clip((cells_xy[:, 1] / scale).astype(int), 0, shape[0] - 1)
        np.add.at(density, (iy, ix), 1.0)
        density = cv2.GaussianBlur(density, (0, 0), max(2.0, shape[1] / 50), borderType=cv2.BORDER_CONSTANT)
    pixel_mm2 = (overview_mpp.um_per_px / 1000.0) ** 2
    return density / pixel_mm2


def density_heatmap(overview: np.ndarray, density: np.ndarray) -> bytes:
    """The cell-density heat map over a faded greyscale overview, with a colour bar in cells per mm²."""
    h, w = density.shape
    grey = cv2.cvtColor(overview, cv2.COLOR_RGB2GRAY)
    fig_w = 7.0
    fig, ax = plt.subplots(figsize=(fig_w, max(1.5, fig_w * h / w * 0.85)), dpi=100)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255, alpha=0.6)
    shown = np.ma.masked_less_equal(density, density.max() * 0.02 if density.max() > 0 else 0)
    image = ax.imshow(shown, cmap="inferno", alpha=0.75, vmin=0, vmax=max(float(density.max()), 1e-9))
    ax.set_axis_off()
    bar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
    bar.set_label("nucleated cells per mm²", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _fig_bytes(fig)


def class_bar_chart(
    percent: dict[str, float], ci95: dict[str, tuple[float, float]], taxonomy: Taxonomy
) -> bytes:
    """Bar chart of the differential with 95% interval whiskers, bars coloured by BMSNet group."""
    codes = [c for c, p in percent.items() if p > 0] or list(percent)[:1]
    values = np.array([percent[c] for c in codes])
    low = np.array([ci95[c][0] for c in codes])
    high = np.array([ci95[c][1] for c in codes])
    colours = [np.array(taxonomy.colour(c)) / 255 for c in codes]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.bar(codes, values, color=colours, yerr=np.stack([values - low, high - values]), capsize=2,
           error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    ax.set_ylabel("% of nucleated cells (95% CI)")
    ax.spines[["top", "right"]].set_visible(False)
    plt.setp(ax.get_xticklabels(), rotation=60, fontsize=8)
    fig.tight_layout()
    return _fig_bytes(fig)
