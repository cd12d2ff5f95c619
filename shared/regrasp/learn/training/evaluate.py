"""Evaluation with the Jacquard rectangle metric: top-1 prediction vs the labels, per image.

`predict_top_k` runs a network on a batch of inputs and decodes each image's maps into
ranked grasps (`regrasp.grasp.maps.decode`), mapped back to image pixels by the image's
`Letterbox`. `evaluate` does this over a dataset and scores every image with
`regrasp.grasp.metrics.success_batch` (angle difference < 30° and IoU > 0.25, against the
unaugmented labels in image pixels), so its per-image verdicts are exactly what
`regrasp.grasp.metrics.is_success` says image by image. Images where nothing is decoded count as
failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from regrasp.grasp.imaging import Letterbox
from regrasp.grasp.maps import WIDTH_SCALE, decode
from regrasp.grasp.metrics import SUCCESS_IOU, best_iou_batch
from regrasp.learn.training.config import DecodeConfig
from regrasp.learn.training.data import GraspDataset


@dataclass(frozen=True)
class Evaluation:
    """Per-image results over M images, in dataset order.

    top1: (M, 5) image-px top-1 grasp (NaN where none), predicted: (M,) bool,
    best_iou: (M,) gated IoU of the top-1 over the labels, success: (M,) bool.
    """

    image_ids: tuple[int, ...]
    top1: np.ndarray
    predicted: np.ndarray
    best_iou: np.ndarray
    success: np.ndarray

    @property
    def accuracy(self) -> float:
        """Successes / images (0.0 for no image)."""
        return float(self.success.mean()) if len(self.success) else 0.0


def predict_top_k(
    model: nn.Module,
    inputs: torch.Tensor | np.ndarray,
    *,
    letterboxes: Sequence[Letterbox] | None = None,
    decode_config: DecodeConfig | None = None,
    width_scale: float = WIDTH_SCALE,
    device: torch.device | str | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ranked grasps of each image of a batch: [(K_i, 5) grasps, (K_i,) scores] per image.

    inputs: (B, C, S, S) float32 network inputs. Grasps are in image pixels when
    `letterboxes` (one per image) are given, else in network pixels. The model is run
    as it is (call `model.eval()` first for inference).
    """
    x = torch.as_tensor(inputs, dtype=torch.float32)
    config = (decode_config or DecodeConfig()).for_size(int(x.shape[-1]))
    if device is None:
        device = next(model.parameters()).device
    with torch.inference_mode():
        maps = model(x.to(device))
        stacked = torch.cat(tuple(maps), dim=1).float().cpu().numpy()
    if letterboxes is not None and len(letterboxes) != len(stacked):
        raise ValueError(f"{len(letterboxes)} letterboxes for {len(stacked)} images")
    out = []
    for i, (q, c, s, w) in enumerate(stacked):
        grasps, scores = decode(
            q,
            c,
            s,
            w,
            k=config.k,
            threshold=config.threshold,
            sigma=config.sigma,
            min_distance=config.min_distance,
            jaw_ratio=config.jaw_ratio,
            width_scale=width_scale,
        )
        if letterboxes is not None and len(grasps):
            grasps = letterboxes[i].to_image(grasps)
        out.append((grasps, scores))
    return out


def evaluate(
    model: nn.Module,
    data: GraspDataset,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    decode_config: DecodeConfig | None = None,
    device: torch.device | str | None = None,
    indices: Sequence[int] | None = None,
) -> Evaluation:
    """Top-1 success of `model` on every image of `data` (or on `indices` of it).

    Inputs are never augmented here, whatever `data.augment` says. The model is put in
    eval mode for the pass and restored to its previous mode afterwards.
    """
    picks = list(range(len(data))) if indices is None else [int(i) for i in indices]
    view = _EvalView(data, picks)
    loader = DataLoader(
        view, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, shuffle=False
    )
    was_training = model.training
    model.eval()
    top1 = np.full((len(picks), 5), np.nan)
    predicted = np.zeros(len(picks), dtype=bool)
    gts: list[np.ndarray] = []
    done = 0
    try:
        for x, boxes, labels in loader:
            for j, (grasps, _) in enumerate(
                predict_top_k(
                    model,
                    x,
                    letterboxes=boxes,
                    decode_config=decode_config,
                    width_scale=data.width_scale,
                    device=device,
                )
            ):
                if len(grasps):
                    top1[done + j] = grasps[0]
                    predicted[done + j] = True
            gts.extend(labels)
            done += len(x)
    finally:
        model.train(was_training)
    best = best_iou_batch(top1, gts, predicted=predicted) if picks else np.zeros(0)
    return Evaluation(
        image_ids=tuple(data.image_id(i) for i in picks),
        top1=top1,
        predicted=predicted,
        best_iou=best,
        success=best > SUCCESS_IOU,
    )


class _EvalView(Dataset):
    """Unaugmented (x, letterbox, labels in image px) of chosen items of a dataset."""

    def __init__(self, data: GraspDataset, picks: list[int]) -> None:
        self.data = data
        self.picks = picks

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Letterbox, np.ndarray]:
        x, grasps, box = self.data.sample(self.picks[i])
        return x, box, box.to_image(grasps) if len(grasps) else grasps.reshape(0, 5)


def _collate(
    items: list[tuple[np.ndarray, Letterbox, np.ndarray]],
) -> tuple[torch.Tensor, list[Letterbox], list[np.ndarray]]:
    xs, boxes, labels = zip(*items, strict=True)
    return torch.from_numpy(np.stack(xs)), list(boxes), list(labels)
