"""Fuzzing the slide opener with mutated TIFF bytes: every mutant ends in a clear SlideError or a usable slide.

The mutants are opened in a child process, because the failure this guards against is a C library (libtiff,
OpenSlide, libjpeg) crashing the whole process, which would take every other slide of a batch with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: Mutants per seed file: enough to reach header, IFD and tile-data corruptions in a few seconds.
MUTANTS = 150


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random corruption of the kinds seen in the wild: flipped bytes, a cut, a splice, a zeroed run."""
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # a few flipped bytes, biased to the header and first IFD where the structure is
        for _ in range(int(rng.integers(1, 8))):
            pos = int(rng.integers(0, min(len(buf), 512))) if rng.random() < 0.6 else int(rng.integers(len(buf)))
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncated
        buf = buf[: int(rng.integers(8, len(buf)))]
    elif kind == 2:  # a chunk copied over another place (offsets now point into the wrong structure)
        a, b = sorted(int(v) for v in rng.integers(0, len(buf), 2))
        n = int(rng.integers(4, 64))
        buf[b : b + n] = buf[a : a + n]
    else:  # a run of zeros or 0xFF (a dead sector, a wiped length field)
        pos, n = int(rng.integers(len(buf))), int(rng.integers(2, 32))
        buf[pos : pos + n] = bytes([0xFF if rng.random() < 0.5 else 0]) * len(buf[pos : pos + n])
    return bytes(buf)


def _open_all(folder: Path) -> dict[str, str]:
    """Child process: open and read every file; return ``{name: outcome}`` where outcome is ``ok`` or
    ``SlideError`` — anything else (another exception type) is reported by its type name."""
    from bmpipe.errors import BmpipeError
    from bmpipe.slide import open_slide

    outcomes = {}
    for path in sorted(folder.iterdir()):
        try:
            with open_slide(path, mpp=0.25) as slide:
                w, h = slide.dimensions
                slide.read_region(0, 0, min(w, 64), min(h, 64), slide.mpp)
                slide.read_region(w // 2, h // 2, 48, 48, slide.mpp)
                slide.overview(max_side=64)
            outcomes[path.name] = "ok"
        except BmpipeError:
            outcomes[path.name] = "SlideError"
        except Exception as err:  # noqa: BLE001 - the test reports which exception escaped
            outcomes[path.name] = f"{type(err).__name__}: {err}"
    return outcomes


def _pyramid(path: Path) -> Path:
    from bmpipe.resolution import Mpp
    from bmpipe.slide import write_pyramidal_tiff

    rng = np.random.default_rng(0)

    def render(x: int, y: int, w: int, h: int) -> np.ndarray:
        return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)

    write_pyramidal_tiff(path, 700, 500, Mpp(0.25), render, tile=256)
    return path


@pytest.fixture(scope="module")
def seeds(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    made = tmp_path_factory.mktemp("fuzz-seeds")
    return [
        data_dir / "wsi" / "openslide-boxes.tiff",
        data_dir / "wsi" / "small_HE_levels.tiff",
        data_dir / "wsi" / "openslide-small.svs",
        _pyramid(made / "pyramid.tiff"),
    ]


def test_mutated_tiffs_end_in_a_slide_error_or_a_valid_slide(seeds: list[Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(20261122)
    for seed in seeds:
        data = seed.read_bytes()
        for i in range(MUTANTS):
            (tmp_path / f"{seed.stem}-{i:03d}{seed.suffix}").write_bytes(_mutate(data, rng))
    child = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert child.returncode == 0, f"the opener crashed the process (exit {child.returncode}): {child.stderr[-2000:]}"
    outcomes = json.loads(child.stdout)
    assert len(outcomes) == MUTANTS * len(seeds)
    escaped = {name: o for name, o in outcomes.items() if o not in ("ok", "SlideError")}
    assert not escaped, f"errors that are not a clear SlideError: {escaped}"
    # The mutants are not all refused (a test that cannot fail) nor all accepted (mutations that do nothing).
    kinds = set(outcomes.values())
    assert kinds == {"ok", "SlideError"}, kinds


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_open_all(Path(sys.argv[1]))))
