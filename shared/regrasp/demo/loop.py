"""The demo's data and its unattended loop, through the services' HTTP APIs.

`bootstrap_demo` imports a small synthetic dataset and starts round 1 on first run only
(any existing dataset means the folder is in use). `run_rounds`: rounds on a synthetic
dataset with corrupted labels, each reviewed through the orchestrator's review API (claim
→ decide) by the simulated reviewer that knows the truth, then applied. Per round it
records the flagged count, the decision mix, the labels added and images removed (from
the version diff), how many decisions hit corrupted images and how many harmed clean
ones, and the test accuracy of the round's model: as its training job measured it on the
version's own (partly corrupted) labels, and — with a clean twin dataset (same seed, no
corruption) — on the clean labels of the same test objects through the trainer's
evaluate job, which is what shows whether refinement helps.

The synthetic import through the API keeps no truth manifest, but the generator is
deterministic in its parameters, so `synthetic_truth` regenerates the manifest here.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from regrasp.platform.errors import InvalidInput, RegraspError, StorageError

if TYPE_CHECKING:
    from regrasp.api.rounds import RoundPublic
    from regrasp.clients.orchestrator import OrchestratorClient
    from regrasp.clients.trainer import TrainerClient
    from regrasp.data.synthetic.manifest import Manifest, TruthRecord
    from regrasp.data.synthetic.reviewer import SimulatedReviewer

__all__ = [
    "DECISION_NAMES",
    "DEMO_CORRUPTION_KINDS",
    "DEMO_CORRUPT_FRACTION",
    "DEMO_ROUND",
    "DEMO_TRAIN",
    "RoundRow",
    "SyntheticSpec",
    "bootstrap_demo",
    "import_synthetic",
    "review_round",
    "run_rounds",
    "synthetic_truth",
]


#: A round's network for a laptop CPU: GG-CNN at 128² input (the images' own size), 40
#: epochs of 8-image batches at lr 1e-3 (cosine decay), no augmentation, an object-wise
#: split (test objects stay the same across versions and the clean twin), and every
#: quality peak decoded. The same recipe reaches 0.68 on unseen objects in the learning
#: test (tests/integration/test_training_learning.py); the old 4 epochs stopped before
#: learning began, and every image was flagged.
DEMO_TRAIN: dict[str, Any] = {
    "architecture": "ggcnn",
    "epochs": 40,
    "batch_size": 8,
    "lr": 1e-3,
    "dropout": 0.0,
    "input_size": 128,
    "num_workers": 0,
    "augment": {"enabled": False},
    "decode": {"threshold": 0.0},
    "split": {"kind": "object", "seed": 0, "val_fraction": 0.1, "test_fraction": 0.2},
}

#: The demo's round options (`RoundConfig`) beside its training recipe.
DEMO_ROUND: dict[str, Any] = {"flag": "score", "top_k": 5}

#: The review decisions, in the order the table and the charts show them.
DECISION_NAMES = ("true_negative", "missing_label", "annotation_error", "fix")


#: The demo dataset's corruption: 60% of the images, half with wrong rectangles (the
#: paper's wrong action) and half missing the grasps of all but one orientation. At the
#: paper's 25% in its three kinds the corrupted labels cost a 200-image model about 2
#: points, under the ±4-point spread between trainings, so no loop could show a rise;
#: with wrong actions on 30% of the images the round-0 model loses about 13 points, which
#: removing them wins back (bench/corruption_harm.py, docs/benchmarks.md).
DEMO_CORRUPT_FRACTION = 0.6
DEMO_CORRUPTION_KINDS: tuple[str, ...] = ("wrong_action", "one_orientation")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a generated dataset (they regenerate the same bytes and truth)."""

    images: int = 200
    size: int = 128
    objects: int | None = None
    seed: int = 0
    corrupt_fraction: float = DEMO_CORRUPT_FRACTION
    corruption_kinds: tuple[str, ...] = DEMO_CORRUPTION_KINDS

    def held_out(self, images: int) -> SyntheticSpec:
        """Clean images of other objects than this dataset's (another seed): a test set no
        round's model has seen, large enough that its accuracy moves by ~2 points, not 6."""
        return replace(self, images=images, objects=None, seed=self.seed + 1, corrupt_fraction=0.0)

    def generate(self, root: Path, *, workers: int | None = None) -> Manifest:
        """Write this dataset under `root` (Jacquard layout) → its truth `Manifest`."""
        from regrasp.data.synthetic.generate import generate_dataset

        return generate_dataset(
            root,
            images=self.images,
            objects=self.objects,
            size=self.size,
            seed=self.seed,
            corrupt_fraction=self.corrupt_fraction,
            corruption_kinds=self.corruption_kinds,
            compress=False,
            workers=workers,
        )

    def source(self, *, clean: bool = False) -> Any:
        """The import API's source; `clean` the twin without corrupted labels."""
        from regrasp.api.datasets import SyntheticSource

        return SyntheticSource(
            images=self.images,
            objects=self.objects,
            size=self.size,
            seed=self.seed,
            corrupt_fraction=0.0 if clean else self.corrupt_fraction,
            corruption_kinds=list(self.corruption_kinds),
        )


