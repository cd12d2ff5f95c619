"""The "evaluate" job: a registered model scored on a split (or named images) of a version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regrasp.learn.worker.common import Bind, ClaimedJob, ProgressFn
from regrasp.learn.worker.payloads import model_store_name, validate_payload
from regrasp.platform.errors import InvalidInput
from regrasp.platform.store import keys
from regrasp.platform.store.db.engine import session_scope

if TYPE_CHECKING:
    from regrasp.platform.store.objects import ObjectStore

__all__ = ["run_evaluate"]


def run_evaluate(
    bind: Bind,
    store: ObjectStore,
    job: ClaimedJob,
    progress: ProgressFn | None,
    device: str | None,
) -> dict[str, Any]:
    from regrasp.learn.training.cache import build_cache, db_images
    from regrasp.learn.training.config import DecodeConfig, SplitConfig
    from regrasp.learn.training.data import CachedGraspDataset
    from regrasp.learn.training.evaluate import evaluate
    from regrasp.learn.training.registry import load_registered
    from regrasp.learn.training.splits import make_split

    report = progress or (lambda _f, _m: None)
    with session_scope(bind) as session:
        checked = validate_payload(session, "evaluate", job.payload)
        dataset_id, version = checked["dataset_id"], checked["version"]
        sources = db_images(session, store, dataset_id=dataset_id, version=version)
    model, meta = load_registered(store, model_store_name(checked["model_id"]), device=device)
    report(0.05, {"phase": "cache", "images": len(sources)})
    index = build_cache(
        store,
        sources,
        dataset=keys.dataset_store_name(checked["dataset"], dataset_id),
        version=version,
        channels=meta["channels"],
        size=int(meta["input_size"]),
    )
    ids = list(index.image_ids)
    if checked.get("image_ids") is not None:
        wanted = set(checked["image_ids"])
        absent = sorted(wanted - set(ids))
        if absent:
            raise InvalidInput(
                f"images {absent[:5]} are not in version {version} of the dataset "
                f"({len(absent)} of {len(wanted)} named)"
            )
        chosen = [i for i in ids if i in wanted]
    elif checked["split"] == "all":
        chosen = ids
    else:
        recipe = SplitConfig(**dict(meta.get("config", {}).get("split", {})))
        objects = {s.image_id: s.object_id for s in sources}
        split = make_split(
            ids,
            [objects[i] for i in ids],
            kind=recipe.kind,
            seed=recipe.seed,
            val_fraction=recipe.val_fraction,
            test_fraction=recipe.test_fraction,
        )
        chosen = list(getattr(split, checked["split"]))
    if not chosen:
        raise InvalidInput(f"the {checked['split']} split of version {version} has no image")
    data = CachedGraspDataset(
        store, index, chosen, augment=None, width_scale=float(meta["width_scale"])
    )
    report(0.5, {"phase": "evaluate", "images": len(data)})
    scored = evaluate(
        model, data, decode_config=DecodeConfig(**meta.get("decode", {})), device=device
    )
    return {
        "model_id": checked["model_id"],
        "dataset_id": dataset_id,
        "dataset_version": version,
        "split": "images" if checked.get("image_ids") is not None else checked["split"],
        "images": len(data),
        "successes": int(scored.success.sum()),
        "accuracy": scored.accuracy,
    }
