"""SQLAlchemy models of the whole data model: labels, versions, rounds, reviews, jobs, users.

History is append-only so that every dataset version is an immutable snapshot and a diff is
a query. Two kinds of rows carry a lifetime expressed in dataset version numbers, both as
the half-open interval `[added_in_version, removed_in_version)`:

- `grasps`: one row per rectangle. A grasp is a label of version v when
  `added_in_version <= v and (removed_in_version is null or removed_in_version > v)`.
  A row is written once and later only *closed* (`removed_in_version` set from null to the
  version that removed it, with the reason and who removed it); it is never reopened.
- `image_spans`: the presence of an image, one row per interval (the same rule as grasps).
  `images` holds what never changes about an image (object, split, object-store keys, size,
  checksum); whether it belongs to version v is answered by its spans. Removing an image
  closes its open span; restoring it (a rollback to a version where it was present) opens a
  *new* span, so an image removed in v3 and restored in v5 has spans `[0, 3)` and `[5, ∞)`
  and versions 3 and 4 still read exactly as they were. A partial unique index allows at
  most one open span per image. Grasps restored by a rollback are likewise new rows that
  point at the row they copy (`restored_from_id`).

Versions form a linear chain per dataset (`dataset_versions`, unique `(dataset_id,
number)`); `datasets.latest_version` is the head that version creation compares-and-swaps.
Enumerations are stored as strings with a CHECK constraint (`native_enum=False`) and JSON
as `sa.JSON`, so one schema (and one set of migrations) runs on SQLite and PostgreSQL.
All timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from regrasp.platform.clock import utcnow

__all__ = [
    "ApiKey",
    "ApiKeyScope",
    "Base",
    "Dataset",
    "DatasetImport",
    "DatasetObject",
    "DatasetVersion",
    "Grasp",
    "GraspSource",
    "Image",
    "ImageSpan",
    "ImportState",
    "Job",
    "JobKind",
    "JobState",
    "LoginFailure",
    "Model",
    "ModelAlias",
    "ModelAliasEvent",
    "ModelStatus",
    "Prediction",
    "Review",
    "ReviewDecision",
    "ReviewItem",
    "ReviewItemState",
    "ReviewSkip",
    "Round",
    "RoundState",
    "User",
    "UserRole",
]

#: Constraint names are deterministic so that migrations can refer to them (SQLite batch
#: mode rebuilds tables by name) and both dialects agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: 64-bit ids where row counts reach millions; SQLite only auto-increments INTEGER keys.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps that are timezone-aware UTC on both dialects.

    PostgreSQL keeps the zone (`timestamptz`); SQLite stores naive text, so values are
    normalised to UTC on the way in and given back their UTC zone on the way out, and
    code never compares naive with aware datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class GraspSource(enum.StrEnum):
    """Where a rectangle came from."""

    original = "original"  # imported with the dataset (version 0)
    prediction = "prediction"  # a model's grasp accepted by a reviewer ("missing label")
    manual = "manual"  # drawn or typed by a person


class UserRole(enum.StrEnum):
    admin = "admin"
    annotator = "annotator"


class ApiKeyScope(enum.StrEnum):
    """What a key may do, whoever made it (least privilege: a robot's key only predicts)."""

    robot = "robot"  # the inference service's POST /predict and GET /model, nothing else
    service = "service"  # machine-to-machine, like REGRASP_SERVICE_API_KEY
    admin = "admin"  # acts as its owner (an admin) everywhere


class ModelStatus(enum.StrEnum):
    training = "training"
    ready = "ready"
    failed = "failed"


class JobKind(enum.StrEnum):
    train = "train"
    evaluate = "evaluate"


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class RoundState(enum.StrEnum):
    created = "created"
    training = "training"
    predicting = "predicting"
    reviewing = "reviewing"
    applying = "applying"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class ReviewItemState(enum.StrEnum):
    pending = "pending"
    leased = "leased"
    decided = "decided"
    adjudication = "adjudication"


class ReviewDecision(enum.StrEnum):
    true_negative = "true_negative"
    missing_label = "missing_label"
    annotation_error = "annotation_error"
    fix = "fix"


def _enum(cls: type[enum.StrEnum], name: str) -> sa.Enum:
    """A portable enumeration: VARCHAR plus a named CHECK constraint, values stored."""
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
        float: sa.Double(),
    }


