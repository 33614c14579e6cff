"""Transfer: the pieces that make the classifier hold on real cells it never trained on, and the scores that
say whether it does (BCCD and wbc_seg stay out of training; SegPC non-plasma cells are taught as not PLM)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from bmpipe.datasets.catalog import DATASETS
from bmpipe.datasets.cell_data import (
    STORE_PX,
    WHITE_CELL_IS_NOT,
    CropSet,
    empty_cropset,
    load_segpc,
    load_txl_white_cells,
)
from bmpipe.datasets.detector_data import SEGPC_MPP_BY_PAD, segpc_mpp, segpc_picture
from bmpipe.evaluation import classifier as evaluation_classifier
from bmpipe.evaluation import transfer
from bmpipe.evaluation.transfer import (
    GroupedCells,
    TransferSets,
    bccd_cells,
    change_from,
    compare_transfer,
    evaluate_transfer,
    format_transfer,
    held_back_codes,
    recall_at_false_calls,
    score_synthetic_only,
)
from bmpipe.imaging.image_files import read_rgb
from bmpipe.nn.cell_classifier import (
    CLASSIFIER_MPP,
    CROP_PX,
    MIN_REAL_IMAGES,
    CellClassifier,
    CellNet,
    default_config,
)
from bmpipe.nn.stain import StainCheck, colour_descriptors, unlike_share
from bmpipe.nn.weights import save_model
from bmpipe.records import Cells
from bmpipe.stages.aggregate import differential
from bmpipe.train import classifier as train_classifier
from bmpipe.train.augment import eosin_tint

torch.set_num_threads(2)
BMPIPE = Path(__file__).resolve().parents[1] / "bmpipe"


def test_training_code_never_reads_the_transfer_sets() -> None:
    """BCCD subtypes and wbc_seg are the transfer test: no module under bmpipe/train may name their files
    (as a string it could open) or import their readers."""
    for path in (BMPIPE / "train").rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value != "wbc_seg" and "wbc_subtype_labels" not in node.value, path
            if isinstance(node, ast.ImportFrom) and node.module == "bmpipe.evaluation.transfer":
                assert not {a.name for a in node.names} & {"bccd_cells", "wbc_seg_cells"}, path


SEGPC_BAND = (208, 196, 210)


def _letterboxed_field(top: int, bottom: int) -> np.ndarray:
    field = np.full((512, 512, 3), SEGPC_BAND, np.uint8)
    field[top : 512 - bottom] = np.random.default_rng(0).integers(60, 180, (512 - top - bottom, 512, 3))
    return field


@pytest.mark.parametrize("rows, expected", [(63, 0.185), (64, 0.23)])
def test_segpc_cameras_are_told_apart_by_their_letterbox(rows: int, expected: float) -> None:
    assert segpc_mpp(_letterboxed_field(rows, rows)).um_per_px == expected
    assert set(SEGPC_MPP_BY_PAD) == {63, 64}


def test_segpc_picture_cuts_both_letterbox_bands_and_says_how_many_rows_lay_above() -> None:
    picture, top = segpc_picture(_letterboxed_field(63, 64))
    assert (top, picture.shape[0]) == (63, 512 - 63 - 64)
    unboxed = np.random.default_rng(1).integers(60, 180, (100, 80, 3)).astype(np.uint8)
    picture, top = segpc_picture(unboxed)
    assert top == 0 and picture.shape == unboxed.shape


def test_segpc_crops_near_the_letterbox_show_mirrored_picture_not_the_band(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    field = _letterboxed_field(63, 63)
    cv2.imwrite(str(tmp_path / "images" / "1.jpg"), field[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
    mask = np.zeros((512, 512), np.uint8)
    cv2.circle(mask, (256, 80), 15, 255, -1)  # a plasma cell 17 rows below the band
    cv2.imwrite(str(tmp_path / "masks" / "1.jpg"), mask)
    crops = CropSet.concat(load_segpc(tmp_path)).images
    assert len(crops) == 1
    band_like = (np.abs(crops[0].astype(int) - SEGPC_BAND) <= 6).all(axis=-1)
    assert band_like.mean() < 0.01


def test_not_code_loss_is_minus_log_of_not_being_any_of_those_codes() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    p = torch.softmax(logits, 1)
    loss = train_classifier.not_code_loss(logits, torch.tensor([[True, False, False], [False, True, True]]))
    expected = -(torch.log(1 - p[0, 0]) + torch.log(1 - p[1, 1] - p[1, 2])) / 2
    assert torch.isclose(loss, expected)


def _cropset(codes: list[str], sources: list[str], not_codes: list[str] | None = None) -> CropSet:
    n = len(codes)
    return CropSet(np.zeros((n, 8, 8, 3), np.uint8), np.array(codes, "U8"), np.array(sources, "U16"),
                   np.full(n, "", "U256"), np.full(n, -1, np.int8), np.full(n, -1, np.int8),
                   None if not_codes is None else np.array(not_codes, "U32"))


def test_sampler_draws_negatives_at_their_share_and_classes_evenly() -> None:
    data = _cropset(["LYT"] * 50 + ["PLM"] * 5 + [""] * 40, ["pbc"] * 50 + ["segpc"] * 5 + ["segpc-other"] * 40,
                    [""] * 55 + ["PLM"] * 40)
    sampler = train_classifier.BalancedSampler(data, ("LYT", "PLM"), 0.65, seed=0, negative_fraction=0.2)
    drawn = np.concatenate([sampler.batch(100, step) for step in range(50)])
    kind = np.array(["neg" if c == "" else c for c in data.codes])[drawn]
    assert abs(np.mean(kind == "neg") - 0.2) < 0.03
    assert abs(np.mean(kind == "LYT") - np.mean(kind == "PLM")) < 0.05
    no_negatives = data.subset(np.arange(55))
    assert train_classifier.BalancedSampler(no_negatives, ("LYT", "PLM"), 0.65, 0, 0.2).negative_fraction == 0.0


def test_each_source_of_negatives_is_drawn_at_the_negative_share() -> None:
    """A second set of cells known by what they are not (another lab's white cells) does not thin the first."""
    data = _cropset(["LYT"] * 50 + [""] * 40 + [""] * 10, ["pbc"] * 50 + ["segpc-other"] * 40 + ["txl-white"] * 10,
                    [""] * 50 + ["PLM"] * 40 + ["ART KSC"] * 10)
    sampler = train_classifier.BalancedSampler(data, ("LYT",), 0.65, seed=0, negative_fraction=0.1)
    source = data.sources[np.concatenate([sampler.batch(100, step) for step in range(50)])]
    assert abs(np.mean(source == "segpc-other") - 0.1) < 0.02 and abs(np.mean(source == "txl-white") - 0.1) < 0.02


def test_crop_normalised_network_ignores_a_labs_colour_cast_and_contrast() -> None:
    """With ``input_norm: crop`` a white-balance shift and a contrast change do not change the output."""
    torch.manual_seed(0)
    config = default_config(("LYT", "NGS", "PLM"))
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    net = CellNet(config).eval()
    x = torch.rand(4, 3, CROP_PX, CROP_PX) * 120 + 60
    cast = (x - 128) * 1.5 + 128 + torch.tensor([20.0, -10.0, 5.0]).view(1, 3, 1, 1)
    seen, seen_cast = net.normalise(x), net.normalise(cast)
    assert (seen - seen_cast).abs().max() < 0.03 * seen.abs().max()  # up to the floor under the contrast
    config["input_norm"] = "fixed"  # classifiers before 2.0 see the cast
    fixed = CellNet(config).eval()
    assert (fixed.normalise(x) - fixed.normalise(cast)).abs().max() > 0.2 * fixed.normalise(x).abs().max()


def _lab_folder(tmp_path: Path) -> Path:
    """A lab's class-code folder of 14 lymphocytes and 14 erythroblasts (drawn cells at the classifier's scale)."""
    from bmpipe.phantom import cell_crops

    root = tmp_path / "lab"
    images, codes, _, _ = cell_crops({"LYT": 14, "EBO": 14}, seed=3, mpp=CLASSIFIER_MPP, size_px=120)
    for i, (image, code) in enumerate(zip(images, codes)):
        (root / code).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / code / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


def test_synthetic_only_codes_leave_their_real_images_out(tmp_path: Path) -> None:
    """``--synthetic-only LYT`` trains on no real lymphocyte; the held-out real ones are still there to score."""
    root = _lab_folder(tmp_path)
    settings = train_classifier.TrainSettings(synthetic_only=("LYT",))
    data = train_classifier.gather_data(settings, [(root, CLASSIFIER_MPP)], builtin=False, phantom=False)
    assert "LYT" not in set(data.train.codes) and "EBO" in set(data.train.codes)
    assert "LYT" in set(data.held_out["lab"].codes)


def test_keep_real_keeps_that_many_real_images_of_each_synthetic_only_code(tmp_path: Path) -> None:
    """``--keep-real 3``: a lab that has labelled three lymphocytes; its other real lymphocytes stay out."""
    root = _lab_folder(tmp_path)

    def kept(k: int, seed: int = 0) -> set[str]:
        settings = train_classifier.TrainSettings(synthetic_only=("LYT", "EBO"), keep_real=k, seed=seed)
        data = train_classifier.gather_data(settings, [(root, CLASSIFIER_MPP)], builtin=False, phantom=False)
        assert data.held_out["lab"].codes.tolist().count("LYT") == 2  # the held-out split does not move
        return set(data.train.paths.tolist())

    three = kept(3)
    assert sorted(Path(p).parent.name for p in three) == ["EBO"] * 3 + ["LYT"] * 3
    assert kept(3) == three and kept(3, seed=1) != three and three < kept(5)
    assert len(kept(100)) == 24  # all 12 training images of each, when fewer than K


@pytest.mark.parametrize("args", [["--keep-real", "5"], ["--synthetic-only", "LYT", "--keep-real", "-1"]])
def test_keep_real_without_synthetic_only_or_below_zero_is_a_usage_error(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        train_classifier.main(["--no-builtin", "--steps", "1", *args])
    assert exit_.value.code == 2 and "--keep-real takes a count of 0 or more" in capsys.readouterr().err


def _classifier(tmp_path: Path, learned_from: dict[str, list[str]], dysplasia: list[str],
                **recorded: Any) -> CellClassifier:
    config = default_config(("BLA", "LYT", "PLM"))
    config.update(stem=8, widths=[8, 16], depths=[1, 1], learned_from=learned_from,
                  dysplasia_learned_from=dysplasia, **recorded)
    save_model(CellNet(config), tmp_path, "classifier", "t", config)
    return CellClassifier.load(tmp_path, device="cpu")


def test_classes_learned_only_from_phantom_cells_are_known_to_the_model(tmp_path: Path) -> None:
    clf = _classifier(tmp_path, {"BLA": ["phantom"], "LYT": ["pbc", "phantom"], "PLM": ["segpc"]}, ["phantom"])
    assert clf.synthetic_only == ("BLA",) and clf.dysplasia_synthetic_only


def test_a_class_taught_by_phantom_cells_and_a_few_real_ones_is_still_marked(tmp_path: Path) -> None:
    """A lab's fine-tune on five of its own blasts: BLA is no longer learned only from phantom cells, but too
    few real ones to count as shown; a class with enough real images, or none phantom, is not marked."""
    learned = {"BLA": ["lab", "phantom"], "LYT": ["pbc", "phantom"], "PLM": ["segpc"]}
    few = _classifier(tmp_path / "few", learned, [], real_images={"BLA": 5, "LYT": MIN_REAL_IMAGES, "PLM": 3})
    assert few.synthetic_only == ("BLA",)
    enough = _classifier(tmp_path / "enough", learned, [], real_images={"BLA": MIN_REAL_IMAGES, "LYT": 400, "PLM": 3})
    assert enough.synthetic_only == ()
    assert _classifier(tmp_path / "unrecorded", learned, []).synthetic_only == ()  # judged on its sources


def test_the_card_says_which_classes_had_too_few_real_images() -> None:
    n = MIN_REAL_IMAGES + 3
    codes = ["BLA"] * 8 + ["LYT"] * n
    sources = ["phantom"] * 3 + ["lab"] * 5 + ["phantom"] * 3 + ["pbc"] * MIN_REAL_IMAGES
    data = CropSet(np.zeros((len(codes), 1, 1, 3), np.uint8), np.array(codes, "U8"), np.array(sources, "U16"),
                   np.array([f"{i}.png" for i in range(len(codes))], "U256"), np.full(len(codes), -1, np.int8),
                   np.full(len(codes), -1, np.int8))
    assert train_classifier.real_images(data, ("BLA", "LYT")) == {"BLA": 5, "LYT": MIN_REAL_IMAGES}
    rows = train_classifier._provenance(data, ("BLA", "LYT"), {})
    assert f"| BLA | blast | lab: 5 | 3 | phantom + FEWER THAN {MIN_REAL_IMAGES} REAL (reported as unvalidated) |" in rows[2]
    assert "| REAL + phantom |" in rows[3]


def _cells(labels: list[str]) -> Cells:
    n = len(labels)
    z = np.zeros(n)
    return Cells(z, z, z, z, z + 1, z + 1, z + 1, label=np.array(labels, object), label_score=z + 1,
                 dysplasia_grade=np.full(n, -1), dysplasia_score=z)


def test_findings_resting_on_synthetic_only_classes_say_so() -> None:
    cells = _cells(["BLA"] * 30 + ["LYT"] * 400 + ["PLM"] * 70)
    marked = differential(cells, "s", synthetic_only=("BLA",))
    plain = differential(cells, "s")
    blast = [f.text for f in marked.findings if f.kind == "blasts"]
    assert blast and all("learned from synthetic (phantom) cells with no or too few real ones" in t and "BLA" in t
                         for t in blast)
    assert not any("synthetic" in f.text for f in plain.findings)
    plasma = [f.text for f in marked.findings if f.kind == "plasma_cells"]
    assert plasma and not any("synthetic" in t for t in plasma)
    assert marked.as_dict()["synthetic_only"] == ("BLA",)


def test_report_marks_synthetic_only_classes(tmp_path: Path) -> None:
    from bmpipe.report.content import ReportContent, SlideSummary

    diff = differential(_cells(["BLA"] * 30 + ["LYT"] * 470), "s", synthetic_only=("BLA",))
    content = ReportContent(SlideSummary("s", "s.tiff", "0.25 µm/px", "user", (10, 10), "image"), "now", "bmpipe",
                            [], "readable", diff, {})
    rows = {r["code"]: r["name"] for r in content.differential_rows()}
    assert rows["BLA"].endswith("†") and not rows["LYT"].endswith("†")
    assert "BLA" in content.synthetic_note()
    assert empty_cropset().not_codes.shape == (0,)


def test_a_slide_unlike_a_romanowsky_stain_is_warned_about() -> None:
    cells = _cells(["LYT"] * 400 + ["NGS"] * 100)
    cells.stain_score = np.where(np.arange(500) < 100, 0.1, 0.9)
    typical = differential(cells, "s")
    assert typical.domain_warning == "" and typical.unlike_stain_share == pytest.approx(0.2)
    assert not any(f.kind == "domain" for f in typical.findings)
    cells.stain_score = np.where(np.arange(500) < 400, 0.1, 0.9)
    odd = differential(cells, "s")
    assert "80% of these cells do not look stained like a Wright-Giemsa" in odd.domain_warning
    assert odd.findings[0].kind == "domain" and odd.findings[0].borderline
    cells.stain_score = np.full(500, np.nan)  # a classifier without a stain check cannot judge
    assert differential(cells, "s").domain_warning == ""


def test_stain_check_tells_stained_crops_from_grey_and_pink_ones() -> None:
    rng = np.random.default_rng(0)
    n = 200
    base = rng.integers(0, 60, (3 * n, 32, 32, 1)).astype(np.float32)
    purple = np.clip(base * [1.0, 1.8, 0.6] + [150, 110, 170], 0, 255).astype(np.uint8)  # Giemsa-like nuclei
    pink = np.clip(base * [0.3, 1.5, 0.8] + [200, 120, 160], 0, 255).astype(np.uint8)  # eosin-like
    grey = purple.mean(3, keepdims=True).astype(np.uint8).repeat(3, 3)
    check = StainCheck.fit(purple[:n], np.concatenate([grey[:n], pink[:n]]))
    assert unlike_share(check.score(purple[n:])) < 0.05
    assert unlike_share(check.score(grey[n:])) > 0.95 and unlike_share(check.score(pink[n:])) > 0.95
    again = StainCheck.from_config(check.as_config())
    np.testing.assert_allclose(again.score(purple[n:]), check.score(purple[n:]), atol=1e-4)
    assert StainCheck.from_config(None) is None


def test_a_stain_outside_every_training_source_s_range_is_unlike_whatever_the_regression_says() -> None:
    """A look the regression was never shown (a yellow background, brown nuclei: a rapid stain that is neither
    Romanowsky nor H&E) can land on the Romanowsky side of it; the range check calls it unlike."""
    rng = np.random.default_rng(0)
    n = 200
    base = rng.integers(0, 60, (3 * n, 32, 32, 1)).astype(np.float32)
    purple = np.clip(base * [1.0, 1.8, 0.6] + [150, 110, 170], 0, 255).astype(np.uint8)
    bluer = np.clip(base * [1.2, 1.6, 0.5] + [140, 110, 185], 0, 255).astype(np.uint8)  # a second source
    grey = purple.mean(3, keepdims=True).astype(np.uint8).repeat(3, 3)
    yellow = purple.copy()
    yellow[..., 2] = (yellow[..., 2] * 0.55).astype(np.uint8)  # blue absorbed everywhere: a yellow cast
    regression = StainCheck.fit(np.concatenate([purple[:n], bluer[:n]]), grey[:n])
    assert unlike_share(regression.score(yellow[n:])) < 0.5  # the regression alone takes it for Romanowsky
    check = StainCheck.fit(np.concatenate([purple[:n], bluer[:n]]), grey[:n], np.repeat(["a", "b"], n))
    assert unlike_share(check.score(yellow[n:])) > 0.95
    assert unlike_share(check.score(purple[n:])) < 0.05 and unlike_share(check.score(bluer[n:])) < 0.05
    assert unlike_share(check.score(grey[n:])) > 0.95
    again = StainCheck.from_config(check.as_config())
    np.testing.assert_array_equal(again.score(yellow[n:]) == 0, check.score(yellow[n:]) == 0)
    assert StainCheck.from_config(regression.as_config()).low is None  # a check fitted before ranges existed


def test_a_colour_figure_a_little_past_the_range_is_tolerated_and_far_past_it_is_not() -> None:
    crop = np.random.default_rng(1).integers(60, 230, (1, 32, 32, 3)).astype(np.uint8)
    d = colour_descriptors(crop)[0]
    ten = np.zeros(10, np.float32)
    for past, unlike in ((0.1, False), (0.4, True)):  # as shares of the range's width (1 here)
        check = StainCheck(ten, ten + 1, ten, 10.0, d + past, d + past + 1)  # the regression says Romanowsky
        assert bool(check.score(crop)[0] == 0) is unlike, past


def test_reversed_gradient_and_the_rows_domain_alignment_uses() -> None:
    x = torch.ones(3, requires_grad=True)
    train_classifier._ReverseGradient.apply(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))
    data = _cropset(["LYT", "LYT", "BLA", "PLM"], ["pbc", "phantom", "phantom", "segpc"])
    assert train_classifier.shared_codes(data, ("LYT", "BLA", "PLM")).tolist() == [True, True, False, False]


def test_fit_with_domain_alignment_trains_and_leaves_no_critic_in_the_model() -> None:
    rng = np.random.default_rng(0)
    n = 24
    data = CropSet(rng.integers(0, 255, (n, 128, 128, 3), dtype=np.uint8), np.array(["LYT", "NGS"] * 12, "U8"),
                   np.array(["pbc"] * 12 + ["phantom"] * 12, "U16"), np.full(n, "", "U256"),
                   np.full(n, -1, np.int8), np.full(n, -1, np.int8))
    config = default_config(("LYT", "NGS"))
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    settings = train_classifier.TrainSettings(steps=3, batch_size=8, domain_weight=0.3, negative_fraction=0.0)
    model, stats = train_classifier.fit(CellNet(config), data, ("LYT", "NGS"), settings)
    assert stats["steps"] == 3
    assert set(model.state_dict()) == set(CellNet(config).state_dict())


def test_negatives_the_network_is_sure_are_that_code_are_not_trusted() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0], [-2.0, 1.0, 0.0]])  # p(code 0): 0.96, 0.04
    code_0 = torch.tensor([[True, False, False]] * 2)
    both = train_classifier.not_code_loss(logits, code_0)
    trusted = train_classifier.not_code_loss(logits, code_0, trust=0.5)
    second = train_classifier.not_code_loss(logits[1:], code_0[1:])
    assert torch.isclose(trusted, second / 2) and both > trusted
    per_row = train_classifier.not_code_loss(logits, code_0, trust=torch.tensor([1.0, 0.5]))
    assert torch.isclose(per_row, both)  # the first row is trusted by its own source's rule
    assert train_classifier.NEGATIVE_TRUST["segpc-other"] < 1.0 and "txl-white" not in train_classifier.NEGATIVE_TRUST


