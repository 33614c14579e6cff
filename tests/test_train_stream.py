"""Training on a lab's own or Matek-sized data: folders streamed from disk, checkpoints, resume, the bench."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bmpipe import benchmark_training
from bmpipe.datasets.cell_data import STORE_PX, CropSet, load_folder, store_crops
from bmpipe.datasets.crop_store import LazyCrops
from bmpipe.errors import InputError
from bmpipe.nn.cell_classifier import CLASSIFIER_MPP, CellNet, default_config
from bmpipe.train import classifier as train_classifier

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchmark_training.matek_tree(tmp_path_factory.mktemp("matek"), 120, seed=1)


def _small_net(codes: tuple[str, ...]) -> CellNet:
    config = default_config(codes)
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    torch.manual_seed(0)
    return CellNet(config)


def test_a_streamed_folder_holds_paths_and_reads_pixels_only_when_asked(tree: Path, caplog) -> None:
    train, held = load_folder(tree, CLASSIFIER_MPP, name="matek", stream=True)
    assert isinstance(train.images, LazyCrops) and not train.images.in_memory
    assert isinstance(held.images, np.ndarray) and len(held) and not set(held.paths) & set(train.paths)
    rows = np.array([3, 0, 7])
    crops, ok = train.read(rows)
    expected, _ = store_crops([Path(p) for p in train.paths[rows]], CLASSIFIER_MPP)
    assert ok.all() and crops.shape == (3, STORE_PX, STORE_PX, 3) and np.array_equal(crops, expected)

    Path(train.paths[0]).write_bytes(b"not a jpeg")
    with caplog.at_level(logging.ERROR):
        crops, ok = train.read(rows)
    assert ok.tolist() == [True, False, True] and train.paths[0] in caplog.text
    assert len(train.subset(np.arange(5)).materialise()) == 4  # the broken file left out, the rest read


def test_in_memory_and_streamed_crops_join_into_one_set(tree: Path) -> None:
    streamed, _ = load_folder(tree, CLASSIFIER_MPP, name="matek", stream=True)
    streamed = streamed.subset(np.arange(1, 6))
    memory = CropSet(np.full((2, STORE_PX, STORE_PX, 3), 7, np.uint8), np.array(["LYT", "EBO"], "U8"),
                     np.array(["phantom"] * 2, "U16"), np.array(["", ""]), np.full(2, -1, np.int8),
                     np.full(2, -1, np.int8))
    both = CropSet.concat([memory, streamed])
    crops, ok = both.read(np.array([6, 0, 2]))
    assert ok.all() and (crops[1] == 7).all()
    assert np.array_equal(crops[0], streamed.read(np.array([4]))[0][0])
    assert np.array_equal(crops[2], streamed.read(np.array([0]))[0][0])


def _interrupt_after(n: int):
    real = train_classifier.batches

    def batches(*args, **kwargs):
        stream = real(*args, **kwargs)
        for _ in range(n):
            yield next(stream)
        stream.close()
        raise KeyboardInterrupt

    return batches


def test_an_interrupted_run_resumed_ends_with_the_weights_of_an_uninterrupted_one(tree: Path, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    data, _ = load_folder(tree, CLASSIFIER_MPP, name="matek", stream=True)
    codes = tuple(sorted(set(data.codes)))
    settings = train_classifier.TrainSettings(steps=6, batch_size=8, domain_weight=0.0, workers=2,
                                              checkpoint=tmp_path / "ckpt.pt", checkpoint_minutes=1e9)
    whole, stats = train_classifier.fit(_small_net(codes), data, codes, settings)
    assert stats["steps"] == 6 and stats["crops_per_s"] > 0 and stats["peak_rss_mb"] > 0

    with monkeypatch.context() as m:
        m.setattr(train_classifier, "batches", _interrupt_after(3))
        with pytest.raises(KeyboardInterrupt):
            train_classifier.fit(_small_net(codes), data, codes, settings)
    assert torch.load(settings.checkpoint, weights_only=True)["step"] == 3

    fresh = _small_net(codes)
    torch.manual_seed(123)  # the checkpoint's random state, not this one, must drive the rest of the run
    resumed, stats = train_classifier.fit(fresh, data, codes, replace(settings, resume=True))
    assert stats["steps"] == 6
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tree: Path, tmp_path: Path, monkeypatch) -> None:
    data, _ = load_folder(tree, CLASSIFIER_MPP, name="matek", stream=True)
    codes = tuple(sorted(set(data.codes)))
    settings = train_classifier.TrainSettings(steps=4, batch_size=8, domain_weight=0.0, workers=0,
                                              checkpoint=tmp_path / "ckpt.pt")
    monkeypatch.setattr(train_classifier, "batches", _interrupt_after(1))
    with pytest.raises(KeyboardInterrupt):
        train_classifier.fit(_small_net(codes), data, codes, settings)
    other = replace(settings, seed=1, resume=True)
    with pytest.raises(InputError, match="other data, codes or schedule"):
        train_classifier.fit(_small_net(codes), data, codes, other)
    missing = replace(settings, checkpoint=tmp_path / "none.pt", resume=True)
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        train_classifier.fit(_small_net(codes), data, codes, missing)


def test_resume_without_a_work_folder_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        train_classifier.main(["--resume", "--no-builtin", "--steps", "1"])
    assert exit_.value.code == 2 and "--resume needs --out" in capsys.readouterr().err


@pytest.mark.slow
def test_the_training_bench_times_the_real_command_on_two_generated_trees(tmp_path: Path) -> None:
    rows = benchmark_training.run(200, steps=2, batch_size=8, threads=2, scratch=tmp_path)
    assert [r["images"] for r in rows] == [50, 200]
    assert all(r["crops_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    files = sorted((tmp_path / "tree200").rglob("*.jpg"))
    assert len(files) == 200 and files[0].parent.name == "0001-1000"
    assert "peak memory, 200 vs 50 images" in benchmark_training.table(rows)
