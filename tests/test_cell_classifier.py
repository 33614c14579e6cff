"""Cell classifier: config round trip, predict() contract, shipped weights on real PBC cells, tamper refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bmpipe.datasets.catalog import DATASETS
from bmpipe.datasets.cell_data import PBC_PREFIXES, STORE_PX, held_out, load_folder
from bmpipe.errors import InputError, ModelError
from bmpipe.evaluation.classifier import PBC_GROUP_OF_CODE
from bmpipe.imaging.image_files import read_rgb
from bmpipe.nn.cell_classifier import (
    CLASSIFIER_MPP,
    CROP_PX,
    CellClassifier,
    CellNet,
    crop_centred,
    default_config,
    resample,
    rotate_batch,
)
from bmpipe.nn.weights import default_models_dir, load_weights, save_model
from bmpipe.train import classifier as train_classifier
from bmpipe.train.augment import Augment

torch.set_num_threads(2)
CODES = ("NGS", "EBO", "LYT", "PLM", "NIF")


def _tiny(tmp_path: Path, bias_code: str | None = None) -> CellClassifier:
    config = default_config(CODES)
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    torch.manual_seed(0)
    model = CellNet(config)
    if bias_code is not None:  # make every crop predict ``bias_code`` with certainty
        with torch.no_grad():
            model.class_head.weight.zero_()
            model.class_head.bias.fill_(-20.0)
            model.class_head.bias[CODES.index(bias_code)] = 20.0
    save_model(model, tmp_path, "classifier", "test", config)
    return CellClassifier.load(tmp_path, device="cpu")


def _crops(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, CROP_PX, CROP_PX, 3), dtype=np.uint8)


def test_round_trip_and_predict_contract(tmp_path: Path) -> None:
    clf = _tiny(tmp_path)
    assert clf.codes == CODES and clf.mpp == CLASSIFIER_MPP and clf.crop_px == CROP_PX
    assert clf.record.name == "classifier" and len(clf.record.sha256) == 64
    pred = clf.predict(_crops(), batch_size=4)
    assert pred.probs.shape == (6, len(CODES)) and pred.probs.dtype == np.float32
    np.testing.assert_allclose(pred.probs.sum(1), 1.0, atol=1e-5)
    assert pred.label.dtype == object and set(pred.label) <= set(CODES)
    for field in (pred.label_score, pred.dysplasia_score, pred.granule_grade, pred.dysplasia_grade):
        assert field.shape == (6,)
    assert ((pred.dysplasia_score >= 0) & (pred.dysplasia_score <= 1)).all()
    empty = clf.predict(np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8))
    assert empty.probs.shape == (0, len(CODES)) and len(empty) == 0


@pytest.mark.parametrize(
    ("code", "granule", "dysplasia"),
    [("LYT", {-1}, {-1}), ("PLM", {-1}, {-1}), ("EBO", {-1}, {0, 1}), ("NGS", {0, 1, 2, 3}, {0, 1, 2, 3})],
)
def test_grades_follow_the_predicted_lineage(tmp_path: Path, code: str, granule: set, dysplasia: set) -> None:
    pred = _tiny(tmp_path, code).predict(_crops())
    assert set(pred.label) == {code}
    assert set(pred.granule_grade.tolist()) <= granule
    assert set(pred.dysplasia_grade.tolist()) <= dysplasia
    if code == "NGS":
        np.testing.assert_array_equal(pred.granule_grade, pred.dysplasia_grade)


def test_uncertain_cells_are_not_identifiable(tmp_path: Path) -> None:
    clf = _tiny(tmp_path)
    with torch.no_grad():
        head = clf.model.class_head
        head.weight.zero_()
        head.bias.zero_()  # uniform over 5 codes: top probability 0.2 < threshold
    pred = clf.predict(_crops(3))
    assert list(pred.label) == ["NIF"] * 3
    assert (pred.granule_grade == -1).all() and (pred.dysplasia_grade == -1).all()


def _opinionated(tmp_path: Path) -> CellClassifier:
    """A random network whose class scores differ between views of a crop (an untrained head is too flat)."""
    clf = _tiny(tmp_path)
    with torch.no_grad():
        clf.model.class_head.weight.mul_(40.0)
    return clf


def test_a_second_look_gives_every_view_of_a_crop_the_same_class(tmp_path: Path) -> None:
    clf = _opinionated(tmp_path)
    crop = _crops(1)[0]
    views = np.stack([np.rot90(v, k) for v in (crop, crop[:, ::-1]) for k in range(4)])
    clf.second_look_below = 0.0
    plain = clf.predict(views).probs
    assert np.abs(plain - plain[0]).max() > 1e-3  # the network alone is not invariant
    clf.second_look_below = 1.01
    looked = clf.predict(views)
    np.testing.assert_allclose(looked.probs, np.repeat(looked.probs[:1], 8, 0), atol=1e-5)
    np.testing.assert_allclose(looked.probs.sum(1), 1.0, atol=1e-5)
    expected = np.exp(np.log(plain).mean(0))
    np.testing.assert_allclose(looked.probs[0], expected / expected.sum(), atol=1e-5)


def test_only_unsure_cells_get_a_second_look(tmp_path: Path) -> None:
    clf = _opinionated(tmp_path)
    crops = _crops(12)
    clf.second_look_below = 0.0
    plain = clf.predict(crops)
    clf.second_look_below = float(np.median(plain.label_score))
    looked = clf.predict(crops, batch_size=5)
    sure = plain.label_score >= clf.second_look_below
    assert 0 < sure.sum() < len(crops)
    np.testing.assert_array_equal(looked.probs[sure], plain.probs[sure])
    assert np.abs(looked.probs[~sure] - plain.probs[~sure]).max() > 1e-4
    np.testing.assert_array_equal(looked.dysplasia_score, plain.dysplasia_score)


def test_wrong_crop_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="crops must be uint8"):
        _tiny(tmp_path).predict(np.zeros((2, 64, 64, 3), np.uint8))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    _tiny(tmp_path)
    path = tmp_path / "classifier.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        CellClassifier.load(tmp_path, device="cpu")


def test_rotation_by_zero_is_identity() -> None:
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(rotate_batch(x, torch.zeros(2)), x, atol=1e-5, rtol=0)


def test_augment_shape_and_range() -> None:
    images = np.random.default_rng(1).integers(0, 256, (4, STORE_PX, STORE_PX, 3), dtype=np.uint8)
    out = Augment()(images, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, CROP_PX, CROP_PX) and out.min() >= 0 and out.max() <= 255


def test_swapped_surroundings_keep_the_cell_and_take_another_crops_surroundings() -> None:
    x = torch.stack([torch.full((3, 64, 64), float(v)) for v in (10, 200)])
    out = Augment(swap_p=1.0, swap_radius_px=(16.0, 16.0))._swap_surroundings(x, torch.Generator().manual_seed(0))
    centre, corner = out[:, :, 32, 32], out[:, :, 0, 0]
    torch.testing.assert_close(centre, x[:, :, 32, 32])
    torch.testing.assert_close(corner, x.flip(0)[:, :, 0, 0])  # two crops: each takes the other's


def test_no_swapped_surroundings_draws_nothing() -> None:
    """Off by default, and then a run's batches are those of a run before the option existed."""
    x, gen = torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0)
    assert Augment()._swap_surroundings(x, gen) is x
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())


