"""The U-Net nucleated-cell detector: config round trip, verified loading, and what the shipped weights find."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bmpipe.errors import ModelError
from bmpipe.nn.unet_detector import DEFAULT_CONFIG, NAME, PostProcess, UnetDetector, build_network
from bmpipe.nn.weights import default_models_dir, load_weights, save_model

torch.set_num_threads(2)

TINY = {**DEFAULT_CONFIG, "decoder_channels": [16, 8, 8, 8], "tile_size": 64}


@pytest.fixture()
def tiny_models(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_model(build_network(TINY), tmp_path, NAME, "test", TINY)
    return tmp_path


def test_config_round_trips_through_safetensors(tiny_models: Path) -> None:
    state, config, record = load_weights(tiny_models, NAME)
    assert config == json.loads(json.dumps(TINY))
    rebuilt = build_network(config)
    rebuilt.load_state_dict(state)  # strict: every tensor has its place
    detector = UnetDetector.load(tiny_models, device="cpu")
    assert detector.record == record
    assert detector.tile_size == 64 and detector.mpp.um_per_px == pytest.approx(0.4)


def test_detect_shapes_on_odd_sized_tiles(tiny_models: Path) -> None:
    detector = UnetDetector.load(tiny_models, device="cpu")
    out = detector.detect(np.full((2, 50, 70, 3), 200, np.uint8))  # not a multiple of the stride
    assert len(out) == 2
    for boxes, scores in out:
        assert boxes.shape[1:] == (4,) and scores.shape == (len(boxes),)
    with pytest.raises(ValueError):
        detector.detect(np.zeros((1, 64, 64), np.uint8))


def test_tampered_weights_are_refused(tiny_models: Path) -> None:
    path = tiny_models / f"{NAME}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        UnetDetector.load(tiny_models, device="cpu")


def test_watershed_splits_two_touching_cells() -> None:
    """Post-processing alone: one foreground blob with two marker peaks gives two boxes."""
    yy, xx = np.mgrid[:64, :96]
    d1 = np.hypot(xx - 33, yy - 32)
    d2 = np.hypot(xx - 61, yy - 32)
    fg = ((d1 < 15) | (d2 < 15)).astype(np.float32)
    marker = np.clip(np.maximum(1 - d1 / 15, 1 - d2 / 15), 0, 1).astype(np.float32)
    post = PostProcess(fg_threshold=0.5, marker_threshold=0.5, min_seed_px=2, min_area_px=50)
    boxes, scores = post.boxes(fg, marker)
    assert len(boxes) == 2
    assert sorted(b[0] for b in boxes)[1] >= 45  # split near the waist at x = 47
    assert np.all(scores > 0.99)


def _synthetic_field(detector: UnetDetector) -> tuple[np.ndarray, list[tuple[float, float]], list]:
    """Light background, pink red-cell discs (7.5 µm) and two touching dark-purple cells (12 µm, nucleus
    8 µm) at the detector's resolution."""
    px = detector.mpp.px
    size = 160
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = (232, 226, 230)
    reds = [(25, 25), (130, 30), (30, 130), (125, 128), (80, 135)]
    for x, y in reds:
        cv2.circle(image, (x, y), round(px(3.75)), (215, 160, 165), -1)
        cv2.circle(image, (x, y), round(px(1.2)), (228, 190, 192), -1)  # central pallor
    r_cell, r_nuc = px(6.0), px(4.0)
    cells = [(80 - r_cell, 80.0), (80 + r_cell, 80.0)]
    for x, y in cells:
        cv2.circle(image, (round(x), round(y)), round(r_cell), (190, 170, 215), -1)  # pale blue-grey cytoplasm
    for x, y in cells:
        cv2.circle(image, (round(x), round(y)), round(r_nuc), (95, 45, 140), -1)  # dark purple nucleus
    image = cv2.GaussianBlur(image, (0, 0), 0.7)
    return image, cells, reds


def test_shipped_weights_find_purple_cells_not_red_cells() -> None:
    models = default_models_dir()
    if not (models / f"{NAME}.safetensors").is_file():
        pytest.skip(f"shipped weights {models / NAME}.safetensors absent (run `bmpipe train segmenter`)")
    detector = UnetDetector.load(models, device="cpu")
    image, cells, reds = _synthetic_field(detector)
    (boxes, scores), = detector.detect(image[None])
    centres = np.c_[(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2]
    assert len(boxes) == 2, f"expected the two purple cells, got boxes {boxes.tolist()}"
    for x, y in cells:  # each purple cell holds exactly one box centre, in tile pixels
        assert np.sum(np.hypot(centres[:, 0] - x, centres[:, 1] - y) < detector.mpp.px(4.0)) == 1
    for x, y in reds:
        assert not np.any(np.hypot(centres[:, 0] - x, centres[:, 1] - y) < detector.mpp.px(4.0))
    assert np.all((boxes >= 0) & (boxes <= image.shape[0]))
    assert np.all(scores > 0.5)


def test_shipped_weights_listed_in_manifest_with_config() -> None:
    models = default_models_dir()
    if not (models / f"{NAME}.safetensors").is_file():
        pytest.skip(f"shipped weights {models / NAME}.safetensors absent (run `bmpipe train segmenter`)")
    _, config, record = load_weights(models, NAME)
    assert config["mpp"] == pytest.approx(0.4) and config["tile_size"] >= 256
    assert (models / f"{NAME}.card.md").read_text("utf-8").count(record.sha256) == 1
    assert (models / record.file).stat().st_size < 20 * 2**20


def test_copy_of_models_folder_loads(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Loading depends only on the folder (manifest + file), not on where it lives."""
    other = tmp_path_factory.mktemp("copy")
    for p in tiny_models.iterdir():
        shutil.copy(p, other / p.name)
    assert UnetDetector.load(other, device="cpu").record.version == "test"
