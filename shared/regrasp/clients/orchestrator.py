"""Typed client of the orchestrator API, and the pydantic schemas it shares with the service.

The service (`services/orchestrator`) declares its requests and responses with these
models, so the client and the server cannot drift apart. Schema families follow the house
pattern: `XCreate` is what a caller sends, `XPublic` what it gets back.

    with OrchestratorClient("http://127.0.0.1:8000") as api:
        api.login("lead", "a-long-password")
        source = JacquardSource(path="/data/jacquard.zip")
        job = api.start_import(ImportRequest(name="jacquard", source=source))
        api.wait_import(job.id)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from regrasp.auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from regrasp.campaigns.config import CampaignConfig
from regrasp.clients.base import ServiceClient, raise_for_status
from regrasp.errors import InvalidInput, NotFound
from regrasp.rounds.config import RoundConfig

__all__ = [
    "AdjudicationCasePublic",
    "AnnotatorStatsPublic",
    "ApplyPreviewPublic",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "ModelPromote",
    "ModelPublic",
    "AuditCreate",
    "AuditPublic",
    "CampaignCellPublic",
    "CampaignCreate",
    "CampaignPublic",
    "CampaignReportPublic",
    "CampaignRunPublic",
    "CampaignSamplePublic",
    "CornellSource",
    "DatasetPublic",
    "DecisionCreate",
    "DiffPublic",
    "ErrorPublic",
    "ExportPublic",
    "ExportRequest",
    "GraspChangePublic",
    "ImageChangePublic",
    "ImportRequest",
    "ImportSource",
    "ImportStatus",
    "JacquardSource",
    "LabelPublic",
    "LeaseRequest",
    "OrchestratorClient",
    "PasswordSet",
    "PredictedGraspPublic",
    "RefinementPublic",
    "ReviewItemPublic",
    "ReviewPublic",
    "ReviewStatsPublic",
    "RollbackRequest",
    "RoundRefinementPublic",
    "SplitRequest",
    "StopAdvicePublic",
    "SyntheticSource",
    "Token",
    "TrainingProgress",
    "UndoPublic",
    "UserCreate",
    "UserPublic",
    "VersionPublic",
]

Role = Literal["admin", "annotator"]
ImageKind = Literal["rgb", "depth", "stereo_depth", "mask"]
ImportStateName = Literal[
    "queued", "generating", "validating", "uploading", "writing", "succeeded", "failed"
]
_FINAL_STATES = ("succeeded", "failed")


def _utc(value: datetime) -> datetime:
    """Times are UTC; SQLite hands them back naive, so say so on the way out."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: A timezone-aware UTC time (naive values are taken as UTC).
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorPublic(BaseModel):
    """Every error response (`regrasp.http_errors`): one sentence meant for a person."""

    error: str
    detail: str


# --- users and credentials ------------------------------------------------------------------


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: UtcDatetime = Field(description="When the token stops being accepted (UTC).")
    expires_in: int = Field(description="Seconds from issue to expiry.")


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    role: Role = "annotator"


class PasswordSet(BaseModel):
    """A new password for a user (an admin's reset)."""

    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class UserPublic(_Public):
    id: int
    username: str
    role: Role
    active: bool
    created_at: UtcDatetime


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="What the key is for.")
    owner_id: int | None = Field(None, description="User the key acts as (default: the caller).")
    scope: Literal["robot", "service", "admin"] = Field(
        "robot",
        description=(
            "robot: only the inference service's POST /predict and GET /model; service: "
            "machine-to-machine like the services' key; admin: acts as its admin owner."
        ),
    )


class ApiKeyPublic(_Public):
    """A key as listed: never the key itself, only the prefix that identifies it."""

    id: int
    name: str
    prefix: str
    owner_id: int
    scope: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked: bool


class ApiKeyCreated(ApiKeyPublic):
    """The answer to creating a key: the only time `key` is ever shown."""

    key: str


# --- the model registry ---------------------------------------------------------------------


class ModelPublic(_Public):
    """A registered model, with what an admin weighs before promoting it."""

    id: int
    name: str = Field(description="Object-store name; what the inference service loads.")
    architecture: str
    status: str
    dataset_id: int | None
    dataset_version: int | None
    accuracy: float | None = Field(description="Evaluation accuracy (test, else validation).")
    accuracy_metric: str | None = Field(description="Which metric `accuracy` is.")
    metrics: dict[str, Any]
    aliases: list[str] = Field(description="Aliases pointing at it, e.g. ['production'].")
    created_at: UtcDatetime


class ModelPromote(BaseModel):
    alias: str = Field(
        "production", min_length=1, max_length=64, description="Alias to point at the model."
    )


