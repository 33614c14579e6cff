"""The YOLO nucleated-cell detector: offline build, verified safetensors loading, what the shipped weights
find on a phantom field, and a border cell counted once when the field is read as overlapping tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bmpipe.errors import ModelError
from bmpipe.evaluation.detector import box_scores, detect_image, mask_boxes
from bmpipe.imaging.boxes import iou_matrix
from bmpipe.imaging.image_files import read_rgb
from bmpipe.nn.weights import default_models_dir, save_model
from bmpipe.nn.yolo_detector import DEFAULT_CONFIG, NAME, YoloDetector, build_network
from bmpipe.phantom import write_fields
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide
from bmpipe.stages.detect import OVERLAP_UM, detect_cells
from bmpipe.stages.regions import whole_field
from bmpipe.train.yolo import oversampled

torch.set_num_threads(2)


def shipped() -> YoloDetector:
    models = default_models_dir()
    if not (models / f"{NAME}.safetensors").is_file():
        pytest.skip(f"shipped weights {models / NAME}.safetensors absent (run `bmpipe train detector`)")
    return YoloDetector.load(models, device="cpu")


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 1024 px phantom field at 0.1 µm/px (a quarter of the detector's resolution) and its truth boxes."""
    folder = tmp_path_factory.mktemp("yolo-field")
    (path,) = write_fields(folder, 1, seed=7, size=(1024, 1024), mpp=Mpp(0.1))
    return path, mask_boxes(folder / "masks" / f"{path.stem}.png")


def test_untrained_network_round_trips_safetensors_and_detects_odd_tiles(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = {**DEFAULT_CONFIG, "conf": 0.0, "max_det": 50}  # keep every box: shapes are what is tested
    save_model(build_network(config), tmp_path, NAME, "test", config)
    detector = YoloDetector.load(tmp_path, device="cpu")
    assert detector.mpp == Mpp(0.4) and detector.record.version == "test"
    tiles = np.random.default_rng(0).integers(0, 255, (2, 100, 130, 3), dtype=np.uint8)
    out = detector.detect(tiles)
    assert len(out) == 2
    for boxes, scores in out:
        assert boxes.shape == (len(scores), 4) and len(scores) > 0
        assert np.all((boxes[:, [0, 2]] >= 0) & (boxes[:, [0, 2]] <= 130))
        assert np.all((boxes[:, [1, 3]] >= 0) & (boxes[:, [1, 3]] <= 100))
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(tiles.astype(np.float32))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    save_model(build_network(DEFAULT_CONFIG), tmp_path, NAME, "test", DEFAULT_CONFIG)
    with open(tmp_path / f"{NAME}.safetensors", "r+b") as f:
        f.seek(-16, 2)
        f.write(b"\x00" * 16)
    with pytest.raises(ModelError, match="sha256"):
        YoloDetector.load(tmp_path, device="cpu")


def test_shipped_weights_find_the_cells_of_a_phantom_field(field: tuple[Path, np.ndarray]) -> None:
    detector = shipped()
    path, truth = field
    boxes, scores = detect_image(detector, read_rgb(path), Mpp(0.1))
    found = box_scores([(truth, boxes, scores)])
    assert found["recall"] >= 0.8 and found["precision"] >= 0.8, found


def test_border_cells_are_counted_once_with_small_tiles(field: tuple[Path, np.ndarray]) -> None:
    """The same field read as one tile and as a 3 × 3 grid of small overlapping tiles (cells straddle its
    borders and corner) gives the same cells: none lost, none counted twice."""
    detector = shipped()
    path, truth = field
    with open_slide(path, Mpp(0.1)) as slide:
        whole = detect_cells(slide, whole_field(slide), detector)
        detector.tile_size = 160  # 64 µm tiles over a 102 µm field: 3 × 3, 30 µm overlap
        tiled = detect_cells(slide, whole_field(slide), detector)
    assert len(whole) >= 0.8 * len(truth)
    b = tiled.boxes()
    assert not np.triu(iou_matrix(b, b) >= 0.3, k=1).any(), "a cell was counted in two tiles"
    # the overlap guarantees whole cells up to OVERLAP_UM across; a megakaryocyte may be larger
    a, b = (c[np.maximum(c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]) < Mpp(0.1).px(OVERLAP_UM)] for c in (whole.boxes(), b))
    assert len(b) == len(a) > 0
    assert np.all(iou_matrix(a, b).max(axis=1) >= 0.5)


def test_segpc_fields_are_listed_repeat_times_and_others_once(tmp_path: Path) -> None:
    images = tmp_path / "images" / "train"
    images.mkdir(parents=True)
    for name in ("2044_0_0", "9520_0_0", "txl_pbc_1", "field_0003_0_0"):
        (images / f"{name}.png").write_bytes(b"")
    data = {"path": str(tmp_path), "train": "images/train", "val": "images/val", "names": {0: "cell"}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    out = yaml.safe_load(oversampled(tmp_path / "data.yaml", 3).read_text())
    assert out["val"] == "images/val" and out["names"] == {0: "cell"}
    listed = [Path(line).stem for line in Path(out["train"]).read_text().splitlines()]
    assert sorted(listed) == sorted(["2044_0_0"] * 3 + ["9520_0_0"] * 3 + ["txl_pbc_1", "field_0003_0_0"])
