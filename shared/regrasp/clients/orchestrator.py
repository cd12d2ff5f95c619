"""Typed client of the orchestrator API; its schemas are the contract in `regrasp.api`.

    with OrchestratorClient("http://127.0.0.1:8000") as api:
        api.login("lead", "a-long-password")
        source = JacquardSource(path="/data/jacquard.zip")
        job = api.start_import(ImportRequest(name="jacquard", source=source))
        api.wait_import(job.id)

(`JacquardSource`, `ImportRequest`: `regrasp.api.datasets`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from regrasp.api.accounts import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    PasswordSet,
    Token,
    UserCreate,
    UserPublic,
)
from regrasp.api.campaigns import (
    CampaignCreate,
    CampaignFigure,
    CampaignPublic,
    CampaignReportPublic,
)
from regrasp.api.datasets import DatasetPublic, ImageKind, ImportRequest, ImportStatus
from regrasp.api.models import ModelPromote, ModelPublic
from regrasp.api.refinement import AuditCreate, AuditPublic, RefinementPublic
from regrasp.api.review import (
    AdjudicationCasePublic,
    DecisionCreate,
    LeaseRequest,
    ReviewItemPublic,
    ReviewPublic,
    ReviewStatsPublic,
    UndoPublic,
)
from regrasp.api.rounds import (
    ApplyPreviewPublic,
    BulkDecisions,
    BulkDecisionsResult,
    RoundApply,
    RoundCreate,
    RoundPublic,
)
from regrasp.api.versions import (
    DiffPublic,
    ExportPublic,
    ExportRequest,
    RollbackRequest,
    VersionPublic,
)
from regrasp.clients.base import ServiceClient, raise_for_status
from regrasp.platform.errors import InvalidInput, NotFound

__all__ = ["OrchestratorClient"]


class OrchestratorClient(ServiceClient):
    """Calls of the orchestrator API; errors arrive as `regrasp.platform.errors` (see
    `ServiceClient`)."""

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

    # --- refinement rounds ----------------------------------------------------------------

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
        from regrasp.platform.errors import StorageError

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
        from regrasp.platform.errors import StorageError

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
