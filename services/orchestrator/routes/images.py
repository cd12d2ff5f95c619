"""Image files for signed-in users, streamed through the orchestrator.

The object store is never exposed: no store URL or credential leaves the service, and the
bytes come back as they are stored (PNG, float32 TIFF).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from regrasp.platform.errors import NotFound
from regrasp.platform.store.db.tables import Image
from regrasp.platform.store.objects.base import CHUNK_SIZE, guess_content_type
from services.orchestrator.deps import CurrentUser, SessionDep, StoreDep
from services.orchestrator.routes import ERRORS

router = APIRouter(prefix="/images", tags=["images"], responses=ERRORS)

_COLUMN = {"rgb": "rgb_key", "depth": "depth_key", "stereo_depth": "stereo_key", "mask": "mask_key"}


@router.get(
    "/{image_id}/{kind}",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/png": {}, "image/tiff": {}}, "description": "The file."}},
)
def image_file(
    image_id: int,
    kind: Literal["rgb", "depth", "stereo_depth", "mask"],
    _user: CurrentUser,
    session: SessionDep,
    store: StoreDep,
) -> StreamingResponse:
    """One stored file of an image: rgb, depth (perfect), stereo_depth or mask."""
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"image {image_id} does not exist")
    key = getattr(image, _COLUMN[kind])
    if key is None:
        raise NotFound(f"image {image_id} has no {kind} file")
    opened = store.open(key)
    stream = opened.__enter__()  # opened now, so a missing object is a 404, not a cut stream
    return StreamingResponse(
        _chunks(opened, stream),
        media_type=guess_content_type(key),
        headers={"Cache-Control": "private, max-age=3600"},
    )


def _chunks(opened, stream: BinaryIO) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    try:
        while chunk := stream.read(CHUNK_SIZE):
            yield chunk
    finally:
        opened.__exit__(None, None, None)