def test_random_convolutions_change_texture_but_keep_each_crops_colour_means() -> None:
    gen = torch.Generator().manual_seed(0)
    x = 100 + 40 * torch.rand(6, 3, 32, 32, generator=gen)  # mid-range: the clamp to 0-255 does not bite
    x[5] = torch.tensor([90.0, 120.0, 150.0])[:, None, None]  # a flat crop has no texture to change
    out = Augment(random_conv_p=1.0, random_conv_kernels=(3,))._random_convolution(x, gen)
    torch.testing.assert_close(out.mean((2, 3)), x.mean((2, 3)), atol=0.5, rtol=0)
    assert ((out[:5] - x[:5]).abs().mean((1, 2, 3)) > 1).all()
    torch.testing.assert_close(out[5], x[5])


def test_no_random_convolutions_draw_nothing() -> None:
    """Off by default, and then a run's batches are those of a run before the option existed."""
    x, gen = torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0)
    assert Augment()._random_convolution(x, gen) is x
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())


def test_fourier_mix_swaps_only_the_lowest_frequencies_amplitudes() -> None:
    """Each crop gets another crop's mean colour (the zero frequency, always in the window) and keeps its own
    phase and every amplitude outside the window (at most 1 cycle across a 32 px crop at β 0.05)."""
    gen = torch.Generator().manual_seed(0)
    x = 60 + 120 * torch.rand(6, 3, 32, 32, generator=gen)
    x += 10 * torch.arange(6.0)[:, None, None, None]  # every crop its own mean: the donors can be told
    out = Augment(fourier_p=1.0, fourier_beta=0.05)._fourier_mix(x, gen)
    means, mixed_means = x.mean((1, 2, 3)), out.mean((1, 2, 3))
    torch.testing.assert_close(mixed_means.sort().values, means.sort().values, atol=0.01, rtol=0)
    assert ((mixed_means - means).abs() > 5).all()  # no crop kept its own
    before, after = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)), torch.fft.fftshift(torch.fft.fft2(out), dim=(-2, -1))
    far = (torch.arange(32) - 16).abs()
    outside = (far[:, None] > 1) | (far[None, :] > 1)
    torch.testing.assert_close(after.abs()[..., outside], before.abs()[..., outside], atol=0.05, rtol=1e-4)
    torch.testing.assert_close(torch.cos(after.angle() - before.angle()), torch.ones(6, 3, 32, 32), atol=1e-3, rtol=0)


