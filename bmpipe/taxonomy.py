"""The cell taxonomy (``data/taxonomy.yaml``): codes, lineages, BMSNet groups and the ANC denominator."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

#: BMSNet's eight categories, in report order.
GROUPS = (
    "blasts",
    "myeloid",
    "erythroid",
    "lymphoid",
    "plasma cells",
    "monocyte",
    "megakaryocyte",
    "unable to identify",
)


@dataclass(frozen=True)
class CellClass:
    code: str
    name: str
    lineage: str
    group: str
    denominator: bool
    source: str


@dataclass(frozen=True)
class Taxonomy:
    classes: dict[str, CellClass]
    tolerated: frozenset[frozenset[str]]
    me_myeloid: tuple[str, ...]
    me_erythroid: tuple[str, ...]
    colours: dict[str, tuple[int, int, int]]
    sources: dict[str, str]

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.classes)

    def __getitem__(self, code: str) -> CellClass:
        try:
            return self.classes[code]
        except KeyError:
            raise KeyError(f"unknown cell class code {code!r}; known: {', '.join(self.classes)}") from None

    def denominator_codes(self) -> tuple[str, ...]:
        return tuple(c for c, k in self.classes.items() if k.denominator)

    def excluded_codes(self) -> tuple[str, ...]:
        return tuple(c for c, k in self.classes.items() if not k.denominator)

    def codes_of_lineage(self, lineage: str) -> tuple[str, ...]:
        return tuple(c for c, k in self.classes.items() if k.lineage == lineage)

    def codes_of_group(self, group: str) -> tuple[str, ...]:
        return tuple(c for c, k in self.classes.items() if k.group == group)

    def is_tolerated(self, truth: str, predicted: str) -> bool:
        """True when ``predicted`` equals ``truth`` or Matek 2021 tolerates the confusion."""
        return truth == predicted or frozenset((truth, predicted)) in self.tolerated

    def colour(self, code: str) -> tuple[int, int, int]:
        return self.colours[self[code].group]


@cache
def load_taxonomy() -> Taxonomy:
    raw = yaml.safe_load(resources.files("bmpipe.data").joinpath("taxonomy.yaml").read_text("utf-8"))
    classes = {code: CellClass(code=code, **spec) for code, spec in raw["classes"].items()}
    unknown_groups = {k.group for k in classes.values()} - set(GROUPS)
    if unknown_groups:
        raise ValueError(f"taxonomy.yaml names groups outside BMSNet's eight: {sorted(unknown_groups)}")
    return Taxonomy(
        classes=classes,
        tolerated=frozenset(frozenset(pair) for pair in raw["tolerated"]),
        me_myeloid=tuple(raw["me_ratio"]["myeloid"]),
        me_erythroid=tuple(raw["me_ratio"]["erythroid"]),
        colours={g: tuple(rgb) for g, rgb in raw["colours"].items()},
        sources=raw["sources"],
    )
