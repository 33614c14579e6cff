"""The real public data sets bmpipe trains on, read by path from ``$BMPIPE_DATA`` (default ``../shared/data``).

None of them states its pixel size, so each resolution below is estimated from objects of known size and
recorded with how it was measured; training resamples every image to the model's µm/px with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bmpipe.resolution import Mpp


def data_root() -> Path:
    """``$BMPIPE_DATA`` or the ``shared/data`` folder beside the repository."""
    env = os.environ.get("BMPIPE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class RealDataset:
    name: str
    folder: str
    mpp: Mpp
    measured: str
    licence: str

    @property
    def path(self) -> Path:
        return data_root() / self.folder


DATASETS = {
    d.name: d
    for d in (
        RealDataset(
            "pbc", "pbc", Mpp(0.104),
            "median equivalent diameter 72 px of 807 isolated, round red cells (Otsu on green, solidity > 0.95, "
            "aspect < 1.2; 400 random images) taken as 7.5 µm; cross-check: segmented neutrophils then measure "
            "14.3 µm, lymphocytes 10.4 µm (Acevedo 2020 images, CellaVision DM96)",
            "CC BY 4.0",
        ),
        RealDataset(
            "txl_pbc", "txl_pbc", Mpp(0.104),
            "median equivalent diameter ~71 px of isolated round red cells (the pbc rule) taken as 7.5 µm; true "
            "of its 360×363 (PBC) and 416×416 fields only: it merges sources whose fields differ, 575×575 "
            "~0.062 (red cells ~121 px), 640×480 (= BCCD fields) ~0.083 (per-size values in "
            "bmpipe.datasets.detector_data.TXL_PBC_MPP)",
            "MIT",
        ),
        RealDataset(
            "bccd", "bccd/BCCD", Mpp(0.083),
            "median equivalent diameter ~90 px of isolated round red cells (the pbc rule, 104 cells in 150 "
            "fields) taken as 7.5 µm",
            "MIT",
        ),
        RealDataset(
            "segpc", "segpc/train", Mpp(0.185),
            "burnt-in 10 µm scale bar ~54 px long on the 263 fields letterboxed with 60 rows (red cells there "
            "~40-45 px); the 35 fields with 64 rows of letterbox (ids 106-606, no bar) are ~0.23, from "
            "plasma-cell and red-cell size (per-field values in bmpipe.datasets.detector_data)",
            "CC BY-NC-SA 4.0",
        ),
    )
}
