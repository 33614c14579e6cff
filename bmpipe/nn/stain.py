"""Is a crop stained like a Romanowsky smear (Wright-Giemsa, May-Grünwald-Giemsa)? A check on the input, not
on the classifier's features: the classifier is trained to ignore a lab's colours, so its features cannot say
that a slide is an H&E tissue section or a grayscale photograph, and its differential would look normal.

Each crop is described by a few colour figures (the optical-density direction of its darkest tenth, the
nuclei, and of its middle tones, the cytoplasm; its background colour and its colourfulness) and scored by a
logistic regression fitted when the classifier is trained (``bmpipe.train.classifier``): Romanowsky-stained
crops of every training source against H&E tissue crops and colourless copies of the Romanowsky ones.

A regression only knows the two sides it was shown, and extrapolates for any other look: a stain that is
neither Romanowsky nor H&E may score as Romanowsky. So a crop whose colour figures lie clearly outside the
range that some training source spans (:data:`RANGE_PERCENTILE`, :data:`RANGE_MARGIN`) scores 0, whatever the
regression says: the model was never shown a cell that looks like it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: A slide is warned about when more than this share of its cells score below 0.5.
UNLIKE_SHARE = 0.5
#: Each colour figure's range: from the lowest to the highest of the training sources' own RANGE_PERCENTILE-th
#: and (100 - RANGE_PERCENTILE)-th percentiles, so a rare crop of a source stays in.
RANGE_PERCENTILE = 0.1
#: How far past that range, as a share of its width, a figure may still lie: another lab's Romanowsky stain
#: differs a little from every source here, a stain of another kind by much more.
RANGE_MARGIN = 0.25


#: Optical density of each 8-bit intensity (a table: the logarithm per pixel cost as much as the classifier).
_OD = (-np.log((np.arange(256, dtype=np.float32) + 1) / 256)).astype(np.float32)


def colour_descriptors(crops: np.ndarray) -> np.ndarray:
    """(N, 10) float32 colour figures of uint8 RGB crops (N, H, W, 3), from every third pixel."""
    u = crops[:, ::3, ::3].reshape(len(crops), -1, 3)
    od = _OD[u]
    k = od.shape[1]
    cuts = [int(0.1 * k), int(0.4 * k), int(0.7 * k)]
    # darkest tenth, middle tones and brightest 30 %: buckets, so a partition does what a sort would
    order = np.argpartition(-od.sum(2), cuts, axis=1)

    def direction(lo: int, hi: int) -> np.ndarray:
        v = np.take_along_axis(od, order[:, lo:hi, None], 1).mean(1)
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-6)

    background = np.take_along_axis(u, order[:, cuts[2]:, None], 1).mean(1) / 255
    chroma = (u.max(2) - u.min(2)).mean(1, keepdims=True) / 255
    return np.concatenate([direction(0, cuts[0]), direction(cuts[1], cuts[2]), background, chroma],
                          1).astype(np.float32)


@dataclass(frozen=True)
class StainCheck:
    """Logistic regression on standardised :func:`colour_descriptors`; stored in the classifier's config."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    #: Range of each colour figure over the training sources (None: no range, as in checks fitted before it).
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def score(self, crops: np.ndarray) -> np.ndarray:
        """(N,) float32: the probability that each crop is Romanowsky-stained; 0 clearly outside the range."""
        if not len(crops):
            return np.zeros(0, np.float32)
        d = colour_descriptors(crops)
        p = (1 / (1 + np.exp(-((d - self.mean) / self.std @ self.weights + self.bias)))).astype(np.float32)
        if self.low is not None and self.high is not None:
            margin = RANGE_MARGIN * (self.high - self.low)
            p[((d < self.low - margin) | (d > self.high + margin)).any(1)] = 0.0
        return p

    def as_config(self) -> dict[str, Any]:
        config = {"mean": self.mean.round(6).tolist(), "std": self.std.round(6).tolist(),
                  "weights": self.weights.round(6).tolist(), "bias": round(float(self.bias), 6)}
        if self.low is not None and self.high is not None:
            config.update(low=self.low.round(6).tolist(), high=self.high.round(6).tolist())
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> StainCheck | None:
        if not config:
            return None
        bounds = [np.asarray(config[k], np.float32) if k in config else None for k in ("low", "high")]
        return cls(*(np.asarray(config[k], np.float32) for k in ("mean", "std", "weights")), float(config["bias"]),
                   *bounds)

    @classmethod
    def fit(cls, stained: np.ndarray, other: np.ndarray, sources: np.ndarray | None = None, l2: float = 1e-3,
            steps: int = 500) -> StainCheck:
        """Fit on crops that are Romanowsky-stained and crops that are not (classes weighted equally). With
        ``sources`` (the data set of each stained crop), the check also has the range those sources span."""
        import torch

        ds = colour_descriptors(stained)
        low = high = None
        if sources is not None:
            groups = [ds[sources == name] for name in np.unique(sources)]
            low = np.min([np.percentile(g, RANGE_PERCENTILE, axis=0) for g in groups], axis=0).astype(np.float32)
            high = np.max([np.percentile(g, 100 - RANGE_PERCENTILE, axis=0) for g in groups], axis=0).astype(np.float32)
        d = np.concatenate([ds, colour_descriptors(other)])
        y = np.concatenate([np.ones(len(stained)), np.zeros(len(other))]).astype(np.float32)
        mean, std = d.mean(0), d.std(0) + 1e-6
        z = torch.from_numpy((d - mean) / std)
        t = torch.from_numpy(y)
        w = torch.from_numpy(np.where(y == 1, 0.5 / len(stained), 0.5 / len(other)).astype(np.float32))
        weights = torch.zeros(z.shape[1], requires_grad=True)
        bias = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([weights, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            logit = z @ weights + bias
            value = (w * torch.nn.functional.binary_cross_entropy_with_logits(logit, t, reduction="none")).sum()
            value = value + l2 * weights.square().sum()
            value.backward()
            return value

        opt.step(loss)
        return cls(mean.astype(np.float32), std.astype(np.float32), weights.detach().numpy(), float(bias.detach()),
                   low, high)


def unlike_share(scores: np.ndarray) -> float:
    """Share of cells whose crop does not look Romanowsky-stained."""
    return float(np.mean(scores < 0.5)) if len(scores) else 0.0
