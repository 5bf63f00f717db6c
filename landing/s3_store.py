"""The object store on S3 (or an S3-compatible endpoint).

Body and metadata land in one PUT: the metadata is one user-metadata entry holding
`ObjectMeta.to_json()`, and `ChecksumSHA256` makes S3 verify the bytes it received. The object's
S3 Content-Type is always application/octet-stream (the real one is in the metadata), so no layer
in between ever decodes a raw body as a form (moto's server does for form types). The endpoint
comes from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, which boto3 reads itself; credentials come
from boto3's usual chain and never appear in the URL, a log line or an error.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
)

from landing.store import (
    LANDING_URL_VARIABLE,
    ObjectMeta,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    probe_round_trip,
)

if TYPE_CHECKING:
    from landing.settings import Settings

META_KEY = "biobridge-meta"
MAX_USER_METADATA_BYTES = 2048  # S3's limit: UTF-8 bytes of all user-metadata keys and values
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_READ_CONCURRENCY = 16  # GETs at once in `get_many`: they wait on the network (within the pool)


class S3Store:
    """An ObjectStore over `s3://bucket/prefix`; keys are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}"
        config = Config(
            # total_max_attempts counts the first try; botocore's max_attempts counts retries only.
            retries={"mode": "adaptive", "total_max_attempts": settings.s3_max_attempts},
            connect_timeout=settings.s3_connect_timeout_s,
            read_timeout=settings.s3_read_timeout_s,
            max_pool_connections=settings.s3_max_pool_connections,
        )
        self._s3: Any = boto3.session.Session().client("s3", config=config)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> S3Store:
        """A store for `s3://bucket[/prefix]` (ValueError names BIOBRIDGE_LANDING_URL)."""
        parts = urlsplit(url)
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                f"{LANDING_URL_VARIABLE} must look like s3://bucket/prefix: no credentials, "
                "query or fragment (credentials come from the AWS environment)"
            )
        if not _BUCKET_RE.match(parts.netloc):
            raise ValueError(
                f"{LANDING_URL_VARIABLE} names bucket {parts.netloc!r}: expected 3-63 of "
                "[a-z0-9.-], starting and ending with a letter or digit"
            )
        prefix = parts.path.strip("/")
        return cls(parts.netloc, f"{prefix}/" if prefix else "", settings)

    def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        """One PUT of body and metadata; S3 checks the SHA-256 of what it received."""
        meta_json = meta.to_json().decode("ascii")
        size = len(META_KEY) + len(meta_json)
        if size > MAX_USER_METADATA_BYTES:
            raise StoreError(
                f"metadata of {key!r} is {size} bytes: S3 allows {MAX_USER_METADATA_BYTES}"
            )
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        with _mapped_errors(f"put {key!r} to {self.url}"):
            resp = self._s3.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=body,
                ContentType="application/octet-stream",
                ChecksumSHA256=checksum,
                Metadata={META_KEY: meta_json},
            )
        echoed = resp.get("ChecksumSHA256")
        if echoed is not None and echoed != checksum:
            raise StoreError(f"S3 stored {key!r} with SHA-256 {echoed}, expected {checksum}")

    def get(self, key: str) -> tuple[bytes, ObjectMeta]:
        """The exact stored bytes and their metadata."""
        with _mapped_errors(f"get {key!r} from {self.url}"):
            resp = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body: bytes = resp["Body"].read()
        if "ContentLength" not in resp:  # S3 always sends it: the headers were cut short
            raise StoreUnavailable(f"cannot get {key!r} from {self.url}: incomplete response")
        raw_meta = resp.get("Metadata", {}).get(META_KEY)
        if raw_meta is None:
            raise StoreError(f"object {key!r} in {self.url} has no {META_KEY} metadata")
        # A response cut short can still parse: http.client accepts headers ending at EOF, and
        # without Content-Length the body is whatever arrived. Check the bytes against what the
        # receiver recorded; a mismatch is a broken read, worth retrying.
        try:
            meta = ObjectMeta.from_json(raw_meta)
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreUnavailable(
                f"cannot get {key!r} from {self.url}: its metadata arrived unreadable "
                f"({type(exc).__name__}: {exc}); the response was probably cut short"
            ) from exc
        digest = hashlib.sha256(body).hexdigest()
        if (len(body), digest) != (meta.size, meta.sha256):
            raise StoreUnavailable(
                f"cannot get {key!r} from {self.url}: expected {meta.size} bytes with SHA-256 "
                f"{meta.sha256}, received {len(body)} bytes with SHA-256 {digest}; the "
                "response was probably cut short"
            )
        return body, meta

    def get_many(self, keys: Sequence[str]) -> list[tuple[bytes, ObjectMeta]]:
        """`get` of each key, in order; the GETs overlap (each waits on the network)."""
        workers = min(_READ_CONCURRENCY, len(keys))
        if workers <= 1:
            return [self.get(key) for key in keys]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.get, keys))

    def list_keys(self, prefix: str, *, start_after: str | None = None) -> Iterator[str]:
        """Keys under `prefix` in lexical (UTF-8 byte) order, as S3 lists them."""
        kwargs: dict[str, str] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        with _mapped_errors(f"list {prefix!r} in {self.url}"):
            for page in self._s3.get_paginator("list_objects_v2").paginate(**kwargs):
                if "IsTruncated" not in page:  # S3 always sends it: an empty body parsed as {}
                    raise StoreUnavailable(f"cannot list {prefix!r} in {self.url}: incomplete page")
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :]

    def list_written(
        self, prefix: str, *, start_after: str | None = None
    ) -> Iterator[tuple[str, datetime]]:
        """Keys under `prefix` with their LastModified (the store's clock), as S3 lists them."""
        kwargs: dict[str, str] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        with _mapped_errors(f"list {prefix!r} in {self.url}"):
            for page in self._s3.get_paginator("list_objects_v2").paginate(**kwargs):
                if "IsTruncated" not in page:
                    raise StoreUnavailable(f"cannot list {prefix!r} in {self.url}: incomplete page")
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :], obj["LastModified"].astimezone(UTC)

    def delete(self, key: str) -> None:
        """Remove the object."""
        with _mapped_errors(f"delete {key!r} from {self.url}"):
            self._s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def probe(self) -> None:
        """Write, read back and delete a probe object."""
        probe_round_trip(self)


@contextmanager
def _mapped_errors(action: str) -> Iterator[None]:
    """Translate botocore errors into the store's: transient ones become StoreUnavailable."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _MISSING_CODES:
            raise ObjectNotFound(f"cannot {action}: no such object") from exc
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            raise StoreUnavailable(f"cannot {action}: S3 answered {code} ({status})") from exc
        raise StoreError(f"cannot {action}: S3 answered {code} ({status})") from exc
    except (ConnectionError, HTTPClientError) as exc:
        raise StoreUnavailable(f"cannot {action}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreError(f"cannot {action}: {exc}") from exc
    except ValueError as exc:  # botocore parsing a header cut short (a date, a length)
        raise StoreUnavailable(f"cannot {action}: unreadable response ({exc})") from exc
