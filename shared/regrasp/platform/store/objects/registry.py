"""Open an object store from its URL: one factory per URI scheme (`file`, `s3`).

The pattern is mlflow's artifact-repository registry: the scheme picks the backend class,
an unknown scheme is refused with the list of known ones, and each backend's module is
imported only when its scheme is used (the `file://` default never loads the S3 client).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from regrasp.platform.errors import ConfigError, InvalidInput
from regrasp.platform.store.objects.base import ObjectStore, validate_prefix

if TYPE_CHECKING:
    from regrasp.platform.settings import Settings


def open_store(
    url: str,
    *,
    s3_endpoint: str | None = None,
    s3_access_key: str | None = None,
    s3_secret_key: str | None = None,
    s3_secure: bool = False,
    s3_region: str = "us-east-1",
    create_bucket: bool = False,
) -> ObjectStore:
    """The store behind `url`; raises ConfigError for a malformed URL or unknown scheme.

    - `file:///abs/path`, `file://./relative/path` (relative to the working directory):
      a folder, created on first write. The path is taken literally (no %-decoding), as
      `regrasp.platform.settings` writes it.
    - `s3://bucket` or `s3://bucket/prefix`: an S3 bucket (MinIO) at `s3_endpoint`
      (`host:port`), all keys under `prefix/`. `create_bucket=True` creates the bucket now
      if it is missing (this contacts the server); otherwise no request is made here.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"object store URL {url!r} has no scheme; use one of {_known()}")
    scheme, rest = url.split("://", 1)
    factory = _FACTORIES.get(scheme.lower())
    if factory is None:
        raise ConfigError(f"unknown object store scheme {scheme!r} in {url!r}; known: {_known()}")
    return factory(
        url,
        rest,
        s3_endpoint=s3_endpoint,
        s3_access_key=s3_access_key,
        s3_secret_key=s3_secret_key,
        s3_secure=s3_secure,
        s3_region=s3_region,
        create_bucket=create_bucket,
    )


def store_from_settings(
    settings: Settings, *, url: str | None = None, create_bucket: bool = False
) -> ObjectStore:
    """The store configured by `REGRASP_OBJECT_STORE_URL` and the `REGRASP_S3_*` settings;
    with `url`, that store instead, reached with the same S3 settings (backups, mirrors)."""
    return open_store(
        settings.object_store_url if url is None else url,
        s3_endpoint=settings.s3_endpoint,
        s3_access_key=settings.s3_access_key.get_secret_value(),
        s3_secret_key=settings.s3_secret_key.get_secret_value(),
        s3_secure=settings.s3_secure,
        s3_region=settings.s3_region,
        create_bucket=create_bucket,
    )


def known_schemes() -> tuple[str, ...]:
    """URI schemes `open_store` accepts."""
    return tuple(sorted(_FACTORIES))


def _known() -> str:
    return ", ".join(f"{scheme}://" for scheme in known_schemes())


def _open_file(url: str, rest: str, **_options: Any) -> ObjectStore:
    from regrasp.platform.store.objects.file import FileObjectStore

    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith(("/", "./", "../")) and rest not in (".", ".."):
        raise ConfigError(
            f"file store URL {url!r} must be file:///absolute/path or file://./relative/path"
        )
    return FileObjectStore(rest, url=url)


def _open_s3(
    url: str,
    rest: str,
    *,
    s3_endpoint: str | None,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    s3_secure: bool,
    s3_region: str,
    create_bucket: bool,
) -> ObjectStore:
    from regrasp.platform.store.objects.s3 import S3ObjectStore

    if any(ch in rest for ch in "?#"):
        raise ConfigError(f"S3 store URL {url!r} must not carry a query or fragment")
    bucket, _, prefix = rest.partition("/")
    if not _valid_bucket(bucket):
        raise ConfigError(
            f"S3 store URL {url!r}: bucket {bucket!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, '.' or '-')"
        )
    try:
        prefix = validate_prefix(prefix.strip("/"))
    except InvalidInput as exc:
        raise ConfigError(f"S3 store URL {url!r}: bad key prefix: {exc}") from exc
    if not s3_endpoint:
        raise ConfigError(f"S3 store {url!r} needs an endpoint (REGRASP_S3_ENDPOINT, host:port)")
    try:
        store = S3ObjectStore(
            bucket,
            endpoint=s3_endpoint,
            access_key=s3_access_key,
            secret_key=s3_secret_key,
            secure=s3_secure,
            region=s3_region,
            prefix=prefix,
        )
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from exc
    if create_bucket:
        store.ensure_bucket()
    return store


def _valid_bucket(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    return (
        3 <= len(name) <= 63
        and set(name) <= allowed
        and name[0].isalnum()
        and name[-1].isalnum()
        and ".." not in name
    )


#: Scheme -> factory(url, rest_after_scheme, **options). Add a backend here.
_FACTORIES: dict[str, Callable[..., ObjectStore]] = {
    "file": _open_file,
    "s3": _open_s3,
}