# --- datasets and imports -------------------------------------------------------------------


class DatasetPublic(_Public):
    id: int
    name: str
    description: str
    latest_version: int | None
    created_at: UtcDatetime
    image_count: int = Field(0, description="Images of the latest version.")
    grasp_count: int = Field(0, description="Grasps of the latest version.")


class JacquardSource(BaseModel):
    """A Jacquard tree: a server `path` (folder or .zip) or an object-store `prefix`."""

    kind: Literal["jacquard"] = "jacquard"
    path: str | None = None
    prefix: str | None = None


class CornellSource(BaseModel):
    """A Cornell folder on the server (object ids from its z.txt when present)."""

    kind: Literal["cornell"] = "cornell"
    path: str


class SyntheticSource(BaseModel):
    """A generated Jacquard-like dataset; the parameters regenerate it (and its truth)."""

    kind: Literal["synthetic"] = "synthetic"
    images: int = Field(gt=0, le=200_000)
    objects: int | None = Field(None, gt=0)
    size: int = Field(1024, ge=64, le=4096, description="Image side in pixels.")
    seed: int = 0
    corrupt_fraction: float = Field(0.0, ge=0.0, le=1.0)


ImportSource = Annotated[
    JacquardSource | CornellSource | SyntheticSource, Field(discriminator="kind")
]


class SplitRequest(BaseModel):
    kind: Literal["object", "image"] = "object"
    seed: int = 0
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)


