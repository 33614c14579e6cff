"""Pixel conversions shared by the backends: whatever a file stores becomes (h, w, 3) uint8 RGB.

Transparent pixels are composited onto white because white is what an empty area of a glass slide looks
like in brightfield; black would read as stain to every later stage.
"""

from __future__ import annotations

import numpy as np


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGB of an (h, w, 4) uint8 image with non-premultiplied alpha laid over white."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    return ((rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def to_rgb8(image: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """(h, w, 3) uint8 RGB from grey, grey+alpha, RGB or RGBA of 8 or 16 bits (OpenCV's BGR when ``bgr``)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported sample type {image.dtype} (needs 8 or 16 bits)")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        image = np.concatenate([np.repeat(image[..., :1], 3, axis=2), image[..., 1:]], axis=2)
    elif channels not in (3, 4):
        raise ValueError(f"unsupported number of channels {channels} (needs grey, RGB or RGBA)")
    elif bgr:
        image = image[..., [2, 1, 0, 3][:channels]]
    if image.shape[2] == 4:
        return composite_on_white(image)
    return np.ascontiguousarray(image)
