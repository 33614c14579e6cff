"""Nucleated-cell detector: an ultralytics YOLO network built from its yaml, with bmpipe's own pre- and
post-processing around it.

The network is built from ultralytics' architecture yaml (``yolo11n.yaml``, one class: nucleated cell) and
filled with weights from a sha256-checked safetensors file, so nothing is downloaded and no pickle is ever
loaded. Tiles are fed to the network directly instead of through ultralytics' predictor, whose letterbox
rescales every image to ``imgsz``: the detector is trained at a fixed 0.4 µm/px and a cell must keep its size
in pixels (~25-50 px) whatever the tile size. Tiles are padded with their edge pixels to a multiple of the
network's stride (edge padding looks like slide, not like a black frame) and boxes are clipped back to the
tile. Overlapping boxes of one tile are merged by NMS; across tiles, the detection stage keeps each cell in
the one tile that owns its centre.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bmpipe.nn.tile_input import pad_to_stride, tile_batch
from bmpipe.nn.weights import ModelRecord, default_models_dir, load_weights
from bmpipe.resolution import Mpp

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported: no update checks, no downloads

from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils.nms import non_max_suppression

log = logging.getLogger(__name__)

NAME = "detector-yolo"
DETECTOR_MPP = Mpp(0.4)

#: Everything the network and its post-processing need; saved into the weights' metadata by training.
DEFAULT_CONFIG: dict[str, Any] = {
    "arch": "yolo11n.yaml",
    "names": ["nucleated_cell"],
    "mpp": DETECTOR_MPP.um_per_px,
    "tile_size": 512,
    "imgsz": 320,  # training images (128 µm); inference runs at any tile size
    "conf": 0.25,
    "iou": 0.5,
    "max_det": 1000,
}


def build_network(config: dict[str, Any]) -> DetectionModel:
    """The untrained network a config describes (architecture from the yaml shipped inside ultralytics)."""
    cfg = yaml_model_load(config["arch"])  # the yaml ultralytics ships, with its scale (n) from the name
    cfg["nc"] = len(config["names"])  # set here rather than passed, which ultralytics logs as an override
    return DetectionModel(cfg=cfg, verbose=False)


class YoloDetector:
    """Loaded, sha256-checked detector; ``detect`` takes tiles at ``mpp`` and returns boxes in tile pixels."""

    def __init__(self, network: DetectionModel, config: dict[str, Any], record: ModelRecord, device: str):
        self.config = config
        self.mpp = Mpp(config["mpp"])
        self.tile_size = int(config["tile_size"])
        self.record = record
        self.device = torch.device(device)
        self._stride = int(network.stride.max())
        self.network = network.to(self.device).eval()

    @classmethod
    def load(cls, models_dir: Path | None = None, device: str | None = None) -> YoloDetector:
        state, config, record = load_weights(models_dir or default_models_dir(), NAME)
        network = build_network(config)
        network.load_state_dict(state)
        network = network.fuse(verbose=False)  # conv + batch-norm folded: same output, faster
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        log.info("loaded %s %s (%s…) on %s", NAME, record.version, record.sha256[:12], device)
        return cls(network, config, record, device)

    def detect(self, tiles: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """tiles: (B, H, W, 3) uint8 RGB at ``self.mpp``. Per tile: boxes (N, 4) x0, y0, x1, y1 in tile
        pixels and scores (N,)."""
        tiles = tile_batch(tiles)
        if len(tiles) == 0:
            return []
        h, w = tiles.shape[1:3]
        x = torch.from_numpy(np.ascontiguousarray(pad_to_stride(tiles, self._stride))).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode(), torch.autocast(
            "cuda", dtype=torch.float16, enabled=self.device.type == "cuda"
        ):
            raw = self.network(x)
        raw = raw[0] if isinstance(raw, (tuple, list)) else raw
        kept = non_max_suppression(
            raw.float(), conf_thres=float(self.config["conf"]), iou_thres=float(self.config["iou"]),
            max_det=int(self.config["max_det"]), nc=len(self.config["names"]),
        )
        out = []
        for det in kept:
            det = det.cpu().numpy().astype(np.float64)
            boxes = det[:, :4]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            out.append((boxes, det[:, 4]))
        return out