def bootstrap_demo(
    api: OrchestratorClient,
    *,
    name: str = "demo",
    spec: SyntheticSpec = SyntheticSpec(),  # noqa: B008 - frozen dataclass
    train: Mapping[str, Any] = DEMO_TRAIN,
    round_options: Mapping[str, Any] = DEMO_ROUND,
    on_progress: Callable[[str], None] = lambda _m: None,
) -> RoundPublic | None:
    """First run only: import the synthetic demo dataset and start round 1 on it.

    Does nothing (returns None) when any dataset exists. Returns round 1 just created.
    """
    from regrasp.api.rounds import RoundCreate

    existing = api.list_datasets()
    if existing:
        on_progress(f"{len(existing)} dataset(s) here already; no demo data imported")
        return None
    on_progress(
        f"importing the demo dataset {name!r}: {spec.images} synthetic images of "
        f"{spec.size}² px, {spec.corrupt_fraction:.0%} with corrupted labels"
    )
    dataset_id = import_synthetic(api, name=name, spec=spec)
    rnd = _retry_locked(
        lambda: api.create_round(
            RoundCreate(dataset_id=dataset_id, train=dict(train), **dict(round_options))
        )
    )
    on_progress(f"round {rnd.id} started on {name!r} v{rnd.base_version} (training)")
    return rnd


def import_synthetic(
    api: OrchestratorClient,
    *,
    name: str,
    spec: SyntheticSpec,
    clean: bool = False,
    description: str = "",
) -> int:
    """Import a synthetic dataset through the API (object-wise split) → its dataset id."""
    from regrasp.api.datasets import ImportRequest, SplitRequest

    request = ImportRequest(
        name=name,
        description=description or f"synthetic {'clean twin' if clean else 'demo'} dataset",
        source=spec.source(clean=clean),
        split=SplitRequest(kind="object", seed=spec.seed),
    )
    status = api.wait_import(_retry_locked(lambda: api.start_import(request)).id)
    if status.state != "succeeded" or status.dataset_id is None:
        raise StorageError(f"import of {name!r} failed: {status.error}")
    return status.dataset_id


@dataclass
class RoundRow:
    """One line of the demo's table (a round, or the model of the final version).

    accuracy: the model's test accuracy on the version's own labels (its training job);
    clean_accuracy: on the clean twin's labels of the same test objects (evaluate job).
    corrupted_hit: decisions that removed or fixed labels of corrupted images;
    clean_harmed: the same on clean images (reviewer errors or model-valid labels).
    """

    round: int | str
    base_version: int
    result_version: int | None = None
    flagged: int = 0
    predicted: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECISION_NAMES, 0))
    labels_added: int = 0
    labels_removed: int = 0
    images_removed: int = 0
    corrupted_hit: int = 0
    clean_harmed: int = 0
    reviewer_errors: int = 0
    accuracy: float | None = None
    clean_accuracy: float | None = None
    model_id: int | None = None
    seconds: float = 0.0

    @property
    def decided(self) -> int:
        return sum(self.decisions.values())