def _first_batch(images: np.ndarray, **option: float) -> torch.Tensor:
    """The first augmented training batch (8 crops, seed 0) of ``images``, half LYT and half NGS, with one
    augmentation ``option`` of :class:`TrainSettings`."""
    n = len(images)
    data = CropSet(images, np.array(["LYT", "NGS"] * (n // 2), "U8"), np.full(n, "pbc", "U16"),
                   np.full(n, "", "U256"), np.full(n, -1, np.int8), np.full(n, -1, np.int8))
    sampler = train_classifier.BalancedSampler(data, ("LYT", "NGS"), 0.8, seed=0)
    settings = train_classifier.TrainSettings(batch_size=8, workers=0, **option)
    return next(train_classifier.batches(data, sampler, settings))[1]


def test_swapped_surroundings_reach_the_training_batches() -> None:
    """``--swap-surroundings``: training batches keep each crop's centre and change its corners."""
    values = np.arange(16, dtype=np.uint8) * 15 + 10
    flat = np.broadcast_to(values[:, None, None, None], (16, 128, 128, 3)).copy()

    def centre_against_corner(x: torch.Tensor) -> torch.Tensor:  # crops are flat: only a swap makes a step
        return (x[..., 44:52, 44:52].mean((1, 2, 3)) - x[..., :6, :6].mean((1, 2, 3))).abs()

    plain = centre_against_corner(_first_batch(flat, swap_surroundings=0.0))
    swapped = centre_against_corner(_first_batch(flat, swap_surroundings=1.0))
    assert plain.max() < 2 and (swapped > 5).float().mean() >= 0.5


def test_random_convolutions_reach_the_training_batches() -> None:
    """``--random-convolutions``: a seed's batches are the same without it, and every crop changes with it."""
    textured = np.random.default_rng(0).integers(60, 200, (16, 128, 128, 3), dtype=np.uint8)
    plain, again = (_first_batch(textured, random_convolutions=0.0) for _ in range(2))
    convolved = _first_batch(textured, random_convolutions=1.0)
    assert torch.equal(plain, again)
    assert ((convolved - plain).abs().mean((1, 2, 3)) > 1).all()


def test_fourier_mix_reaches_the_training_batches() -> None:
    """``--fourier-mix``: a seed's batches are the same without it, and with it crops take other crops' mean
    colours (blur and noise, drawn after it, leave a crop's mean where it was)."""
    means = np.repeat(np.linspace(40, 220, 16), 3).reshape(16, 1, 1, 3)
    images = (means + np.random.default_rng(0).integers(-20, 20, (16, 128, 128, 3))).astype(np.uint8)
    plain, again = (_first_batch(images, fourier_mix=0.0) for _ in range(2))
    mixed = _first_batch(images, fourier_mix=1.0)
    assert torch.equal(plain, again)
    assert ((mixed - plain).mean((1, 2, 3)).abs() > 5).float().mean() >= 0.5


def test_eosin_tint_reddens_only_the_stained_parts_of_picked_crops() -> None:
    """``--eosin-neutrophils``: a picked crop's cell takes up eosin (green absorbed, red barely), its white
    background stays; crops not picked are untouched."""
    crop = np.full((2, 64, 64, 3), 235, np.uint8)
    crop[:, 16:48, 16:48] = (170, 130, 190)  # a lilac cell on a white background
    tinted = eosin_tint(crop, np.array([True, False]), 1.0, np.random.default_rng(0))
    od = -np.log10((tinted.astype(float) + 1) / (crop.astype(float) + 1))
    cell, background = od[0, 20:44, 20:44].mean((0, 1)), od[0, :8, :8].mean((0, 1))
    assert cell[1] > 0.001 and cell[1] > 2 * cell[0] and cell[1] > cell[2] > cell[0]
    assert np.abs(background).max() < 1e-9
    assert np.array_equal(tinted[1], crop[1])


def test_eosin_tint_reaches_only_neutrophil_series_crops_in_training_batches() -> None:
    n = 16
    cells = np.full((n, 128, 128, 3), 235, np.uint8)
    cells[:, 40:88, 40:88] = (170, 130, 190)
    data = CropSet(cells, np.array(["LYT", "NGS"] * (n // 2), "U8"), np.full(n, "pbc", "U16"),
                   np.full(n, "", "U256"), np.full(n, -1, np.int8), np.full(n, -1, np.int8))
    sampler = train_classifier.BalancedSampler(data, ("LYT", "NGS"), 0.8, seed=0)

    def first_batch(share: float) -> tuple[np.ndarray, torch.Tensor]:
        settings = train_classifier.TrainSettings(batch_size=16, workers=0, eosin_neutrophils=share)
        return next(train_classifier.batches(data, sampler, settings))

    (rows, plain), (_, tinted) = first_batch(0.0), first_batch(1.0)
    changed = (tinted - plain).abs().mean((1, 2, 3)) > 0.5
    assert changed.any() and np.array_equal(changed.numpy(), data.codes[rows] == "NGS")

def _transfer_sets() -> TransferSets:
    rng = np.random.default_rng(0)

    def stored(n: int) -> np.ndarray:
        return rng.integers(0, 255, (n, STORE_PX, STORE_PX, 3), dtype=np.uint8)

    def cropset(codes: list[str], paths: list[str]) -> CropSet:
        n = len(codes)
        return CropSet(stored(n), np.array(codes, "U8"), np.full(n, "x", "U16"), np.array(paths, "U256"),
                       np.full(n, -1, np.int8), np.full(n, -1, np.int8))

    lab = GroupedCells("lab", stored(12)[:, 16:-16, 16:-16], ["lymphocyte"] * 6 + ["neutrophil"] * 6,
                       [f"{i}.png" for i in range(12)])
    pbc = cropset(["LYT"] * 5 + ["PLT"] * 5, [f"/pbc/{'lymphocyte' if i < 5 else 'platelet'}/{i}.jpg"
                                                for i in range(10)])
    return TransferSets({"bccd": lab}, {"pbc": pbc, "segpc": cropset(["PLM"] * 7, [""] * 7),
                                        "segpc-other": cropset([""] * 9, [""] * 9)})


def test_transfer_figures_keep_each_cells_outcome_and_compare_on_the_same_cells(tmp_path: Path) -> None:
    clf = _classifier(tmp_path, {"BLA": ["phantom"], "LYT": ["pbc"], "PLM": ["segpc"]}, [])
    result = evaluate_transfer(clf, _transfer_sets())
    assert set(result["figures"]) == {"bccd_accuracy", "segpc_plm_recall", "segpc_others_not_plm",
                                      "pbc_group_macro_f1", "pbc_not_phantom_only"}
    assert [len(result["outcomes"][k][""]["hit"]) for k in ("bccd_accuracy", "segpc_plm_recall",
                                                             "segpc_others_not_plm", "pbc_not_phantom_only")] == [12, 7, 9, 10]
    called_bla = sum(n for code, n in result["pbc_phantom_only_calls"] if code == "BLA")
    assert result["figures"]["pbc_not_phantom_only"] == 1 - called_bla / 10  # BLA: learned only from phantom
    assert result["figures"]["segpc_plm_recall"] == result["segpc"]["plm_recall"]
    assert result["figures"]["bccd_accuracy"] == result["unseen_lab"]["bccd"]["accuracy"]
    assert all(lo <= result["figures"][k] <= hi for k, (lo, hi) in result["intervals"].items())
    json.dumps(result)  # transfer.json holds the outcomes as they are

    again = evaluate_transfer(clf, _transfer_sets())
    changes = compare_transfer(result, again)
    assert set(changes) == set(result["figures"])
    assert all(c.before == c.after and c.verdict == "within noise" for c in changes.values())
    again["change_from"] = change_from(result, again)
    json.dumps(again)
    lines = format_transfer(again)
    assert any(line.strip().startswith("BCCD white cells") and "+0.000 [+0.000, +0.000]  within noise" in line
               for line in lines)


def test_transfer_says_which_unseen_labs_the_stain_check_would_warn_about(tmp_path: Path) -> None:
    config = default_config(("BLA", "LYT", "PLM"))
    ten = np.zeros(10, np.float32)
    no_look_fits = StainCheck(ten, ten + 1, ten, 5.0, ten - 2, ten - 1)  # every colour figure out of range
    config.update(stem=8, widths=[8, 16], depths=[1, 1], stain_check=no_look_fits.as_config())
    save_model(CellNet(config), tmp_path, "classifier", "t", config)
    result = evaluate_transfer(CellClassifier.load(tmp_path, device="cpu"), _transfer_sets())
    assert result["unseen_lab"]["bccd"]["unlike_stain"] == 1.0
    assert any("stain check: 100.0% of these cells do not look Romanowsky-stained (a slide of them gets a warning"
               in line for line in format_transfer(result))
    without = evaluate_transfer(_classifier(tmp_path / "plain", {}, []), _transfer_sets())
    assert "unlike_stain" not in without["unseen_lab"]["bccd"]
    assert not any("stain check" in line for line in format_transfer(without))


def test_proxy_recall_is_scored_on_each_phantom_only_codes_real_held_out_cells(tmp_path: Path) -> None:
    """A ``--synthetic-only`` run: each such code's real held-out cells, from every set that holds them."""
    config = default_config(("BLA", "LYT", "PLM", "PLT"))
    config.update(stem=8, widths=[8, 16], depths=[1, 1], training={"synthetic_only": ["LYT", "PLM"]},
                  learned_from={"BLA": ["phantom"], "LYT": ["phantom"], "PLM": ["phantom"], "PLT": ["pbc"]})
    save_model(CellNet(config), tmp_path, "classifier", "t", config)
    clf = CellClassifier.load(tmp_path, device="cpu")
    proxy = score_synthetic_only(clf, _transfer_sets().real)
    assert {code: v["n"] for code, v in proxy.items()} == {"LYT": 5, "PLM": 7}  # PBC's LYT, SegPC's PLM
    for code, v in proxy.items():
        assert len(v["hit"]) == v["n"] == sum(k for _, k in v["called"])
        assert v["recall"] == np.mean(v["hit"]) == sum(k for c, k in v["called"] if c == code) / v["n"]
    result = evaluate_transfer(clf, _transfer_sets())
    assert {"synthetic_only_mean_recall", "synthetic_only_min_recall"} <= set(result["figures"])
    rows = result["synthetic_only_at_false_calls"]
    assert rows and all(row["false_calls"] <= row["rate"] and set(row["recall"]) == {"LYT", "PLM"} for row in rows)
    assert any("synthetic-only proxy with at most 3% of those PBC cells" in line for line in format_transfer(result))
    json.dumps(result)


def test_a_keep_real_run_is_scored_as_the_proxy_it_extends(tmp_path: Path) -> None:
    """Kept real images make LYT and PLM classes with real images to the model, but the guard and the bias
    still treat them as the proxy's: the same healthy cells (PBC's platelets) at every K."""
    config = default_config(("BLA", "LYT", "PLM", "PLT"))
    config.update(stem=8, widths=[8, 16], depths=[1, 1], training={"synthetic_only": ["LYT", "PLM"], "keep_real": 5},
                  learned_from={"BLA": ["phantom"], "LYT": ["pbc", "phantom"], "PLM": ["phantom", "segpc"],
                                "PLT": ["pbc"]})
    save_model(CellNet(config), tmp_path, "classifier", "t", config)
    clf = CellClassifier.load(tmp_path, device="cpu")
    assert clf.synthetic_only == ("BLA",) and held_back_codes(clf) == ("BLA", "LYT", "PLM")
    result = evaluate_transfer(clf, _transfer_sets())
    assert len(result["outcomes"]["pbc_not_phantom_only"][""]["hit"]) == 5
    assert set(result["synthetic_only"]) == {"LYT", "PLM"} and result["synthetic_only_at_false_calls"]
    assert any(line.startswith("  synthetic-only LYT (5 real training images kept): recall on real")
               for line in format_transfer(result))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_proxy_is_read_at_the_largest_bias_that_keeps_false_calls_within_each_rate() -> None:
    """Ten real PLM cells prefer PLM over the phantom-only LYT by 0.6, 1.6, ... 9.6 (natural log): a bias below
    0.6 calls none of them LYT, one below 1.6 calls one. Four real lymphocytes trail PLM by 0.1, 1, 2 and 10."""
    codes, phantom_only = ("BLA", "LYT", "PLM"), ("BLA", "LYT")

    def cells(margins: list[float]) -> np.ndarray:
        return _softmax(np.array([[-30.0, -m, 0.0] for m in margins]))

    guard = cells([0.6 + i for i in range(10)])
    rows = recall_at_false_calls({"LYT": cells([0.1, 1.0, 2.0, 10.0])}, guard, codes, phantom_only, (0.05, 0.1, 0.35))
    assert [(row["rate"], row["bias"], row["false_calls"]) for row in rows] == [(0.05, 0.5, 0.0), (0.1, 1.5, 0.1),
                                                                               (0.35, 3.5, 0.3)]
    assert [row["recall"]["LYT"] for row in rows] == [0.25, 0.5, 0.75]
    assert rows[1]["mean_recall"] == 0.5


def test_against_is_refused_without_transfer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        evaluation_classifier.main(["--against", str(tmp_path)])
    assert "--against compares transfer figures" in capsys.readouterr().err


@pytest.mark.skipif(not DATASETS["txl_pbc"].path.is_dir(), reason="TXL-PBC not under $BMPIPE_DATA")
def test_txl_white_cells_come_only_from_its_own_fields() -> None:
    """TXL-PBC's 640×480 fields are BCCD's (the transfer test) and its small ones PBC's: never read them."""
    train, held_out = load_txl_white_cells()
    assert len(train) > 100 and len(held_out) > 20
    paths = set(train.paths) | set(held_out.paths)
    assert not set(train.paths) & set(held_out.paths)
    assert all(read_rgb(Path(p)).shape[:2] == (575, 575) for p in paths)
    assert set(train.not_codes) == {" ".join(WHITE_CELL_IS_NOT)} and set(train.codes) == {""}


def test_cells_whose_image_does_not_show_their_label_are_scored_apart(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    audit = {"bccd": {"label": "neutrophil", "shows": "segmented nucleus", "not_shown": ["6", "7", "0"]}}
    monkeypatch.setattr(transfer, "label_audits", lambda: audit)
    clf = _classifier(tmp_path, {"BLA": ["phantom"], "LYT": ["pbc"], "PLM": ["segpc"]}, [])
    result = evaluate_transfer(clf, _transfer_sets())
    hits = result["outcomes"]["bccd_accuracy"][""]["hit"]
    kept = [h for i, h in enumerate(hits) if i not in (6, 7)]  # "0.png" is labelled lymphocyte: kept
    assert result["outcomes"]["bccd_audited_accuracy"][""]["hit"] == kept
    assert result["figures"]["bccd_audited_accuracy"] == pytest.approx(np.mean(kept))
    assert result["unseen_lab"]["bccd"]["audit"]["set_aside"] == 2
    lines = format_transfer(result)
    assert any("2 cells labelled neutrophil whose image shows no segmented nucleus (label audit): called" in line
               for line in lines)
    assert any(line.strip().startswith("BCCD, cells whose image shows their label") and "(label audit, no target)"
               in line for line in lines)


@pytest.mark.skipif(not (DATASETS["bccd"].path.parent / "wbc_subtype_labels.csv").exists(),
                    reason="BCCD subtype labels not under $BMPIPE_DATA")
def test_the_bccd_audit_names_fields_of_the_transfer_set_with_the_audited_label() -> None:
    audit = transfer.label_audits()["bccd"]
    cells = bccd_cells()
    labelled = {Path(p).stem: g for p, g in zip(cells.paths, cells.groups)}
    assert audit["not_shown"] and all(labelled.get(stem) == audit["label"] for stem in audit["not_shown"])
    assert transfer.not_shown("bccd", cells).sum() == len(set(audit["not_shown"]))