class ImportRequest(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
    description: str = ""
    source: ImportSource
    split: SplitRequest = Field(default_factory=SplitRequest)


class ImportStatus(_Public):
    id: int
    dataset_name: str
    dataset_id: int | None
    state: ImportStateName
    done: int = Field(description="Images finished in the current phase.")
    total: int = Field(description="Images in the current phase.")
    uploaded: int = Field(description="Files copied to the object store.")
    skipped: int = Field(description="Files already stored with the same SHA-256.")
    error: str | None = Field(description="Why it failed; names the bad file.")
    created_at: UtcDatetime
    heartbeat_at: UtcDatetime
    finished_at: UtcDatetime | None

    @property
    def finished(self) -> bool:
        return self.state in _FINAL_STATES


# --- versions -------------------------------------------------------------------------------


class VersionPublic(_Public):
    number: int
    parent_number: int | None
    round_id: int | None
    message: str
    image_count: int
    grasp_count: int
    created_at: UtcDatetime


class GraspChangePublic(BaseModel):
    grasp_id: int
    image_id: int
    image: str
    grasp: tuple[float, float, float, float, float] = Field(
        description="(x, y, theta, opening, jaw): pixels and degrees."
    )
    source: str
    round_id: int | None
    prediction_id: int | None
    reviewer_id: int | None
    note: str | None
    removed_reason: str | None
    removed_by_id: int | None


class ImageChangePublic(BaseModel):
    image_id: int
    image: str
    object: str


class DiffPublic(BaseModel):
    dataset_id: int
    from_version: int
    to_version: int
    added_grasp_count: int
    removed_grasp_count: int
    added_grasps: list[GraspChangePublic]
    removed_grasps: list[GraspChangePublic]
    added_images: list[ImageChangePublic]
    removed_images: list[ImageChangePublic]
    truncated: bool = Field(description="True when the grasp lists were cut at `limit`.")


class RollbackRequest(BaseModel):
    to: int = Field(ge=0, description="The version whose labels and images to restore.")
    message: str | None = None


class ExportRequest(BaseModel):
    prefix: str | None = Field(
        None, description="Optional sub-folder under exports/<dataset>/v<version>/."
    )


class ExportPublic(BaseModel):
    dataset_id: int
    version: int
    prefix: str = Field(description="Object-store prefix holding the export.")
    files: int
    bytes: int
    manifest_key: str


# --- review queue ---------------------------------------------------------------------------

DecisionName = Literal["true_negative", "missing_label", "annotation_error", "fix"]
ReviewItemStateName = Literal["pending", "leased", "decided", "adjudication"]
#: The decision kinds in the order the review UI lists them.
DECISIONS: tuple[str, ...] = ("true_negative", "missing_label", "annotation_error", "fix")
#: A grasp `(x, y, theta, opening, jaw)` in pixels and degrees.
GraspTuple = tuple[float, float, float, float, float]


class PredictedGraspPublic(BaseModel):
    """One of the model's top-k grasps; `index` (0-based, best first) is what a decision
    names in `accepted_predictions` (the UI shows it as index + 1)."""

    index: int
    grasp: GraspTuple
    quality: float | None = None


class LabelPublic(BaseModel):
    """A ground-truth rectangle of the image at the round's base version."""

    grasp_id: int
    grasp: GraspTuple


class ReviewPublic(_Public):
    id: int
    item_id: int
    annotator_id: int
    decision: DecisionName
    accepted_prediction_indices: list[int]
    removed_grasp_ids: list[int]
    seconds_taken: float | None
    created_at: UtcDatetime
    item_version: int = Field(description="The item version the decision was made on.")
    superseded: bool = Field(description="Replaced by a later change, an undo or a resolution.")
    adjudication: bool = Field(description="An admin's resolution of a disagreement.")


class LabelQualityPublic(BaseModel):
    """Why an item was queued: the grasp label-quality score (`regrasp.label_quality`)."""

    quality: float = Field(description="In [0, 1], 1 clean; the item's priority is 1 − quality.")
    kind: Literal["missing", "badly_placed", "wrong_action"] | None = Field(
        description="The kind of issue that set the score (None: nothing suspicious)."
    )
    unmatched: list[int] = Field(
        description="Confident predictions (indices) that match no label: candidate new labels."
    )
    suspect_grasp_ids: list[int] = Field(
        description="Labels (grasp ids) the score finds badly placed or of the wrong action."
    )


class ReviewItemPublic(BaseModel):
    """An image to review: what the model predicted, what the labels say, the lease.

    `version` must come back with the decision (`DecisionCreate.item_version`); a decision
    on an older version is refused with 409.
    """

    id: int
    round_id: int
    image_id: int
    image: str
    object: str
    width: int
    height: int
    state: ReviewItemStateName
    version: int
    required_reviews: int
    priority: float
    best_iou: float | None = Field(description="Top-1 prediction's best gated IoU.")
    lease_owner_id: int | None
    lease_expires_at: UtcDatetime | None
    predictions: list[PredictedGraspPublic]
    labels: list[LabelPublic]
    quality: LabelQualityPublic | None = Field(
        None, description="What triggered the item (None for rounds scored before 0006)."
    )
    my_review: ReviewPublic | None = Field(
        None, description="The caller's standing decision on the item, if any."
    )


class LeaseRequest(BaseModel):
    lease_seconds: float | None = Field(
        None, gt=0, le=3600, description="Lease length (default: the server's)."
    )


class DecisionCreate(BaseModel):
    """A decision on an item, made on the item version the annotator saw."""

    item_version: int = Field(ge=1)
    decision: DecisionName
    accepted_predictions: list[int] = Field(
        default_factory=list, description="Prediction indices that become labels."
    )
    removed_grasp_ids: list[int] = Field(
        default_factory=list, description="Label grasp ids that are wrong (fix)."
    )
    seconds_taken: float = Field(ge=0, description="Time from showing the item to deciding.")


class UndoPublic(BaseModel):
    """The item whose decision was withdrawn, leased back to the caller."""

    item: ReviewItemPublic
    undone_review_id: int | None


class AdjudicationCasePublic(BaseModel):
    item: ReviewItemPublic
    reviews: list[ReviewPublic]
    usernames: dict[int, str] = Field(default_factory=dict, description="Reviewer names by id.")


class AnnotatorStatsPublic(_Public):
    annotator_id: int
    username: str
    decided: int
    resolved: int
    changed: int
    leased: int
    in_adjudication: int
    decision_mix: dict[str, int]
    mean_seconds: float | None
    median_seconds: float | None
    double_reviewed: int
    agreement: float | None
    kappa: float | None


class ReviewStatsPublic(_Public):
    """A round's queue counts, decision mix, seconds per decision and agreement."""

    round_id: int
    items: int
    pending: int
    leased: int
    decided: int
    adjudication: int
    double_review_items: int
    reviews: int
    decision_mix: dict[str, int]
    mean_seconds: float | None
    median_seconds: float | None
    double_reviewed: int
    agreement: float | None
    kappa: float | None = Field(description="Cohen's kappa of double reviews (decision kind).")
    annotators: list[AnnotatorStatsPublic]


# --- the client -----------------------------------------------------------------------------


class OrchestratorClient(ServiceClient):
    """Calls of the orchestrator API; errors arrive as `regrasp.errors` (see `ServiceClient`)."""

    # auth and users
    def login(self, username: str, password: str) -> Token:
        """Exchange a password for a token and use it for the following calls."""
        token = self.post_model(
            "/auth/login", Token, data={"username": username, "password": password}
        )
        self.use_credential(token.access_token)
        return token

    def me(self) -> UserPublic:
        return self.get_model("/users/me", UserPublic)

    def create_user(self, user: UserCreate) -> UserPublic:
        return self.post_model("/users", UserPublic, json=user.model_dump())

    def list_users(self) -> list[UserPublic]:
        return [UserPublic.model_validate(u) for u in self.request("GET", "/users").json()]

    def find_user(self, username: str) -> UserPublic:
        """A user by name (admins); NotFound otherwise."""
        for user in self.list_users():
            if user.username == username:
                return user
        raise NotFound(f"no user named {username!r}")

    def set_password(self, user_id: int, password: str) -> UserPublic:
        """Reset a user's password (admins)."""
        body = PasswordSet(password=password).model_dump()
        response = self.request("PUT", f"/users/{user_id}/password", json=body)
        return UserPublic.model_validate(response.json())

    def create_api_key(self, key: ApiKeyCreate) -> ApiKeyCreated:
        return self.post_model("/api-keys", ApiKeyCreated, json=key.model_dump())

    def list_api_keys(self) -> list[ApiKeyPublic]:
        return [ApiKeyPublic.model_validate(k) for k in self.request("GET", "/api-keys").json()]

    def revoke_api_key(self, key_id: int) -> None:
        self.request("DELETE", f"/api-keys/{key_id}")

    # the model registry

    def list_models(self) -> list[ModelPublic]:
        return [ModelPublic.model_validate(m) for m in self.request("GET", "/models").json()]

    def registered_model(self, model_id: int) -> ModelPublic:
        return self.get_model(f"/models/{int(model_id)}", ModelPublic)

    def aliased_model(self, alias: str = "production") -> ModelPublic:
        """The model `alias` points at; NotFound when no model was promoted to it."""
        return self.get_model(f"/model-aliases/{alias}", ModelPublic)

    def promote_model(self, model_id: int, alias: str = "production") -> ModelPublic:
        """Point `alias` at the model (admins); replicas serve it within seconds."""
        body = ModelPromote(alias=alias).model_dump()
        return self.post_model(f"/models/{int(model_id)}/promote", ModelPublic, json=body)

    # datasets and imports
    def list_datasets(self) -> list[DatasetPublic]:
        return [DatasetPublic.model_validate(d) for d in self.request("GET", "/datasets").json()]

    def get_dataset(self, dataset_id: int) -> DatasetPublic:
        return self.get_model(f"/datasets/{dataset_id}", DatasetPublic)

    def find_dataset(self, name_or_id: str | int) -> DatasetPublic:
        """A dataset by id (an int or digits) or by name; NotFound otherwise."""
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            return self.get_dataset(int(name_or_id))
        for dataset in self.list_datasets():
            if dataset.name == name_or_id:
                return dataset
        raise NotFound(f"no dataset named {name_or_id!r}")

    def start_import(self, request: ImportRequest) -> ImportStatus:
        return self.post_model(
            "/datasets/import", ImportStatus, json=request.model_dump(mode="json")
        )

    def import_status(self, import_id: int) -> ImportStatus:
        return self.get_model(f"/datasets/imports/{import_id}", ImportStatus)

    def wait_import(
        self,
        import_id: int,
        *,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
        on_progress: Callable[[ImportStatus], None] | None = None,
    ) -> ImportStatus:
        """Poll until the import finishes (succeeded or failed) and return its last status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.import_status(import_id)
            if on_progress is not None:
                on_progress(status)
            if status.finished:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"import {import_id} still {status.state} after {timeout} s")
            time.sleep(poll_seconds)

    # versions
    def list_versions(self, dataset_id: int) -> list[VersionPublic]:
        rows = self.request("GET", f"/datasets/{dataset_id}/versions").json()
        return [VersionPublic.model_validate(v) for v in rows]

    def diff(
        self, dataset_id: int, from_version: int, to_version: int, *, limit: int = 10_000
    ) -> DiffPublic:
        params = {"from": from_version, "to": to_version, "limit": limit}
        return self.get_model(f"/datasets/{dataset_id}/diff", DiffPublic, params=params)

    def rollback(self, dataset_id: int, to: int, *, message: str | None = None) -> VersionPublic:
        body = RollbackRequest(to=to, message=message).model_dump()
        return self.post_model(f"/datasets/{dataset_id}/rollback", VersionPublic, json=body)

    def export_to_store(
        self, dataset_id: int, version: int, *, prefix: str | None = None
    ) -> ExportPublic:
        return self.post_model(
            f"/datasets/{dataset_id}/versions/{version}/export",
            ExportPublic,
            json=ExportRequest(prefix=prefix).model_dump(),
        )

    def iter_export_zip(self, dataset_id: int, version: int) -> Iterator[bytes]:
        """The zip export's bytes as they arrive."""
        path = f"/datasets/{dataset_id}/versions/{version}/export.zip"
        with self._http.stream("GET", path) as response:
            if not response.is_success:
                response.read()
                raise_for_status(response)
            yield from response.iter_bytes()

    def download_export(self, dataset_id: int, version: int, path: str | Path) -> int:
        """Save the zip export to `path` (written beside, then renamed); returns its size.

        InvalidInput naming `path` when it cannot be written (a missing folder, a folder
        in its place, no permission); nothing is left behind then.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        size = 0
        try:
            with tmp.open("wb") as out:
                for chunk in self.iter_export_zip(dataset_id, version):
                    out.write(chunk)
                    size += len(chunk)
            tmp.replace(path)
        except OSError as exc:
            raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def image_bytes(self, image_id: int, kind: ImageKind = "rgb") -> bytes:
        return self.request("GET", f"/images/{image_id}/{kind}").content

    # review queue
    def claim_next(
        self, round_id: int, *, lease_seconds: float | None = None
    ) -> ReviewItemPublic | None:
        """Lease the next item of the round (or get back the one held); None when none is left.

        Retried on transient failures: a claim sent again returns the lease the first
        one took, so a lost answer never leaves an item leased to nobody's screen.
        """
        body = LeaseRequest(lease_seconds=lease_seconds).model_dump()
        response = self.request("POST", f"/rounds/{round_id}/review/claim", retry=True, json=body)
        if response.status_code == 204:
            return None
        return ReviewItemPublic.model_validate(response.json())

    def upcoming(self, round_id: int, *, limit: int = 2) -> list[ReviewItemPublic]:
        """The items a claim would most likely give next (not leased): for prefetching."""
        rows = self.request(
            "GET", f"/rounds/{round_id}/review/upcoming", params={"limit": limit}
        ).json()
        return [ReviewItemPublic.model_validate(r) for r in rows]

    def review_item(self, item_id: int) -> ReviewItemPublic:
        return self.get_model(f"/review/items/{item_id}", ReviewItemPublic)

    def heartbeat(self, item_id: int, *, lease_seconds: float | None = None) -> ReviewItemPublic:
        body = LeaseRequest(lease_seconds=lease_seconds).model_dump()
        return self.post_model(
            f"/review/items/{item_id}/heartbeat", ReviewItemPublic, json=body, retry=True
        )

    def release(self, item_id: int) -> ReviewItemPublic:
        return self.post_model(f"/review/items/{item_id}/release", ReviewItemPublic)

    def skip(self, item_id: int) -> ReviewItemPublic:
        return self.post_model(f"/review/items/{item_id}/skip", ReviewItemPublic)

    def decide(self, item_id: int, decision: DecisionCreate) -> ReviewPublic:
        """Record a decision; Conflict (409) when the item changed since `item_version`."""
        return self.post_model(
            f"/review/items/{item_id}/decision", ReviewPublic, json=decision.model_dump()
        )

    def change_decision(self, item_id: int, decision: DecisionCreate) -> ReviewPublic:
        """Replace the caller's own standing decision on the item (until the round is applied)."""
        response = self.request(
            "PUT", f"/review/items/{item_id}/decision", json=decision.model_dump(), retry=False
        )
        return ReviewPublic.model_validate(response.json())

    def undo(self, round_id: int) -> UndoPublic:
        """Withdraw the caller's last decision in the round; the item is leased back to them."""
        return self.post_model(f"/rounds/{round_id}/review/undo", UndoPublic)

    def item_reviews(self, item_id: int) -> list[ReviewPublic]:
        rows = self.request("GET", f"/review/items/{item_id}/reviews").json()
        return [ReviewPublic.model_validate(r) for r in rows]

    def adjudication_queue(self, round_id: int) -> list[AdjudicationCasePublic]:
        rows = self.request("GET", f"/rounds/{round_id}/review/adjudication").json()
        return [AdjudicationCasePublic.model_validate(r) for r in rows]

    def resolve(self, item_id: int, decision: DecisionCreate) -> ReviewPublic:
        """An admin's final decision on an item whose two reviews disagree."""
        return self.post_model(
            f"/review/items/{item_id}/resolve", ReviewPublic, json=decision.model_dump()
        )

    def review_stats(self, round_id: int) -> ReviewStatsPublic:
        return self.get_model(f"/rounds/{round_id}/review/stats", ReviewStatsPublic)

    # --- refinement rounds (schemas below: RoundCreate, RoundPublic, BulkDecisions, ...) ----

    def create_round(self, request: RoundCreate) -> RoundPublic:
        """Start a round on a dataset version (admins); it runs in the background."""
        return self.post_model("/rounds", RoundPublic, json=request.model_dump(mode="json"))

    def list_rounds(self, *, dataset_id: int | None = None) -> list[RoundPublic]:
        params = {"dataset_id": dataset_id} if dataset_id is not None else None
        rows = self.request("GET", "/rounds", params=params).json()
        return [RoundPublic.model_validate(r) for r in rows]

    def get_round(self, round_id: int) -> RoundPublic:
        return self.get_model(f"/rounds/{round_id}", RoundPublic)

    def cancel_round(self, round_id: int) -> RoundPublic:
        return self.post_model(f"/rounds/{round_id}/cancel", RoundPublic, retry=True)

    def resume_round(self, round_id: int) -> RoundPublic:
        return self.post_model(f"/rounds/{round_id}/resume", RoundPublic, retry=True)

    def apply_round(self, round_id: int, *, force: bool = False) -> RoundPublic:
        """Ask for the round's decisions to be applied (it moves to `applying`)."""
        body = RoundApply(force=force).model_dump()
        return self.post_model(f"/rounds/{round_id}/apply", RoundPublic, retry=True, json=body)

    def apply_preview(self, round_id: int) -> ApplyPreviewPublic:
        """What applying the round now would change (admins); nothing is written."""
        return self.get_model(f"/rounds/{round_id}/apply-preview", ApplyPreviewPublic)

    def round_decisions(self, round_id: int, decisions: BulkDecisions) -> BulkDecisionsResult:
        """Record decisions on the round's items as the caller (admins), all or none."""
        return self.post_model(
            f"/rounds/{round_id}/decisions",
            BulkDecisionsResult,
            json=decisions.model_dump(mode="json"),
        )

    def wait_round(
        self,
        round_id: int,
        *,
        until: tuple[str, ...] = ("reviewing", "done", "failed", "cancelled"),
        timeout: float = 3600.0,
        poll: float = 1.0,
        on_progress: Callable[[RoundPublic], None] | None = None,
    ) -> RoundPublic:
        """Poll until the round is in one of `until`; StorageError after `timeout` s."""
        from regrasp.errors import StorageError

        deadline = time.monotonic() + timeout
        while True:
            rnd = self.get_round(round_id)
            if on_progress is not None:
                on_progress(rnd)
            if rnd.state in until:
                return rnd
            if time.monotonic() >= deadline:
                raise StorageError(f"round {round_id} still {rnd.state} after {timeout:.0f} s")
            time.sleep(poll)

    # campaigns and refinement statistics

    def create_campaign(self, request: CampaignCreate) -> CampaignPublic:
        """Start a campaign (admins); its trainer jobs run in the background."""
        return self.post_model("/campaigns", CampaignPublic, json=request.model_dump(mode="json"))

    def list_campaigns(self, *, dataset_id: int | None = None) -> list[CampaignPublic]:
        params = {"dataset_id": dataset_id} if dataset_id is not None else None
        rows = self.request("GET", "/campaigns", params=params).json()
        return [CampaignPublic.model_validate(r) for r in rows]

    def get_campaign(self, campaign_id: int) -> CampaignPublic:
        return self.get_model(f"/campaigns/{campaign_id}", CampaignPublic)

    def cancel_campaign(self, campaign_id: int) -> CampaignPublic:
        return self.post_model(f"/campaigns/{campaign_id}/cancel", CampaignPublic, retry=True)

    def resume_campaign(self, campaign_id: int) -> CampaignPublic:
        return self.post_model(f"/campaigns/{campaign_id}/resume", CampaignPublic, retry=True)

    def wait_campaign(
        self,
        campaign_id: int,
        *,
        timeout: float = 24 * 3600.0,
        poll: float = 2.0,
        on_progress: Callable[[CampaignPublic], None] | None = None,
    ) -> CampaignPublic:
        """Poll until the campaign is done, failed or cancelled; StorageError after `timeout`."""
        from regrasp.errors import StorageError

        deadline = time.monotonic() + timeout
        while True:
            campaign = self.get_campaign(campaign_id)
            if on_progress is not None:
                on_progress(campaign)
            if campaign.state in ("done", "failed") or (
                campaign.state == "cancelled" and campaign.finished_at is not None
            ):
                return campaign
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"campaign {campaign_id} still {campaign.state} after {timeout} s"
                )
            time.sleep(poll)

    def campaign_report(self, campaign_id: int) -> CampaignReportPublic:
        """The table and the numbers behind every figure (JSON)."""
        return self.get_model(f"/campaigns/{campaign_id}/report", CampaignReportPublic)

    def campaign_table_csv(self, campaign_id: int) -> str:
        return self.request("GET", f"/campaigns/{campaign_id}/table.csv").text

    def campaign_figure(self, campaign_id: int, name: CampaignFigure, *, fmt: str = "png") -> bytes:
        """One figure as PNG bytes (`fmt="png"`) or its numbers as CSV bytes (`fmt="csv"`)."""
        if fmt not in ("png", "csv"):
            raise InvalidInput(f"fmt must be png or csv, got {fmt!r}")
        return self.request("GET", f"/campaigns/{campaign_id}/figures/{name}.{fmt}").content

    def download_campaign_report(self, campaign_id: int, path: str | Path) -> int:
        """Save report.zip (table, report.json, every figure as PNG + CSV); returns its size."""
        data = self.request("GET", f"/campaigns/{campaign_id}/report.zip").content
        Path(path).write_bytes(data)
        return len(data)

    def refinement(self, dataset_id: int) -> RefinementPublic:
        """Per-round label noise, yield and the stopping suggestion of a dataset."""
        return self.get_model(f"/datasets/{dataset_id}/refinement", RefinementPublic)

    def add_audit(self, round_id: int, audit: AuditCreate) -> AuditPublic:
        """Queue a random sample of a reviewing round's unflagged images for review (admins)."""
        return self.post_model(f"/rounds/{round_id}/audit", AuditPublic, json=audit.model_dump())


