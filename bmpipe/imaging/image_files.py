"""Reading plain image files (not slides) as the RGB arrays every model here works on.

One reader for the detector's and the classifier's training, evaluation and inference, so an unreadable file
is reported the same way whichever of them meets it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bmpipe.errors import InputError


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (grey and 16-bit images converted, alpha dropped)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(path, "not a readable image (JPEG, PNG, TIFF or BMP expected)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def binary_mask(path: Path) -> np.ndarray:
    """A mask image (saved as JPEG by some data sets, hence the threshold) as booleans: grey level > 127."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(path, "not a readable mask image")
    return mask > 127