def run_rounds(
    admin: OrchestratorClient,
    reviewer_api: OrchestratorClient,
    trainer: TrainerClient,
    *,
    dataset_id: int,
    truth: Mapping[str, TruthRecord],
    reviewer: SimulatedReviewer,
    rounds: int = 3,
    train: Mapping[str, Any] = DEMO_TRAIN,
    round_options: Mapping[str, Any] = DEMO_ROUND,
    clean_dataset_id: int | None = None,
    clean_split: Literal["test", "all"] = "test",
    final_model: bool = True,
    timeout: float = 3600.0,
    on_row: Callable[[RoundRow], None] = lambda _r: None,
    on_status: Callable[[str], None] = lambda _m: None,
) -> list[RoundRow]:
    """Run `rounds` rounds on `dataset_id`, each reviewed by `reviewer` and applied.

    admin: an admin's client (starts and applies rounds); reviewer_api: the client the
    reviews are made with (an annotator's). truth: the manifest records by image name.
    With `final_model`, one more model is trained on the last version for its accuracy
    (the row named "final"). Each model is also scored on `clean_dataset_id`: its
    `clean_split` part (the clean twin's test objects), or all of it (a held-out set).
    Returns one row per round (plus the final one).
    """
    from regrasp.api.jobs import TrainJobCreate
    from regrasp.api.rounds import RoundCreate

    if rounds < 1:
        raise InvalidInput(f"rounds must be >= 1, got {rounds}")
    rows: list[RoundRow] = []
    for number in range(1, rounds + 1):
        started = time.monotonic()
        request = RoundCreate(
            dataset_id=dataset_id, train=dict(train), chunk_size=32, **dict(round_options)
        )
        rnd = _retry_locked(lambda request=request: admin.create_round(request))
        row = RoundRow(number, rnd.base_version)
        on_status(f"round {number}: training on v{rnd.base_version}")
        rnd = _wait_round(admin, rnd.id, ("reviewing",), timeout, on_status, number)
        rnd = _wait_items(admin, rnd.id, timeout)
        row.flagged, row.predicted, row.model_id = (
            rnd.counts.flagged,
            rnd.counts.images_predicted,
            rnd.model_id,
        )
        evaluation = _submit_clean_eval(trainer, rnd.model_id, clean_dataset_id, clean_split)
        on_status(f"round {number}: reviewing {rnd.counts.items} flagged images")
        review = review_round(reviewer_api, rnd.id, truth, reviewer)
        row.decisions.update(review["decisions"])
        row.corrupted_hit, row.clean_harmed = review["corrupted_hit"], review["clean_harmed"]
        row.reviewer_errors = review["errors"]
        on_status(f"round {number}: applying {row.decided} decisions")
        _retry_locked(lambda rnd=rnd: admin.apply_round(rnd.id))
        rnd = _wait_round(admin, rnd.id, ("done",), timeout, on_status, number)
        row.result_version = rnd.result_version
        assert rnd.result_version is not None
        diff = admin.diff(dataset_id, rnd.base_version, rnd.result_version, limit=1)
        row.labels_added, row.labels_removed = diff.added_grasp_count, diff.removed_grasp_count
        row.images_removed = _removed_images(admin, dataset_id, rnd)
        row.accuracy = _train_accuracy(trainer, rnd.train_job_id, timeout)
        row.clean_accuracy = _eval_accuracy(trainer, evaluation, timeout)
        row.seconds = time.monotonic() - started
        rows.append(row)
        on_row(row)
    if final_model:
        started = time.monotonic()
        version = rows[-1].result_version
        assert version is not None
        on_status(f"final: training on v{version}")
        job = trainer.submit(
            TrainJobCreate(dataset=dataset_id, version=version, config=dict(train))
        )
        done = trainer.wait(job.id, timeout=timeout, poll=1.0)
        if done.state != "succeeded" or not done.result:
            raise StorageError(f"final training job {job.id} {done.state}: {done.error}")
        row = RoundRow("final", version, model_id=int(done.result["model_id"]))
        row.accuracy = (done.result.get("metrics") or {}).get("test_accuracy")
        evaluation = _submit_clean_eval(trainer, row.model_id, clean_dataset_id, clean_split)
        row.clean_accuracy = _eval_accuracy(trainer, evaluation, timeout)
        row.seconds = time.monotonic() - started
        rows.append(row)
        on_row(row)
    return rows


def review_round(
    api: OrchestratorClient,
    round_id: int,
    truth: Mapping[str, TruthRecord],
    reviewer: SimulatedReviewer,
) -> dict[str, Any]:
    """Answer every review item of the round through the review API (claim → decide).

    Returns {"decisions": Counter by kind, "corrupted_hit", "clean_harmed", "errors"}.
    """
    from regrasp.api.review import DecisionCreate

    kinds: Counter[str] = Counter()
    hit = harmed = errors = 0
    while True:
        item = _retry_locked(lambda: api.claim_next(round_id))
        if item is None:
            break
        record = truth.get(item.image)
        if record is None:
            raise InvalidInput(f"image {item.image!r} is not in the truth manifest")
        predictions = sorted(item.predictions, key=lambda p: p.index)
        labels = np.array([lab.grasp for lab in item.labels], dtype=np.float64).reshape(-1, 5)
        preds = np.array([p.grasp for p in predictions], dtype=np.float64).reshape(-1, 5)
        shown = time.monotonic()
        proposed = np.asarray(item.proposed_grasps, dtype=np.float64).reshape(-1, 5)
        decision = reviewer.review(
            record, labels, preds, proposed=proposed if len(proposed) else None
        )
        body = DecisionCreate(
            item_version=item.version,
            decision=decision.kind,  # type: ignore[arg-type]
            accepted_predictions=[predictions[i].index for i in decision.accepted_predictions],
            removed_grasp_ids=[item.labels[i].grasp_id for i in decision.removed_labels],
            drawn_grasps=[tuple(g) for g in decision.drawn_grasps],
            seconds_taken=time.monotonic() - shown,
        )
        _retry_locked(lambda item=item, body=body: api.decide(item.id, body))
        kinds[decision.kind] += 1
        errors += decision.simulated_error
        if decision.kind in ("annotation_error", "fix"):
            if record.corrupted:
                hit += 1
            else:
                harmed += 1
    return {"decisions": kinds, "corrupted_hit": hit, "clean_harmed": harmed, "errors": errors}