# --- people -----------------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(128), unique=True)
    role: Mapped[UserRole] = mapped_column(_enum(UserRole, "user_role"))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A robot's key: looked up by its clear `prefix`, verified against `key_hash`."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(255))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
    scope: Mapped[ApiKeyScope] = mapped_column(
        _enum(ApiKeyScope, "api_key_scope"), default=ApiKeyScope.robot, server_default="robot"
    )


# --- datasets and labels ----------------------------------------------------------------


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    #: Head of the version chain; null until version 0 is imported.
    latest_version: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetObject(Base):
    """A physical object; object-wise splits keep its images together."""

    __tablename__ = "objects"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(255))


class Image(Base):
    """What never changes about an image; its presence per version lives in `image_spans`."""

    __tablename__ = "images"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    object_id: Mapped[int] = mapped_column(sa.ForeignKey("objects.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    split: Mapped[str | None] = mapped_column(sa.String(16))
    rgb_key: Mapped[str | None] = mapped_column(sa.String(1024))
    depth_key: Mapped[str | None] = mapped_column(sa.String(1024))
    stereo_key: Mapped[str | None] = mapped_column(sa.String(1024))
    mask_key: Mapped[str | None] = mapped_column(sa.String(1024))
    grasps_key: Mapped[str | None] = mapped_column(sa.String(1024))
    width: Mapped[int]
    height: Mapped[int]
    #: sha256 of the RGB file, hex.
    checksum: Mapped[str | None] = mapped_column(sa.String(64))


class ImageSpan(Base):
    """One interval `[added_in_version, removed_in_version)` in which an image is present."""

    __tablename__ = "image_spans"
    __table_args__ = (
        sa.CheckConstraint(
            "removed_in_version IS NULL OR removed_in_version > added_in_version",
            name="interval",
        ),
        sa.Index("ix_image_spans_dataset_added", "dataset_id", "added_in_version"),
        sa.Index("ix_image_spans_dataset_removed", "dataset_id", "removed_in_version"),
        sa.Index(
            "uq_image_spans_open",
            "image_id",
            unique=True,
            postgresql_where=sa.text("removed_in_version IS NULL"),
            sqlite_where=sa.text("removed_in_version IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(
        sa.ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    added_in_version: Mapped[int]
    removed_in_version: Mapped[int | None]
    removed_reason: Mapped[str | None] = mapped_column(sa.Text)
    removed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class Grasp(Base):
    """One rectangle `(x, y, theta, opening, jaw)` in pixels and degrees, with its lifetime."""

    __tablename__ = "grasps"
    __table_args__ = (
        sa.CheckConstraint(
            "removed_in_version IS NULL OR removed_in_version > added_in_version",
            name="interval",
        ),
        sa.Index("ix_grasps_dataset_added", "dataset_id", "added_in_version"),
        sa.Index("ix_grasps_dataset_removed", "dataset_id", "removed_in_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Denormalised from the image so that "labels of version v" reads one table. No
    #: foreign key on purpose: the image's key already guarantees the dataset exists, and
    #: a second per-row check costs ~40% of a million-row import.
    dataset_id: Mapped[int]
    image_id: Mapped[int] = mapped_column(
        sa.ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    x: Mapped[float]
    y: Mapped[float]
    theta: Mapped[float]
    opening: Mapped[float]
    jaw: Mapped[float]
    added_in_version: Mapped[int]
    removed_in_version: Mapped[int | None]
    source: Mapped[GraspSource] = mapped_column(_enum(GraspSource, "grasp_source"))
    # Provenance of the addition.
    round_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rounds.id"))
    prediction_id: Mapped[int | None] = mapped_column(sa.ForeignKey("predictions.id"))
    reviewer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    restored_from_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("grasps.id"))
    # Provenance of the removal, written once when the row is closed.
    removed_reason: Mapped[str | None] = mapped_column(sa.Text)
    removed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int]
    parent_number: Mapped[int | None]
    round_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rounds.id"))
    message: Mapped[str] = mapped_column(sa.Text, default="")
    image_count: Mapped[int] = mapped_column(default=0)
    grasp_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- models and jobs --------------------------------------------------------------------


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    architecture: Mapped[str] = mapped_column(sa.String(64))
    in_channels: Mapped[int]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dataset_id: Mapped[int | None] = mapped_column(sa.ForeignKey("datasets.id"), index=True)
    dataset_version: Mapped[int | None]
    #: Image ids per split name, as trained: {"train": [...], "val": [...], "test": [...]}.
    split: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weights_key: Mapped[str | None] = mapped_column(sa.String(1024))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ModelStatus] = mapped_column(
        _enum(ModelStatus, "model_status"), default=ModelStatus.training
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """A name robots are served by (`production`), pointing at one model (MLflow's aliases).

    Only an admin's promotion moves an alias; rounds and campaigns never do. Every move is
    kept in `model_alias_events`.
    """

    __tablename__ = "model_aliases"

    alias: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"), index=True)
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    set_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class ModelAliasEvent(Base):
    """One move of an alias (append-only history: who promoted what, when, over what)."""

    __tablename__ = "model_alias_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(64), index=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"))
    previous_model_id: Mapped[int | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class Job(Base):
    """A trainer job; workers claim the oldest queued one and heartbeat while running."""

    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_state_created", "state", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.queued)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    worker_id: Mapped[str | None] = mapped_column(sa.String(255))
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    error: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


# --- rounds, predictions, reviews -------------------------------------------------------


class Round(Base):
    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id"), index=True)
    base_version: Mapped[int]
    result_version: Mapped[int | None]
    state: Mapped[RoundState] = mapped_column(
        _enum(RoundState, "round_state"), default=RoundState.created
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The workflow's own state (`regrasp.refine.rounds.run.RoundRun`): step timings,
    #: training units, the apply request, the state it failed in.
    run: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=dict)
    #: The streak of a step whose service could not be reached (`regrasp.workflows.retrying`).
    retry: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    model_id: Mapped[int | None] = mapped_column(sa.ForeignKey("models.id"))
    train_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"))
    evaluate_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        sa.UniqueConstraint("round_id", "image_id"),
        sa.Index("ix_predictions_round_flagged", "round_id", "flagged"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(sa.ForeignKey("images.id"))
    #: Top-k grasps, best first: [[x, y, theta, opening, jaw, quality], ...].
    grasps: Mapped[list[Any]] = mapped_column(default=list)
    best_iou: Mapped[float]
    flagged: Mapped[bool]
    priority: Mapped[float] = mapped_column(default=0.0)
    #: The grasp label-quality score (`regrasp.refine.label_quality`): per-image score, kind and
    #: the indices of the predictions and labels that triggered it. None before 0006.
    quality: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class ReviewItem(Base):
    """A queue entry; `version` increases on every change (optimistic concurrency)."""

    __tablename__ = "review_items"
    __table_args__ = (
        sa.UniqueConstraint("round_id", "image_id"),
        sa.Index("ix_review_items_queue", "round_id", "state", "priority"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(sa.ForeignKey("images.id"))
    prediction_id: Mapped[int | None] = mapped_column(sa.ForeignKey("predictions.id"))
    state: Mapped[ReviewItemState] = mapped_column(
        _enum(ReviewItemState, "review_item_state"), default=ReviewItemState.pending
    )
    lease_owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    lease_expires_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    required_reviews: Mapped[int] = mapped_column(default=1)
    priority: Mapped[float] = mapped_column(default=0.0)
    #: An audit item of the census of the unflagged images the flag ranks highest
    #: (`regrasp.refine.refinement_stats.add_audit_items`'s `top`), not of the random sample.
    audit_top: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


#: What a claim's pick-next walks: a round's waiting items in claim order (priority, then
#: id), so the first rows of the index are the answer and a claim costs the same at 1,500
#: or 20,000 items. On PostgreSQL only pending and leased items are in it (decided ones,
#: most of a round by its end, never are candidates); SQLite gets the plain index.
#: `POOL_STATES_SQL` is the predicate the pick-next query repeats word for word, so the
#: planner can prove it covers the partial index.
POOL_STATES_SQL = "state IN ('pending', 'leased')"
sa.Index(
    "ix_review_items_pick",
    ReviewItem.round_id,
    ReviewItem.priority.desc(),
    ReviewItem.id,
    postgresql_where=sa.text(POOL_STATES_SQL),
)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(
        sa.ForeignKey("review_items.id", ondelete="CASCADE"), index=True
    )
    annotator_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    decision: Mapped[ReviewDecision] = mapped_column(_enum(ReviewDecision, "review_decision"))
    #: Indices into the prediction's top-k list accepted as new labels.
    accepted_prediction_indices: Mapped[list[Any]] = mapped_column(default=list)
    #: Grasp ids the reviewer marked wrong ("fix").
    removed_grasp_ids: Mapped[list[Any]] = mapped_column(default=list)
    #: Grasps the reviewer drew, `[x, y, theta, opening, jaw]` rows (migration 0010):
    #: true grasps no label and no prediction shows, added as labels (source "manual").
    drawn_grasps: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    seconds_taken: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    item_version: Mapped[int]
    superseded: Mapped[bool] = mapped_column(default=False)
    #: An admin's resolution of a double-review disagreement (migration 0003); agreement
    #: statistics count only annotators' reviews.
    adjudication: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


# --- dataset imports and login throttling (migration 0002) -------------------------------


class ImportState(enum.StrEnum):
    """Phases of a dataset import; `succeeded` and `failed` are final."""

    queued = "queued"
    generating = "generating"  # synthetic sources only: rendering the images first
    validating = "validating"  # imports before the one-pass importer: checking every file
    uploading = "uploading"  # reading, checking and storing each file once (skips stored ones)
    writing = "writing"  # version 0 in one database transaction
    succeeded = "succeeded"
    failed = "failed"


class DatasetImport(Base):
    """One import request and its progress, so that any orchestrator replica can report it.

    `heartbeat_at` is refreshed while the import runs; an active import whose heartbeat
    stopped belongs to a process that died and is reported failed (a new request resumes
    it: objects already stored are reused).
    """

    __tablename__ = "imports"
    __table_args__ = (sa.Index("ix_imports_dataset_name_state", "dataset_name", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_name: Mapped[str] = mapped_column(sa.String(128))
    dataset_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="SET NULL")
    )
    state: Mapped[ImportState] = mapped_column(
        _enum(ImportState, "import_state"), default=ImportState.queued
    )
    #: The request as given: {"name", "description", "source": {...}, "split": {...}}.
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    uploaded: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class LoginFailure(Base):
    """A failed password login, kept a short while to rate-limit guessing per name and client."""

    __tablename__ = "login_failures"
    __table_args__ = (sa.Index("ix_login_failures_lookup", "username", "client", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(128))
    client: Mapped[str] = mapped_column(sa.String(64))
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- review queue (migration 0003) -------------------------------------------------------


class ReviewSkip(Base):
    """An annotator passed on an item: it is offered to them again only when nothing else is."""

    __tablename__ = "review_skips"
    __table_args__ = (sa.UniqueConstraint("item_id", "annotator_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("review_items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    skipped_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- benchmark campaigns (migration 0004) ------------------------------------------------


class CampaignState(enum.StrEnum):
    created = "created"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class Campaign(Base):
    """A benchmark campaign (the paper's Table I): networks × dataset versions.

    `runs` holds one entry per (network, version): its train and evaluate jobs, model,
    accuracy and training loss (`regrasp.workflows.campaigns.machine`); `test_image_ids` the fixed
    test images every model is scored on and none is trained on; `retry` the streak of
    passes that could not reach the trainer (`regrasp.workflows.retrying`), None otherwise.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(128), default="")
    state: Mapped[CampaignState] = mapped_column(
        _enum(CampaignState, "campaign_state"), default=CampaignState.created
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runs: Mapped[list[Any]] = mapped_column(default=list)
    test_image_ids: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(sa.Text)
    retry: Mapped[dict[str, Any] | None]
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


__all__ += ["Campaign", "CampaignState"]