# --- refinement rounds ----------------------------------------------------------------------


RoundStateName = Literal[
    "created",
    "training",
    "predicting",
    "reviewing",
    "applying",
    "done",
    "failed",
    "cancelled",
]


class RoundCreate(RoundConfig):
    """A round on a dataset version: `RoundConfig`'s options plus which version."""

    dataset_id: int = Field(ge=1)
    version: int | None = Field(None, ge=0, description="Base version (None: the latest).")


class StateTiming(BaseModel):
    started: UtcDatetime | None = None
    finished: UtcDatetime | None = None
    seconds: float | None = Field(None, description="finished − started (so far if running).")


class RoundRetry(BaseModel):
    """A step failing transiently and being retried with backoff (`regrasp.rounds.retrying`):
    a round's step, or a campaign's passes over its runs (`state`: the campaign's)."""

    state: str = Field(description="The state whose step fails.")
    attempts: int = Field(description="Failed tries so far in this streak.")
    since: UtcDatetime = Field(description="First failure of the streak.")
    last_at: UtcDatetime | None = Field(None, description="Latest failure.")
    next_at: UtcDatetime | None = Field(None, description="Next try (None once given up).")
    error: str = Field("", description="The latest failure, naming what was unreachable.")
    delays: list[float] = Field(default_factory=list, description="Waits so far, seconds.")
    gave_up: bool = Field(False, description="The budget ran out: the round (campaign) failed.")


