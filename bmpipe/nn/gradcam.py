"""Grad-CAM heat maps (Selvaraju et al., ICCV 2017) of the cell classifier, for the report's cell gallery.

A map shows where in the crop the evidence for a class lies: the last residual block's feature maps,
weighted by the gradient of that class's logit averaged over each map, summed and rectified. A hematologist
checking a gallery sees at once whether the call rests on the cell (nucleus, granules) or on its
surroundings (a red cell, a stain deposit), which is what makes a wrong call easy to distrust.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bmpipe.nn.cell_classifier import CellClassifier

#: Share of the heat-map colour in an overlay; the rest is the crop, so the cell stays recognisable.
OVERLAY_ALPHA = 0.45


def gradcam_maps(classifier: CellClassifier, crops: np.ndarray, labels: list[str] | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """(N, H, W) float32 maps in [0, 1] of the predicted class (or ``labels``, taxonomy codes) over ``crops``."""
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (N, H, W, 3); got {crops.dtype} {crops.shape}")
    if labels is not None:
        if len(labels) != len(crops):
            raise ValueError(f"{len(labels)} labels for {len(crops)} crops")
        unknown = sorted(set(labels) - set(classifier.codes))
        if unknown:
            raise ValueError(f"labels {unknown} are not classes of classifier {classifier.record.version}")
    net = classifier.model
    n, h, w = crops.shape[:3]
    out = np.zeros((n, h, w), np.float32)
    for start in range(0, n, batch_size):
        x = classifier._tensor(crops[start : start + batch_size])
        with torch.enable_grad():
            feats = net.body(net.stem(net.normalise(x)))
            feats.requires_grad_(True)
            logits = net.class_head(torch.flatten(F.adaptive_avg_pool2d(feats, 1), 1))
            if labels is None:
                target = logits.argmax(1)
            else:
                index = {c: i for i, c in enumerate(classifier.codes)}
                target = torch.tensor([index[c] for c in labels[start : start + len(x)]], device=logits.device)
            (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), feats)
        cam = F.relu((grads.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        out[start : start + len(x)] = (cam / peak).float().cpu().numpy()
    return out


def gradcam_overlays(classifier: CellClassifier, crops: np.ndarray, labels: list[str] | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8: each crop with its Grad-CAM heat map (blue low → red high) blended over it."""
    maps = gradcam_maps(classifier, crops, labels)
    out = np.empty_like(crops)
    for i, (crop, m) in enumerate(zip(crops, maps)):
        heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.rint(m * 255)), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        out[i] = cv2.addWeighted(heat, OVERLAY_ALPHA, np.ascontiguousarray(crop), 1 - OVERLAY_ALPHA, 0)
    return out
