"""A simulated reviewer that knows the truth, so the review loop runs without people.

`careful_decision` is what an attentive annotator decides on a flagged image, from what
they can see: the object, its current labels and the model's ranked predictions. It
judges a rectangle *valid* when it matches a true grasp under the rectangle metric
(`regrasp.grasp.metrics.iou` > 0.25 within the 30° gate) or is physically valid against the
object outline (`geometry.grasp_validity`): a grasp is a grasp even if the truth list
happens not to hold it. Then, in this order:

1. some labels invalid: "annotation_error" (the image is removed) when more than half of
   the labels are invalid, else "fix" with the invalid label indices to remove;
2. labels fine and some predictions valid that no label already covers (IoU > 0.25 with
   a label): "missing_label" accepting those prediction indices;
3. with `draw` > 0, labels fine and true grasps still uncovered by the labels and the
   accepted predictions: "missing_label" drawing up to `draw` of them (in the truth's
   order, no two alike), as a person drags a grasp from jaw to jaw on the review screen;
   a careful person draws the true grasp (the metric forgives a hand's few pixels);
4. otherwise "true_negative": the model is wrong, the labels stay.

A second reviewer who confirms a first one's decision is shown the grasps the first drew
(`proposed`) and keeps the valid ones instead of drawing their own: the two reviews then
agree when the first drew well.

The decision never looks at the manifest's corruption tag, so it stays right on later
rounds, after earlier decisions changed the labels.

`SimulatedReviewer` adds mistakes: with probability `error_rate` per review the decision
is replaced by a different kind, drawn uniformly among those that can be expressed
(missing_label needs a prediction, fix needs two labels so the image survives). A wrong
missing_label accepts the invalid predictions (or the top-1 when all are valid); a wrong
fix removes a random non-empty proper subset of the labels. Wrong decisions carry
`simulated_error=True`, so a run can count them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regrasp.data.synthetic.geometry import grasp_validity
from regrasp.data.synthetic.manifest import TruthRecord, as_truth
from regrasp.grasp.metrics import SUCCESS_IOU, iou
from regrasp.grasp.rectangles import as_grasps
from regrasp.platform.errors import InvalidInput

#: The review decisions of the DESIGN's table.
DECISIONS = ("true_negative", "missing_label", "annotation_error", "fix")


@dataclass(frozen=True)
class Decision:
    """One review decision.

    kind: one of `DECISIONS`. accepted_predictions: indices into the predictions that
    become labels (missing_label). removed_labels: indices into the labels to remove
    (fix). drawn_grasps: `[x, y, theta, opening, jaw]` rows the reviewer drew (as the
    API takes them; `np.asarray(...).reshape(-1, 5)` for an array). simulated_error: True when the
    simulated reviewer erred on purpose.
    """

    kind: str
    accepted_predictions: list[int] = field(default_factory=list)
    removed_labels: list[int] = field(default_factory=list)
    drawn_grasps: list[list[float]] = field(default_factory=list)
    simulated_error: bool = False


def careful_decision(
    truth: TruthRecord | Mapping[str, Any],
    labels: np.ndarray,
    predictions: np.ndarray,
    *,
    draw: int = 0,
    proposed: np.ndarray | None = None,
) -> Decision:
    """The decision of an attentive reviewer (rules in the module docstring).

    truth: the image's TruthRecord or manifest line. labels: (N, 5) the image's current
    labels. predictions: (K, 5) the model's grasps, ranked best first. draw: most grasps
    to draw. proposed: (P, 5) grasps another reviewer drew, to confirm (then nothing new
    is drawn).
    """
    truth = as_truth(truth)
    labels, predictions = as_grasps(labels), as_grasps(predictions)
    bad = ~valid_against_truth(truth, labels)
    if bad.any():
        if 2 * int(bad.sum()) > len(labels):
            return Decision("annotation_error")
        return Decision("fix", removed_labels=[int(i) for i in np.flatnonzero(bad)])
    accept = valid_against_truth(truth, predictions)
    if len(labels) and len(predictions):
        accept &= iou(predictions, labels).max(axis=1) <= SUCCESS_IOU
    accepted = [int(i) for i in np.flatnonzero(accept)]
    if proposed is not None:
        proposed = as_grasps(proposed)
        drawn = proposed[valid_against_truth(truth, proposed)]
    else:
        drawn = missing_grasps(truth, np.concatenate([labels, predictions[accept]]), draw)
    if accepted or len(drawn):
        return Decision("missing_label", accepted_predictions=accepted, drawn_grasps=drawn.tolist())
    return Decision("true_negative")


def missing_grasps(
    truth: TruthRecord | Mapping[str, Any], labels: np.ndarray, limit: int
) -> np.ndarray:
    """Up to `limit` true grasps that no rectangle of `labels` covers, in the truth's
    order, none matching another already chosen: (D, 5)."""
    truth = as_truth(truth)
    labels = as_grasps(labels)
    if limit <= 0 or len(truth.grasps) == 0:
        return np.empty((0, 5))
    open_ = np.ones(len(truth.grasps), dtype=bool)
    if len(labels):
        open_ = iou(truth.grasps, labels).max(axis=1) <= SUCCESS_IOU
    chosen: list[np.ndarray] = []
    for g in truth.grasps[open_]:
        if chosen and (iou(g[None], np.array(chosen)) > SUCCESS_IOU).any():
            continue
        chosen.append(g)
        if len(chosen) == limit:
            break
    return np.array(chosen, dtype=np.float64).reshape(-1, 5)


def valid_against_truth(truth: TruthRecord | Mapping[str, Any], grasps: np.ndarray) -> np.ndarray:
    """Which rectangles (N, 5) a reviewer who knows the object accepts as grasps: (N,) bool.

    A rectangle is accepted when it matches a true grasp under the rectangle metric or is
    physically valid against the outline.
    """
    truth = as_truth(truth)
    g = as_grasps(grasps)
    if len(g) == 0:
        return np.zeros(0, dtype=bool)
    ok = grasp_validity(truth.shape, g, max_opening=truth.max_opening)
    rest = np.flatnonzero(~ok)
    # The IoU against every true grasp is the costly part: only for what geometry refused.
    if rest.size and len(truth.grasps):
        ok[rest] = iou(g[rest], truth.grasps).max(axis=1) > SUCCESS_IOU
    return ok


def covers_truth(truth: TruthRecord | Mapping[str, Any], labels: np.ndarray) -> bool:
    """Does every true grasp of the image match a label (rectangle metric)?"""
    truth = as_truth(truth)
    labels = as_grasps(labels)
    if len(truth.grasps) == 0:
        return True
    if len(labels) == 0:
        return False
    return bool((iou(truth.grasps, labels).max(axis=1) > SUCCESS_IOU).all())


class SimulatedReviewer:
    """A careful reviewer that errs with probability `error_rate` (module docstring).

    seed: seeds the reviewer's own random stream, so a run with the same reviews in the
    same order makes the same decisions. draw: most missing grasps drawn per image (0:
    the reviewer only accepts predictions, as before the review screen could draw).
    """

    def __init__(self, error_rate: float = 0.0, seed: int | None = None, *, draw: int = 0) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise InvalidInput(f"error_rate must be in [0, 1], got {error_rate!r}")
        if draw < 0:
            raise InvalidInput(f"draw must be >= 0, got {draw!r}")
        self.error_rate = float(error_rate)
        self.draw = int(draw)
        self._rng = np.random.default_rng(seed)

    def review(
        self,
        truth: TruthRecord | Mapping[str, Any],
        labels: np.ndarray,
        predictions: np.ndarray,
        *,
        audit: bool = False,
        proposed: np.ndarray | None = None,
    ) -> Decision:
        """Decide on one image: labels (N, 5), predictions (K, 5) best first.

        `audit`: the image is an audit sample, reviewed for completeness: labels that
        are right but miss true grasps no prediction shows give a missing_label with
        nothing accepted (an auditor looks at the whole object, not only at what the
        model proposes), with the missing grasps drawn when this reviewer draws.
        `proposed`: grasps a first reviewer drew, to confirm (module docstring).
        """
        labels, predictions = as_grasps(labels), as_grasps(predictions)
        correct = careful_decision(truth, labels, predictions, draw=self.draw, proposed=proposed)
        if audit and correct.kind == "true_negative" and not covers_truth(truth, labels):
            correct = Decision("missing_label")
        if self._rng.random() >= self.error_rate:
            return correct
        return self._wrong(correct, truth, labels, predictions)

    def _wrong(
        self,
        correct: Decision,
        truth: TruthRecord | Mapping[str, Any],
        labels: np.ndarray,
        predictions: np.ndarray,
    ) -> Decision:
        """A decision of another kind than `correct`, drawn among the expressible ones."""
        options = [
            k
            for k in DECISIONS
            if k != correct.kind
            and not (k == "missing_label" and len(predictions) == 0)
            and not (k == "fix" and len(labels) < 2)
        ]
        kind = str(self._rng.choice(options))
        if kind == "missing_label":
            invalid = np.flatnonzero(~valid_against_truth(truth, predictions))
            accepted = [int(i) for i in invalid] if invalid.size else [0]
            return Decision(kind, accepted_predictions=accepted, simulated_error=True)
        if kind == "fix":
            n = int(self._rng.integers(1, len(labels)))
            removed = np.sort(self._rng.choice(len(labels), size=n, replace=False))
            return Decision(kind, removed_labels=[int(i) for i in removed], simulated_error=True)
        return Decision(kind, simulated_error=True)