class RoundCounts(BaseModel):
    images_predicted: int = 0
    flagged: int = 0
    items: int = 0
    decided: int = 0


class TrainingProgress(BaseModel):
    """A round's training job as the trainer's worker last reported it."""

    job_id: int
    state: str = Field(description="queued, running, succeeded, failed or cancelled.")
    phase: str | None = Field(None, description="cache, train or evaluate.")
    epoch: int | None = Field(None, description="The epoch being trained (1-based).")
    epochs: int | None = None
    loss: float | None = Field(None, description="Training loss so far in this epoch.")
    progress: float = Field(0.0, description="Fraction of the whole job, 0..1.")
    eta_seconds: float | None = Field(None, description="From the progress rate; None early.")


class ApplyPreviewPublic(BaseModel):
    """What applying the round now would change (undecided items as true negatives)."""

    round_id: int
    base_version: int
    items: int
    decided: int
    undecided: int
    decisions: dict[str, int]
    images_removed: int
    grasps_added: int
    grasps_removed: int = Field(description="Rectangles removed by fixes.")
    grasps_removed_with_images: int = Field(description="Labels of the removed images.")
    images_before: int
    grasps_before: int
    images_after: int
    grasps_after: int


class RoundPublic(BaseModel):
    """A round: its state, options, models, timings per state and counts."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    dataset_id: int
    base_version: int
    result_version: int | None
    state: RoundStateName
    config: dict[str, Any] = Field(description="The round's RoundConfig.")
    model_id: int | None
    model_ids: list[int] = Field(default_factory=list, description="One per fold (or one).")
    train_job_id: int | None
    train_job_ids: list[int] = Field(default_factory=list)
    error: str | None
    failed_in: str | None = None
    retry: RoundRetry | None = Field(None, description="A transient failure being retried.")
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None
    timings: dict[str, StateTiming] = Field(default_factory=dict)
    counts: RoundCounts = Field(default_factory=RoundCounts)
    training: list[TrainingProgress] = Field(
        default_factory=list, description="Its training jobs (one per fold), latest report."
    )


class RoundApply(BaseModel):
    force: bool = Field(
        False, description="Apply although items are undecided: they count as true negatives."
    )


class DecisionEntry(BaseModel):
    """One image's decision (the image must have a review item in the round)."""

    image_id: int = Field(ge=1)
    decision: DecisionName
    accepted_predictions: list[int] = Field(
        default_factory=list, description="Indices into the image's ranked predictions."
    )
    removed_grasp_ids: list[int] = Field(
        default_factory=list, description="Label rectangles to remove (fix)."
    )
    seconds_taken: float = Field(0.0, ge=0.0)


