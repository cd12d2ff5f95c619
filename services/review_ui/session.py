"""The review session state machine: current item, prefetched next items, timer, undo stack.

Plain Python over the orchestrator client (no Streamlit here), so the review screen's
logic is tested and benchmarked without a browser. One `ReviewSession` serves one
annotator on one round:

- `start()` claims the first item; `decide`, `skip` and `undo` move on. Each shows the
  next item through `_advance`: one claim (the server decides which item is next), then
  the item's pixels and overlay from the prefetch cache.
- Prefetch: while the annotator looks at an item, a background thread asks the server
  which items the next claims will most likely give (`upcoming`, nothing leased), fetches
  their RGB and depth bytes, decodes them and renders the overlay in the current view. A
  claim that returns one of them shows it at once; a miss (another annotator took it)
  falls back to loading it then. The claim itself stays on the critical path on purpose:
  the lease is the only thing that keeps two annotators off one item.
- Timer: `seconds_taken` of a decision runs from the moment its item was shown.
- Undo: the server withdraws the annotator's last decision and leases the item back; the
  screen shows it again with the rectangles that decision had chosen, preselected.
- Picking: label rectangles are marked wrong by their numbers (1-based, `item.labels`
  order), by a click on the picture (`picture().handles` says where each one is) or typed.
- Drawing: in draw mode a stroke on the picture from one jaw to the other adds that
  grasp (`draw_stroke`, picture pixels mapped back to the image's), for the true grasps
  no label and no prediction shows; a missing label or a fix sends them. A second
  reviewer finds the first one's drawings already drawn (`item.proposed_grasps`), to keep
  (agree) or erase.
  Every action that touches the item names the item it was made on: an action for an item
  no longer shown (a click or key press that raced the move to the next item) raises
  `StaleItem` and changes nothing, so state of one item never leaks into the next.

Image arrays are (H, W, 3) uint8 RGB and (H, W) float32 depth in metres; grasps (N, 5).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from regrasp.api.review import DecisionCreate, ReviewItemPublic, ReviewPublic
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.grasp import drawing as viz
from regrasp.grasp.imaging import decode_depth, decode_rgb
from regrasp.grasp.rectangles import from_stroke
from regrasp.platform.errors import Conflict, InvalidInput, NotFound, RegraspError
from regrasp.refine.review.decisions import MAX_DRAWN

ImageKind = Literal["rgb", "depth"]

#: Keys (as Streamlit's `shortcut` takes them) of the four decisions. C and R are taken
#: by Streamlit itself (clear cache, rerun).
DECISION_KEYS: dict[str, str] = {
    "true_negative": "T",
    "missing_label": "M",
    "annotation_error": "A",
    "fix": "F",
}
#: Most predictions one can toggle by a digit key (1..9).
MAX_KEYED_PREDICTIONS = 9


@dataclass(frozen=True)
class View:
    """How the item is drawn: which image, zoomed on the object or not, label numbers.

    Zoomed by default: a Jacquard object fills a third of its 1024² image, and its 100+
    rectangles are picked by clicking, which needs them large.
    """

    kind: ImageKind = "rgb"
    zoom: bool = True
    number_labels: bool = False


@dataclass
class Loaded:
    """An item with its pixels decoded and its overlays rendered (cached per view)."""

    item: ReviewItemPublic
    rgb: np.ndarray
    depth: np.ndarray | None
    renders: dict[tuple[View, frozenset[int], frozenset[int], tuple], bytes] = field(
        default_factory=dict
    )

    @property
    def labels(self) -> np.ndarray:
        """(N, 5) ground-truth grasps, in `item.labels` order."""
        return np.array([g.grasp for g in self.item.labels], dtype=np.float64).reshape(-1, 5)

    @property
    def predictions(self) -> np.ndarray:
        """(K, 5) predicted grasps, best first."""
        return np.array([p.grasp for p in self.item.predictions], dtype=np.float64).reshape(-1, 5)


@dataclass(frozen=True)
class Picture:
    """The rendered item and where its labels are on it, for a clickable picture.

    png: the overlay; size: its (width, height) in pixels; handles: (N, 2) one point per
    label in picture pixels (`viz.label_handles`), in `item.labels` order; wrong: (N,) bool.
    """

    png: bytes
    size: tuple[int, int]
    handles: np.ndarray
    wrong: np.ndarray


class StaleItem(Conflict):
    """An action was made on an item that is no longer the one shown; nothing changed."""


@dataclass(frozen=True)
class Done:
    """One decision of this session, newest last on the undo stack."""

    item_id: int
    review: ReviewPublic


class ReviewSession:
    """One annotator reviewing one round; see the module docstring.

    api: a signed-in client. prefetch: load the likely next items in the background.
    lookahead: how many upcoming items to prefetch. size: rendered side in pixels.
    lease_seconds: lease asked for on claims and heartbeats (None: the server's).
    """

    def __init__(
        self,
        api: OrchestratorClient,
        round_id: int,
        *,
        prefetch: bool = True,
        lookahead: int = 2,
        size: int = 768,
        lease_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lookahead < 1:
            raise InvalidInput(f"lookahead must be >= 1, got {lookahead}")
        self.api = api
        self.round_id = round_id
        self.prefetch_enabled = prefetch
        self.lookahead = lookahead
        self.size = size
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.view = View()
        self.current: Loaded | None = None
        self.accepted: set[int] = set()  # prediction indices to accept
        self.wrong: set[int] = set()  # label grasp ids marked wrong
        self.drawn: list[tuple[float, ...]] = []  # grasps drawn, image pixels
        self.drawing = False  # strokes on the picture draw grasps (else they pick labels)
        self.shown_at = clock()
        self.lease_renewed_at = clock()
        self.finished = False
        self.decided = 0
        self.skipped = 0
        self.seconds: list[float] = []
        self.undo_stack: list[Done] = []
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Loaded]] = {}
        self._scheduled: Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prefetch")

    # --- moving through the queue ------------------------------------------------------------

    def start(self) -> Loaded | None:
        """Claim the first item (or the one the annotator already holds) and show it."""
        return self._advance()

    def decide(self, decision: str, *, item_id: int | None = None) -> ReviewPublic:
        """Send the decision on the current item with the current selection; show the next.

        The selection is trimmed to what the decision carries (a true negative sends no
        rectangles) so a leftover toggle never turns a keystroke into a 422. item_id: the
        item the decision was made on (StaleItem if another one is shown now).
        """
        loaded = self._require_current(item_id)
        adds = decision in ("missing_label", "fix")
        accepted = sorted(self.accepted) if adds else []
        wrong = sorted(self.wrong) if decision == "fix" else []
        body = DecisionCreate(
            item_version=loaded.item.version,
            decision=decision,
            accepted_predictions=accepted,
            removed_grasp_ids=wrong,
            drawn_grasps=list(self.drawn) if adds else [],
            seconds_taken=round(self.elapsed(), 3),
        )
        review = self.api.decide(loaded.item.id, body)
        self.decided += 1
        self.seconds.append(body.seconds_taken)
        self.undo_stack.append(Done(item_id=loaded.item.id, review=review))
        self._advance()
        return review

    def skip(self, *, item_id: int | None = None) -> Loaded | None:
        """Pass on the current item (seen again only when nothing else is left)."""
        loaded = self._require_current(item_id)
        self.api.skip(loaded.item.id)
        self.skipped += 1
        with self._lock:
            self._pending.pop(loaded.item.id, None)
        return self._advance()

    def undo(self) -> Loaded:
        """Withdraw the last decision; its item comes back with its rectangles preselected.

        The item shown before stays leased to the annotator and comes back after.
        """
        undone = self.api.undo(self.round_id)
        previous = next((d for d in reversed(self.undo_stack) if d.item_id == undone.item.id), None)
        if previous is not None:
            self.undo_stack.remove(previous)
            self.decided = max(0, self.decided - 1)
        if self.current is not None:
            self._keep(self.current)
        self._show(self._load(undone.item))
        if previous is not None:
            self.accepted = set(previous.review.accepted_prediction_indices)
            self.wrong = set(previous.review.removed_grasp_ids)
            self.drawn = [tuple(g) for g in previous.review.drawn_grasps]
        return self._require_current()

    def close(self) -> None:
        """Give the current item back and stop the prefetch thread."""
        if self.current is not None:
            try:
                self.api.release(self.current.item.id)
            except RegraspError:
                pass  # already decided, expired or taken over: nothing to give back
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the current item ---------------------------------------------------------------------

    def toggle_prediction(self, index: int, *, item_id: int | None = None) -> None:
        """Accept or un-accept the prediction at `index` (0-based)."""
        loaded = self._require_current(item_id)
        if not 0 <= index < len(loaded.item.predictions):
            raise InvalidInput(
                f"prediction {index + 1} does not exist (this image has "
                f"{len(loaded.item.predictions)})"
            )
        self.accepted ^= {index}

    def accept_unmatched(self, *, item_id: int | None = None) -> ReviewPublic:
        """Decide "missing label" accepting every confident prediction that no label
        matches (what the label-quality score flagged the image for), in one step."""
        loaded = self._require_current(item_id)
        quality = loaded.item.quality
        if quality is None or not quality.unmatched:
            raise InvalidInput("no unmatched confident prediction on this image to accept")
        self.accepted = set(quality.unmatched)
        return self.decide("missing_label", item_id=item_id)

    def set_wrong(self, grasp_ids: set[int], *, item_id: int | None = None) -> None:
        """Mark exactly these label rectangles (grasp ids) as wrong."""
        loaded = self._require_current(item_id)
        known = {g.grasp_id for g in loaded.item.labels}
        unknown = set(grasp_ids) - known
        if unknown:
            raise InvalidInput(f"grasps {sorted(unknown)} are not labels of this image")
        self.wrong = set(grasp_ids)

    def pick_labels(self, numbers: list[int], *, item_id: int | None = None) -> None:
        """Mark or unmark label rectangles by number (1-based), as a click or lasso does.

        One rectangle toggles. Several (a box or lasso) are all unmarked when all are
        already marked, else all marked, so a sweep never flips half of them back.
        """
        loaded = self._require_current(item_id)
        ids = [g.grasp_id for g in loaded.item.labels]
        bad = sorted({n for n in numbers if not 1 <= n <= len(ids)})
        if bad:
            raise InvalidInput(
                f"label {', '.join(map(str, bad))} does not exist (this image has {len(ids)})"
            )
        picked = {ids[n - 1] for n in numbers}
        if not picked:
            return
        if picked <= self.wrong:
            self.wrong = self.wrong - picked
        else:
            self.wrong = self.wrong | picked

    def pick_typed(self, text: str, *, item_id: int | None = None) -> None:
        """`pick_labels` with numbers typed as text (see `parse_label_numbers`)."""
        loaded = self._require_current(item_id)
        self.pick_labels(parse_label_numbers(text, len(loaded.item.labels)), item_id=item_id)

    def toggle_drawing(self) -> None:
        """Switch strokes on the picture between drawing grasps and picking labels."""
        self.drawing = not self.drawing

    def draw_stroke(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        *,
        item_id: int | None = None,
    ) -> tuple[float, ...]:
        """Add the grasp a stroke from one jaw to the other draws; returns it (image px).

        `start` and `end` are picture pixels of the current view; the jaw size, which a
        stroke cannot show, is the image's median label jaw (half the opening when the
        image has no label, the model's own rule).
        """
        loaded = self._require_current(item_id)
        if len(self.drawn) >= MAX_DRAWN:
            raise InvalidInput(f"at most {MAX_DRAWN} drawn grasps per decision")
        a, b = self._frame(loaded).to_image(np.array([start, end], dtype=np.float64))
        labels = loaded.labels
        jaw = float(np.median(labels[:, 4])) if len(labels) else float(np.hypot(*(b - a))) / 2
        grasp = tuple(float(v) for v in from_stroke(a, b, jaw=jaw))
        height, width = _image(loaded, self.view).shape[:2]
        if not (0 <= grasp[0] <= width and 0 <= grasp[1] <= height):
            raise InvalidInput("that stroke's middle is off the image: draw on the object")
        self.drawn.append(grasp)
        return grasp

    def erase_drawn(self, *, item_id: int | None = None) -> None:
        """Take back the last grasp drawn (a second reviewer erases a proposal this way)."""
        self._require_current(item_id)
        if not self.drawn:
            raise InvalidInput("no drawn grasp to erase")
        self.drawn.pop()

    def wrong_numbers(self) -> list[int]:
        """Numbers (1-based) of the labels marked wrong on the current item, ascending."""
        if self.current is None:
            return []
        return [n for n, g in enumerate(self.current.item.labels, 1) if g.grasp_id in self.wrong]

    def change_view(self, **change: object) -> None:
        """Change some of the view's fields (kind, zoom, number_labels), the rest kept as
        they are when the change lands (two quick keys compose)."""
        self.view = replace(self.view, **change)

    def elapsed(self) -> float:
        """Seconds since the current item was shown."""
        return max(0.0, self.clock() - self.shown_at)

    def render(self) -> bytes:
        """PNG of the current item in the current view with the current selection."""
        loaded = self._require_current()
        return _render(loaded, self.view, self.accepted, self.wrong, self.size, self.drawn)

    def picture(self) -> Picture:
        """The current item drawn, with where each label's pick handle is on the drawing."""
        loaded = self._require_current()
        png = _render(loaded, self.view, self.accepted, self.wrong, self.size, self.drawn)
        frame = self._frame(loaded)
        handles = viz.label_handles(frame.grasps(loaded.labels))
        wrong = np.array([g.grasp_id in self.wrong for g in loaded.item.labels], dtype=bool)
        return Picture(png=png, size=frame.size, handles=handles, wrong=wrong)

    def maybe_heartbeat(self, *, every: float = 60.0) -> bool:
        """Renew the lease when `every` seconds passed since it was last renewed."""
        if self.current is None or self.clock() - self.lease_renewed_at < every:
            return False
        item = self.api.heartbeat(self.current.item.id, lease_seconds=self.lease_seconds)
        self.current = replace(self.current, item=item)
        self.lease_renewed_at = self.clock()
        return True

    def wait_prefetched(self, timeout: float | None = None) -> set[int]:
        """Wait until the prefetch started for the current item is done; the ids cached."""
        if self._scheduled is not None:
            self._scheduled.result(timeout)
        with self._lock:
            futures = dict(self._pending)
        for future in futures.values():
            try:
                future.result(timeout)
            except RegraspError:
                pass  # counted as a miss: `_load` fetches it on the critical path
        return set(futures)

    @property
    def mean_seconds(self) -> float | None:
        return float(np.mean(self.seconds)) if self.seconds else None

    # --- internals ------------------------------------------------------------------------------

    def _advance(self) -> Loaded | None:
        item = self.api.claim_next(self.round_id, lease_seconds=self.lease_seconds)
        if item is None:
            self.current = None
            self.finished = True
            return None
        self.finished = False
        return self._show(self._load(item))

    def _load(self, item: ReviewItemPublic) -> Loaded:
        """The item's pixels: from the prefetch cache when there, else fetched now."""
        with self._lock:
            future = self._pending.pop(item.id, None)
        loaded = None
        if future is not None:
            try:
                loaded = future.result()
            except RegraspError:
                loaded = None  # a failed prefetch is retried on the critical path
        if loaded is None:
            loaded = _fetch(self.api, item)
        # The claim bumped the item's version and set the lease: keep the fresh record.
        return replace(loaded, item=item)

    def _frame(self, loaded: Loaded) -> viz.Frame:
        """Where the current view puts the item's image pixels on the picture."""
        return viz.review_frame(
            _image(loaded, self.view).shape,
            labels=loaded.labels,
            predictions=loaded.predictions,
            zoom=self.view.zoom,
            size=self.size,
        )

    def _show(self, loaded: Loaded) -> Loaded:
        self.current = loaded
        self.accepted, self.wrong = set(), set()
        # A second reviewer starts from what the first drew: keeping it is agreeing.
        self.drawn = _proposals(loaded.item)
        self.shown_at = self.lease_renewed_at = self.clock()
        self.last_error = None
        if self.prefetch_enabled:
            self._scheduled = self._pool.submit(self._prefetch, loaded.item.id, self.view)
        return loaded

    def _keep(self, loaded: Loaded) -> None:
        done: Future[Loaded] = Future()
        done.set_result(loaded)
        with self._lock:
            self._pending[loaded.item.id] = done

    def _prefetch(self, current_id: int, view: View) -> None:
        """Start loading the items the next claims will most likely return."""
        try:
            upcoming = self.api.upcoming(self.round_id, limit=self.lookahead + 1)
        except RegraspError:
            return  # prefetch is an optimisation; the claim path still works
        with self._lock:
            for item in upcoming:
                if item.id == current_id or item.id in self._pending:
                    continue
                self._pending[item.id] = self._pool.submit(
                    _fetch, self.api, item, view=view, size=self.size
                )

    def _require_current(self, item_id: int | None = None) -> Loaded:
        if self.current is None:
            raise NotFound("no item is shown: the queue is empty for you")
        if item_id is not None and item_id != self.current.item.id:
            raise StaleItem(
                f"that action was for item {item_id}, no longer on screen; nothing changed"
            )
        return self.current


def parse_label_numbers(text: str, count: int) -> list[int]:
    """Exact label numbers from what an annotator typed: `12`, `3 7 40`, `3, 7`, `10-14`.

    Whole numbers only, never a substring match (`2` is label 2, not 12 or 21); a number
    outside 1..count, or anything else, raises InvalidInput naming it.
    """
    numbers: list[int] = []
    for token in re.split(r"[\s,;]+", text.strip()):
        if not token:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if match is None:
            raise InvalidInput(f"{token!r} is not a label number (type e.g. 12, 3 7 or 10-14)")
        lo = int(match[1])
        hi = int(match[2]) if match[2] else lo
        if hi < lo:
            raise InvalidInput(f"{token!r}: the range runs backwards")
        if not (1 <= lo and hi <= count):
            raise InvalidInput(f"label {token} does not exist (this image has {count})")
        numbers.extend(range(lo, hi + 1))
    return list(dict.fromkeys(numbers))


def _fetch(
    api: OrchestratorClient, item: ReviewItemPublic, *, view: View | None = None, size: int = 768
) -> Loaded:
    """Download and decode the item's images; pre-render `view` (if given)."""
    rgb = decode_rgb(api.image_bytes(item.image_id, "rgb"))
    try:
        depth = decode_depth(api.image_bytes(item.image_id, "depth"))
    except NotFound:
        depth = None  # RGB-only datasets (Cornell) have no stored depth
    loaded = Loaded(item=item, rgb=rgb, depth=depth)
    if view is not None:  # as `_show` will first draw it: nothing picked, proposals drawn
        _render(loaded, view, set(), set(), size, _proposals(item))
    return loaded


def _proposals(item: ReviewItemPublic) -> list[tuple[float, ...]]:
    """The grasps other reviewers drew on the item, as the session holds drawn grasps."""
    return [tuple(g) for g in item.proposed_grasps]


def _render(
    loaded: Loaded,
    view: View,
    accepted: set[int],
    wrong: set[int],
    size: int,
    drawn: Sequence[tuple[float, ...]],
) -> bytes:
    key = (view, frozenset(accepted), frozenset(wrong), tuple(drawn))
    png = loaded.renders.get(key)
    if png is not None:
        return png
    image = _image(loaded, view)
    ids = [g.grasp_id for g in loaded.item.labels]
    picture = viz.review_overlay(
        image,
        labels=loaded.labels,
        predictions=loaded.predictions,
        wrong=[i for i, gid in enumerate(ids) if gid in wrong],
        accepted=sorted(accepted),
        drawn=np.asarray(drawn, dtype=np.float64).reshape(-1, 5),
        number_labels=view.number_labels,
        zoom=view.zoom,
        size=size,
    )
    png = viz.to_png(picture)
    loaded.renders[key] = png
    return png


def _image(loaded: Loaded, view: View) -> np.ndarray:
    """The pixels `view` shows: depth when asked for and stored, else RGB."""
    return loaded.depth if view.kind == "depth" and loaded.depth is not None else loaded.rgb