def test_no_fourier_mix_draws_nothing() -> None:
    """Off by default, and then a run's batches are those of a run before the option existed."""
    x, gen = torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0)
    assert Augment()._fourier_mix(x, gen) is x
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())


def test_held_out_split_is_fixed_and_per_class() -> None:
    keys = [f"img{i}" for i in range(200)]
    groups = ["a"] * 100 + ["b"] * 100
    split = held_out(keys, groups)
    assert split[:100].sum() == 15 and split[100:].sum() == 15
    order = np.random.default_rng(0).permutation(200)  # the same files are held out in any listing order
    shuffled = held_out([keys[i] for i in order], [groups[i] for i in order])
    assert {keys[i] for i in order[shuffled]} == {k for k, s in zip(keys, split) if s}


def test_crop_centred_mirrors_outside() -> None:
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    assert crop_centred(image, 0, 0, 8).shape == (8, 8, 3)


def test_folder_layouts_image_folder_and_matek(tmp_path: Path) -> None:
    """Class-code folders, flat (ImageFolder) or nested (Matek's ``NGS/0001-1000/``); other folders skipped."""
    import cv2

    image = np.full((100, 100, 3), 200, np.uint8)
    for rel in ("NGS/a.png", "NGS/b.png", "lyt/c.png", "EBO/0001-1000/EBO_00001.jpg", "notes/d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), image)
    train, test = load_folder(tmp_path, CLASSIFIER_MPP)
    assert sorted([*train.codes, *test.codes]) == ["EBO", "LYT", "NGS", "NGS"]
    assert train.images.shape[1:] == (STORE_PX, STORE_PX, 3)


@pytest.mark.slow
def test_train_classifier_on_a_matek_layout_folder(tmp_path: Path) -> None:
    """``bmpipe train classifier --data`` on class-code folders with nested sub-folders (the public Matek
    layout) trains a head over exactly those codes, saves it with its card, and scores the held-out share."""
    import cv2

    from bmpipe.phantom import cell_crops

    data = tmp_path / "matek"
    images, codes, _, _ = cell_crops({"LYT": 8, "EBO": 8, "BAS": 8}, seed=5, mpp=CLASSIFIER_MPP, size_px=120)
    for i, (image, code) in enumerate(zip(images, codes)):
        path = data / code / f"{1 + (i // 5) * 5:04d}-{(i // 5 + 1) * 5:04d}" / f"{code}_{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    models = tmp_path / "models"
    argv = ["--data", str(data), "--mpp", "0.25", "--no-builtin", "--no-phantom", "--steps", "2",
            "--batch-size", "8", "--models", str(models), "--out", str(tmp_path / "work"), "--model-version", "t1"]
    assert train_classifier.main(argv) == 0
    _, config, record = load_weights(models, "classifier")
    assert record.version == "t1" and config["codes"] == ["BAS", "LYT", "EBO"]
    card = (models / "classifier.card.md").read_text()
    assert "### matek" in card and "| LYT | lymphocyte (typical) | matek: " in card


def test_width_scales_every_layer_and_one_is_the_shipped_size() -> None:
    assert default_config(CODES)["widths"] == [32, 64, 128, 192] and default_config(CODES)["stem"] == 24
    wide = default_config(CODES, 1.5)
    assert wide["stem"] == 32 and wide["widths"] == [48, 96, 192, 288]


def test_a_wider_network_started_from_a_narrower_one_computes_what_it_did(tmp_path: Path) -> None:
    """``--width`` with ``--init``: the old weights fill the first channels and the new channels feed nothing
    yet, so every head's output is the old network's (a new code's row aside); a narrower start is refused."""
    torch.manual_seed(0)
    old = CellNet(default_config(CODES))
    for m in old.modules():  # trained-looking BatchNorm, so that a wrong slice would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
    save_model(old, tmp_path, "classifier", "0.1", default_config(CODES))
    codes = ("BLA", *CODES)
    wide = CellNet(default_config(codes, 1.5))
    train_classifier.warm_start(wide, codes, tmp_path)
    x = torch.rand(4, 3, CROP_PX, CROP_PX) * 255
    with torch.no_grad():
        before, after = old.eval()(x), wide.eval()(x)
    torch.testing.assert_close(after[0][:, 1:], before[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(after[1], before[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(after[2], before[2], atol=1e-5, rtol=0)
    save_model(wide, tmp_path / "wide", "classifier", "0.2", default_config(codes, 1.5))
    with pytest.raises(InputError, match=r"classifier\.safetensors: its network \(stem 32, .* give --width"):
        train_classifier.warm_start(CellNet(default_config(codes)), codes, tmp_path / "wide")


def test_the_width_option_reaches_the_run(monkeypatch, tmp_path: Path, capsys) -> None:
    seen = {}

    def record(models, settings, *args, **kwargs):
        seen["width"] = settings.width
        raise SystemExit(0)

    monkeypatch.setattr(train_classifier, "train_classifier", record)
    with pytest.raises(SystemExit):
        train_classifier.main(["--width", "1.5", "--out", str(tmp_path)])
    assert seen["width"] == 1.5
    with pytest.raises(SystemExit):
        train_classifier.main(["--width", "0"])
    assert "--width takes a factor above 0" in capsys.readouterr().err


SHIPPED = default_models_dir() / "classifier.safetensors"
PBC = DATASETS["pbc"].path


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped classifier weights absent (models/classifier.safetensors)")
@pytest.mark.skipif(not PBC.is_dir(), reason="PBC images absent ($BMPIPE_DATA/pbc)")
def test_shipped_weights_get_real_pbc_groups_right() -> None:
    """Three held-out images per PBC class (never trained on) should land in the right group."""
    clf = CellClassifier.load(device="cpu")
    files = sorted(PBC.glob("*/*.jpg"))
    prefixes = [f.name.split("_")[0] for f in files]
    split = held_out([f.name for f in files], prefixes)
    chosen = []
    for prefix in PBC_PREFIXES:
        chosen += [f for f, p, t in zip(files, prefixes, split) if p == prefix and t][:3]
    crops = []
    for f in chosen:
        image = resample(read_rgb(f), DATASETS["pbc"].mpp, clf.mpp)
        crops.append(crop_centred(image, (image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2, clf.crop_px))
    pred = clf.predict(np.stack(crops))
    right = [PBC_GROUP_OF_CODE.get(str(p)) == f.parent.name for p, f in zip(pred.label, chosen)]
    assert np.mean(right) >= 0.8, list(zip([f.name for f in chosen], pred.label))