class BulkDecisions(BaseModel):
    decisions: list[DecisionEntry] = Field(min_length=1, max_length=100_000)


class BulkDecisionsResult(BaseModel):
    recorded: int
    counts: RoundCounts


# --- benchmark campaigns and refinement statistics --------------------------------------------


CampaignStateName = Literal["created", "running", "done", "failed", "cancelled"]
CampaignFigure = Literal["flagged", "review_outcome", "accuracy", "train_loss", "overlays"]


class CampaignCreate(CampaignConfig):
    """A campaign on a dataset: `CampaignConfig`'s options plus which dataset."""

    dataset_id: int = Field(ge=1)


class CampaignRunPublic(BaseModel):
    """One (network, version) run: its jobs, model and results so far."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    network: str
    version: int
    state: Literal["pending", "training", "evaluating", "done", "failed", "cancelled"]
    train_job_id: int | None = None
    eval_job_id: int | None = None
    model_id: int | None = None
    accuracy: float | None = None
    successes: int | None = None
    images: int | None = None
    train_loss: float | None = None
    epochs: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


class CampaignPublic(BaseModel):
    """A campaign: its options, state and runs."""

    id: int
    dataset_id: int
    name: str
    state: CampaignStateName
    config: dict[str, Any]
    test_version: int
    test_images: int
    runs: list[CampaignRunPublic]
    error: str | None
    retry: RoundRetry | None = Field(
        None, description="Passes that could not reach the trainer, retried with backoff."
    )
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None


class RoundRefinementPublic(BaseModel):
    """One round's refinement numbers (`regrasp.refinement_stats.RoundRefinement`)."""

    round_id: int
    base_version: int
    result_version: int | None
    state: str
    images: int
    flagged: int
    audited: int
    decided_flagged: int
    decided_audit: int
    decisions: dict[str, int]
    audit_decisions: dict[str, int]
    true_negative_share: float | None
    false_negative_share: float | None
    label_errors_found: int
    flagged_error_rate: float | None
    flagged_error_interval: tuple[float, float] | None
    audit_error_rate: float | None
    audit_error_interval: tuple[float, float] | None
    estimated_noise: float | None = Field(description="Share of images with label errors.")
    estimated_noise_low: float | None
    estimated_noise_high: float | None = Field(description="None without an audit.")
    noise_basis: Literal["flagged_only", "flagged_and_audit"] | None
    review_seconds: float
    yield_per_hour: float | None = Field(description="Label errors found per review hour.")


