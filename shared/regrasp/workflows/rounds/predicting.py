"""The predicting step's two halves: fan images out to inference replicas, score the answers.

`predict_chunks` splits a list of image ids into chunks and sends them concurrently to
every inference replica that exists now (`clients.inference.replica_urls`: a headless
Service name becomes one URL per pod), round-robin, `per_url` requests in flight per
replica so BentoML's adaptive batching on each has work to merge. Every call names the
round's model. A chunk that fails is retried on another replica (one that has not just
failed), up to `retries` times; each finished chunk is handed to `on_chunk` in the
calling thread, so the caller stores it (one transaction per chunk) and a crash loses at
most the chunks in flight.

`score` turns the ranked predictions of a chunk into the round's per-image numbers, all
images of the chunk at once (`regrasp.grasp.metrics.best_iou_batch`):

- best_iou: the top-1 prediction's best gated IoU over the image's base-version labels
  (0 without a prediction or without labels);
- flagged: best_iou < threshold (the paper's HIL rule);
- priority (review order, higher first): the likelier a label error, the higher. A
  confident prediction that overlaps no label is the strongest hint that the labels miss
  or misplace a grasp, so

      priority = clip(q1, 0, 1) · (1 − best_iou / threshold)     for flagged images,
      priority = 0                                                otherwise,

  with q1 the top-1 predicted quality (0 without a prediction). It lies in [0, 1]: 1 is a
  fully confident grasp with no overlap at all.
- quality: the grasp label-quality score of every image (`regrasp.refine.label_quality`), kept
  whatever the flag; with `flag="score"` it decides instead of the paper's rule:

      flagged = 1 − quality ≥ score_threshold,
      priority = (1 − ε) · (1 − quality) + ε · (1 − wrong_action),   ε = WRONG_ACTION_FIRST,

  so an image whose top-1 matches a label but which lacks grasps the model is sure of is
  flagged too, and the queue serves the likeliest errors first. The ε term breaks ties
  (an image sure to miss grasps and one sure to hold wrong rectangles both have quality
  0) in favour of wrong rectangles: they cost a model far more (removing the wrong
  actions of 30% of the images wins back about 13 points, missing grasps cost a few;
  bench/corruption_harm.py), and with more flagged images than the review budget the
  tie decides which get reviewed.

`object_masks` reads the chunk's stored object masks, so that the score can also test the
labels against the object (wrong action group, how much of the object and of the grasps
it allows the labels reach). An image without a readable mask is scored without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from regrasp.api.predict import PredictStoredRequest, StoredPrediction
from regrasp.clients.inference import InferenceClient, replica_urls
from regrasp.grasp.imaging import decode_mask
from regrasp.grasp.metrics import best_iou_batch
from regrasp.platform.errors import InvalidInput, NotFound, RegraspError, StorageError
from regrasp.platform.store.objects.base import ObjectStore
from regrasp.refine.label_quality import label_quality

__all__ = ["ChunkResult", "Scores", "object_masks", "predict_chunks", "score"]

log = logging.getLogger(__name__)

#: Columns of a stored prediction row: x, y, theta, opening, jaw, quality.
PREDICTION_COLUMNS = 6
#: Share of the score flag's priority given to the wrong-action evidence alone: it orders
#: images of equal quality wrong rectangles first (module docstring), and moves no image
#: by more than this.
WRONG_ACTION_FIRST = 0.05


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's answers: image ids (C,) and per image a (K_i, 6) array or an error."""

    image_ids: np.ndarray
    grasps: list[np.ndarray]
    errors: list[str | None]


@dataclass(frozen=True)
class Scores:
    """Per-image results of `score`, arrays of length M."""

    best_iou: np.ndarray
    flagged: np.ndarray
    priority: np.ndarray
    quality: list[dict[str, Any]]