def synthetic_truth(spec: SyntheticSpec, *, work_dir: Path | None = None) -> dict[str, TruthRecord]:
    """The truth manifest of `spec`'s dataset, by image name, regenerated in a temporary
    folder (the generator is deterministic in its parameters)."""
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="truth-") as tmp:
        # No process pool: safe under any entry point, seconds at demo sizes.
        manifest = spec.generate(Path(tmp) / "data", workers=1)
        return manifest.by_stem()


def _retry_locked(call: Callable[[], Any], *, tries: int = 30) -> Any:
    """`call()`, again while the embedded SQLite answers "database is locked": several
    processes write one SQLite file, and a write that loses the race fails at once."""
    for attempt in range(tries):
        try:
            return call()
        except RegraspError as exc:
            if attempt == tries - 1 or "locked" not in str(exc):
                raise
            time.sleep(0.3)
    return None


def _wait_round(
    api: OrchestratorClient,
    round_id: int,
    states: tuple[str, ...],
    timeout: float,
    on_status: Callable[[str], None],
    number: int,
) -> RoundPublic:
    seen: list[str] = []

    def progress(rnd: RoundPublic) -> None:
        if not seen or seen[-1] != rnd.state:
            seen.append(rnd.state)
            on_status(f"round {number}: {rnd.state}")

    rnd = _retry_locked(
        lambda: api.wait_round(
            round_id,
            until=(*states, "failed", "cancelled"),
            timeout=timeout,
            poll=1.0,
            on_progress=progress,
        )
    )
    if rnd.state not in states:
        raise StorageError(f"round {round_id} {rnd.state} in {rnd.failed_in}: {rnd.error}")
    return rnd


def _wait_items(api: OrchestratorClient, round_id: int, timeout: float) -> RoundPublic:
    """The reviewing step creates the review items just after the state changes."""
    deadline = time.monotonic() + timeout
    while True:
        rnd = api.get_round(round_id)
        if rnd.counts.items >= rnd.counts.flagged:
            return rnd
        if time.monotonic() > deadline:
            raise StorageError(f"round {round_id}: review items not created in {timeout:.0f} s")
        time.sleep(0.5)


def _removed_images(api: OrchestratorClient, dataset_id: int, rnd: RoundPublic) -> int:
    by_number = {v.number: v for v in api.list_versions(dataset_id)}
    base, result = by_number.get(rnd.base_version), by_number.get(rnd.result_version or -1)
    if base is None or result is None:
        return 0
    return max(0, base.image_count - result.image_count)


def _submit_clean_eval(
    trainer: TrainerClient,
    model_id: int | None,
    clean_dataset_id: int | None,
    split: Literal["test", "all"],
) -> int | None:
    from regrasp.api.jobs import EvaluateJobCreate

    if model_id is None or clean_dataset_id is None:
        return None
    job = EvaluateJobCreate(model_id=model_id, dataset=clean_dataset_id, split=split)
    return trainer.submit(job).id


def _eval_accuracy(trainer: TrainerClient, job_id: int | None, timeout: float) -> float | None:
    if job_id is None:
        return None
    done = trainer.wait(job_id, timeout=timeout, poll=1.0)
    if done.state != "succeeded" or not done.result:
        raise StorageError(f"evaluation job {job_id} {done.state}: {done.error}")
    return float(done.result["accuracy"])


def _train_accuracy(trainer: TrainerClient, job_id: int | None, timeout: float) -> float | None:
    if job_id is None:
        return None
    done = trainer.wait(job_id, timeout=timeout, poll=1.0)
    value = ((done.result or {}).get("metrics") or {}).get("test_accuracy")
    return None if value is None else float(value)