class StopAdvicePublic(BaseModel):
    stop: bool
    reason: str


class RefinementPublic(BaseModel):
    """A dataset's rounds with their refinement numbers, and whether to stop."""

    dataset_id: int
    rounds: list[RoundRefinementPublic]
    stop: StopAdvicePublic


class CampaignCellPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    network: str
    version: int
    state: str
    accuracy: float | None
    successes: int | None
    images: int | None
    train_loss: float | None
    model_id: int | None
    best: bool = Field(description="The best accuracy of its version.")
    history: list[dict[str, Any]] = Field(default_factory=list)


class CampaignSamplePublic(BaseModel):
    image_id: int
    name: str
    labels_before: int
    labels_after: int
    image_removed: bool


class CampaignReportPublic(BaseModel):
    """The accuracy table and the numbers behind every figure of a campaign."""

    campaign_id: int
    dataset_id: int
    name: str
    state: CampaignStateName
    networks: list[str]
    versions: list[int]
    test_version: int
    test_images: int
    cells: list[CampaignCellPublic]
    rounds: list[RoundRefinementPublic]
    stop: StopAdvicePublic
    samples: list[CampaignSamplePublic]
    figures: list[CampaignFigure]


class AuditCreate(BaseModel):
    """Review a random sample of a reviewing round's unflagged images (one of the two)."""

    count: int | None = Field(None, ge=0, le=1_000_000)
    fraction: float | None = Field(None, ge=0.0, le=1.0)
    seed: int = 0


class AuditPublic(BaseModel):
    round_id: int
    added: int
    audited: int = Field(description="Audit items of the round in all.")