def predict_chunks(
    urls: Sequence[str],
    image_ids: Sequence[int] | np.ndarray,
    *,
    model_id: int,
    dataset_id: int,
    version: int,
    k: int,
    credential: str | None,
    on_chunk: Callable[[ChunkResult], None],
    chunk_size: int = 64,
    per_url: int = 2,
    retries: int = 3,
    timeout: float = 600.0,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Predict every image in chunks over all `urls`; returns the number of chunks.

    `on_chunk` runs in the calling thread, once per chunk, in completion order. Raises
    the last error of a chunk that failed `retries + 1` times (on different replicas when
    there are several); chunks still in flight are dropped (not stored), so a rerun only
    redoes them. `should_stop` is polled between chunks.
    """
    if not urls:
        raise InvalidInput("no inference URL configured")
    if chunk_size < 1 or per_url < 1 or retries < 0:
        raise InvalidInput("chunk_size and per_url must be >= 1 and retries >= 0")
    ids = np.asarray(image_ids, dtype=np.int64)
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    if not chunks:
        return 0
    urls = replica_urls(urls)
    clients = [InferenceClient(u, credential=credential, timeout=timeout) for u in urls]
    down: set[int] = set()  # replicas whose last call failed: skipped while others answer

    def pick(start: int) -> int:
        for step in range(len(clients)):
            if (start + step) % len(clients) not in down:
                return (start + step) % len(clients)
        down.clear()  # every replica failed once: try them all again
        return start % len(clients)

    def run(chunk: np.ndarray, replica: int) -> ChunkResult:
        request = PredictStoredRequest(
            model_id=model_id, dataset_id=dataset_id, version=version, image_ids=chunk.tolist(), k=k
        )
        answer = clients[replica].predict_stored(request)
        return _chunk_result(chunk, answer.results)

    workers = len(clients) * per_url
    done = 0
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="round-predict") as pool:
            pending: dict[Future[ChunkResult], tuple[int, int, int]] = {}
            queue = list(enumerate(chunks))
            queue.reverse()

            def submit(index: int, replica: int, attempt: int) -> None:
                replica = pick(replica)
                future = pool.submit(run, chunks[index], replica)
                pending[future] = (index, replica, attempt)

            while queue and len(pending) < workers:
                index, _ = queue.pop()
                submit(index, index, 0)
            while pending:
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in finished:
                    index, replica, attempt = pending.pop(future)
                    error = future.exception()
                    if error is not None:
                        down.add(replica)
                        if attempt >= retries:
                            for other in pending:
                                other.cancel()
                            raise _as_domain(error, index, attempt)
                        log.warning(
                            "chunk %d failed on %s (%s); retrying",
                            index,
                            urls[replica % len(urls)],
                            error,
                        )
                        submit(index, replica + 1, attempt + 1)
                        continue
                    down.discard(replica)
                    on_chunk(future.result())
                    done += 1
                if should_stop is not None and should_stop():
                    for other in pending:
                        other.cancel()
                    return done
                while queue and len(pending) < workers:
                    index, _ = queue.pop()
                    submit(index, index, 0)
    finally:
        for client in clients:
            client.close()
    return done


def score(
    grasps: Sequence[np.ndarray],
    labels: np.ndarray,
    label_index: np.ndarray,
    *,
    threshold: float,
    flag: Literal["paper", "score"] = "paper",
    score_threshold: float = 0.5,
    masks: Sequence[np.ndarray | None] | None = None,
) -> Scores:
    """Best IoU, flag, priority and label quality of M images (see the module docstring).

    grasps: M arrays (K_i, 6) `(x, y, theta, opening, jaw, quality)`, best first (K_i may
    be 0). labels: (N, 5) every label of the M images; label_index: (N,) ints in [0, M),
    whose image each label is. masks: optional object masks for the wrong-action score.
    """
    if not 0.0 < threshold <= 1.0:
        raise InvalidInput(f"threshold must be in (0, 1], got {threshold}")
    if flag not in ("paper", "score") or not 0.0 < score_threshold <= 1.0:
        raise InvalidInput("flag must be 'paper' or 'score' and score_threshold in (0, 1]")
    m = len(grasps)
    top1 = np.full((m, 5), np.nan)
    quality = np.zeros(m)
    predicted = np.zeros(m, dtype=bool)
    for i, g in enumerate(grasps):  # one row per image: M small, the IoU work is batched
        if len(g):
            top1[i] = g[0, :5]
            quality[i] = g[0, 5]
            predicted[i] = True
    if m == 0:
        return Scores(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), [])
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    index = np.asarray(label_index, dtype=np.int64)
    best = best_iou_batch(top1, labels, image_index=index, predicted=predicted)
    scored = label_quality(
        [np.asarray(g, dtype=np.float64).reshape(-1, PREDICTION_COLUMNS) for g in grasps],
        labels,
        index,
        masks=masks,
    )
    if flag == "score":
        issue = np.array([q.issue for q in scored])
        wrong = np.array([1.0 - q.wrong_action for q in scored])
        flagged = issue >= score_threshold
        priority = (1.0 - WRONG_ACTION_FIRST) * issue + WRONG_ACTION_FIRST * wrong
    else:
        flagged = best < threshold
        priority = np.where(
            flagged,
            np.clip(quality, 0.0, 1.0) * (1.0 - np.minimum(best, threshold) / threshold),
            0.0,
        )
    return Scores(best, flagged, priority, [q.to_dict() for q in scored])


def object_masks(
    store: ObjectStore, keys: Sequence[str | None], *, workers: int = 8
) -> list[np.ndarray | None]:
    """The boolean object masks stored under `keys` (None for a None key), read
    concurrently: on S3 each read is a round trip, and a round reads one per image.

    A mask that is gone or does not decode is None, with a warning: the image is then
    scored on its predictions alone rather than failing the round. An unreachable store
    raises StorageError, which the round retries.
    """

    def read(key: str | None) -> np.ndarray | None:
        if key is None:
            return None
        try:
            return decode_mask(store.get_bytes(key)) > 0
        except (NotFound, InvalidInput) as error:
            log.warning("object mask %s not used: %s", key, error)
            return None

    if len(keys) <= 1:
        return [read(key) for key in keys]
    with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool:
        return list(pool.map(read, keys))


# --- private ----------------------------------------------------------------------------


def _chunk_result(chunk: np.ndarray, results: Sequence[StoredPrediction]) -> ChunkResult:
    by_id = {r.image_id: r for r in results}
    grasps: list[np.ndarray] = []
    errors: list[str | None] = []
    for image_id in chunk.tolist():
        r = by_id.get(image_id)
        if r is None:
            grasps.append(np.zeros((0, PREDICTION_COLUMNS)))
            errors.append("no answer for this image")
            continue
        rows = [[g.x, g.y, g.theta, g.opening, g.jaw, g.quality] for g in r.grasps]
        grasps.append(np.asarray(rows, dtype=np.float64).reshape(-1, PREDICTION_COLUMNS))
        errors.append(r.error)
    return ChunkResult(chunk, grasps, errors)


def _as_domain(error: BaseException, index: int, attempt: int) -> RegraspError:
    if isinstance(error, RegraspError):
        return error
    return StorageError(
        f"inference failed on chunk {index} after {attempt + 1} tries: "
        f"{type(error).__name__}: {error}"
    )
