"""The object store: images, training caches, model weights and exports under string keys.

Open one with `open_store(url)` or `store_from_settings(settings)`; the URL scheme picks the
backend (`file://` folder, `s3://` bucket). Keys come from `regrasp.platform.store.keys` only.
"""

from regrasp.platform.store.objects.base import (
    ObjectInfo,
    ObjectStore,
    validate_key,
    validate_prefix,
)
from regrasp.platform.store.objects.registry import known_schemes, open_store, store_from_settings

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "known_schemes",
    "open_store",
    "store_from_settings",
    "validate_key",
    "validate_prefix",
]
