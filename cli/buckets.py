"""One interface over `s3://` and `gs://`: the URI's scheme picks boto3 or google-cloud-storage.

Endpoints come from the clients' own environment variables, so the same code reaches AWS, GCS,
a MinIO (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, read by boto3 itself) or a GCS emulator
(`STORAGE_EMULATOR_HOST`, read by google-cloud-storage itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from cli.errors import Exit, SubmitError

Progress = Callable[[int], None]
"""Called with the number of bytes sent since the last call."""


@dataclass(frozen=True)
class BucketUri:
    """`scheme://bucket/prefix`, split."""

    scheme: str
    bucket: str
    prefix: str

    def key(self, *parts: str) -> str:
        """Object key under the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def uri(self, key: str) -> str:
        """Full URI of an object, as Ray takes it in `working_dir`."""
        return f"{self.scheme}://{self.bucket}/{key}"


def parse(uri: str) -> BucketUri:
    """Split a bucket URI; anything but `s3://bucket[/prefix]` or `gs://…` is an error."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "gs") or not parsed.netloc:
        raise SubmitError(
            Exit.OUTPUTS, f"bucket URI {uri!r} is not s3://bucket/prefix or gs://bucket/prefix"
        )
    return BucketUri(parsed.scheme, parsed.netloc, parsed.path.strip("/"))


class Bucket(Protocol):
    """What `submit` does with a bucket: check for an object, upload one.

    An upload is atomic: readers see the whole object under `key` or none. Both stores publish
    an object only when its last byte has arrived and been checked (S3: a single PUT, or a
    multipart upload's CompleteMultipartUpload; GCS: the final request of a resumable upload),
    and the clients send a checksum the store verifies (boto3's CRC, google-cloud-storage's
    crc32c), so a torn or corrupted transfer is refused, never stored under the content-hash
    name. That is why no temporary key and copy are needed.
    """

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when it is absent (a missing bucket is an error)."""
        ...

    def upload(self, path: Path, key: str, progress: Progress) -> None: ...


def _unreachable(where: BucketUri, e: BaseException) -> SubmitError:
    detail = " ".join(str(e).split()) or type(e).__name__
    return SubmitError(
        Exit.BUCKET, f"bucket {where.scheme}://{where.bucket} is unreachable or refused: {detail}"
    )


class _S3:
    def __init__(self, where: BucketUri, endpoint: str | None = None) -> None:
        import boto3  # type: ignore[import-untyped,unused-ignore]
        from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

        self._where = where
        # Few, short retries: an unreachable endpoint should fail in seconds, not minutes.
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2})
        # A fresh session: boto3's default one caches the credentials it resolved first.
        # The stack's own S3-compatible endpoint, unless the environment names one.
        named = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self._client: Any = boto3.session.Session().client(
            "s3", config=config, endpoint_url=None if named else endpoint
        )

    def size(self, key: str) -> int | None:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped,unused-ignore]

        try:
            head = self._client.head_object(Bucket=self._where.bucket, Key=key)
            return int(head["ContentLength"])
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                # The object is absent, but is the bucket there? A missing bucket is the
                # actionable error, not a failed upload later.
                try:
                    self._client.head_bucket(Bucket=self._where.bucket)
                except (ClientError, BotoCoreError) as e2:
                    raise _unreachable(self._where, e2) from None
                return None
            raise _unreachable(self._where, e) from None
        except BotoCoreError as e:
            raise _unreachable(self._where, e) from None

    def upload(self, path: Path, key: str, progress: Progress) -> None:
        from boto3.exceptions import S3UploadFailedError  # type: ignore[import-untyped,unused-ignore]
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped,unused-ignore]

        # Over the threshold boto3 goes multipart; a part that fails, or an interruption, makes
        # it abort the upload (s3transfer's failure cleanup), and parts of an upload that is
        # never completed are not an object: nothing shows under `key` either way.
        try:
            self._client.upload_file(str(path), self._where.bucket, key, Callback=progress)
        except (ClientError, BotoCoreError, S3UploadFailedError) as e:
            raise _unreachable(self._where, e) from None


class _GCS:
    def __init__(self, where: BucketUri) -> None:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage  # type: ignore[import-untyped,unused-ignore]

        self._where = where
        try:
            self._bucket: Any = storage.Client().bucket(where.bucket)
        except DefaultCredentialsError as e:
            raise SubmitError(
                Exit.BUCKET,
                f"no Google credentials for gs://{where.bucket}: run "
                f"`gcloud auth application-default login` ({' '.join(str(e).split())[:120]})",
            ) from None

    def _errors(self) -> tuple[type[BaseException], ...]:
        import requests
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        return (GoogleAPIError, GoogleAuthError, requests.exceptions.RequestException)

    def size(self, key: str) -> int | None:
        from google.api_core.retry import Retry

        # Short retry deadline: an unreachable endpoint should fail in seconds.
        retry = Retry(initial=0.5, maximum=2.0, timeout=6)
        try:
            blob = self._bucket.get_blob(key, timeout=10, retry=retry)
            if blob is not None:
                return int(blob.size)
            if not self._bucket.exists(timeout=10, retry=retry):
                raise SubmitError(Exit.BUCKET, f"bucket gs://{self._where.bucket} does not exist")
            return None
        except self._errors() as e:
            raise _unreachable(self._where, e) from None

    def upload(self, path: Path, key: str, progress: Progress) -> None:
        blob = self._bucket.blob(key)
        # Resumable uploads in chunks, so the progress bar moves for big zips. The object
        # appears only when the last chunk is accepted; an interrupted session leaves none.
        blob.chunk_size = 8 * 1024 * 1024
        size = path.stat().st_size

        class _Counting:
            def __init__(self, f: Any) -> None:
                self._f = f

            def read(self, n: int = -1) -> bytes:
                data: bytes = self._f.read(n)
                progress(len(data))
                return data

            def __getattr__(self, name: str) -> Any:
                return getattr(self._f, name)

        try:
            with open(path, "rb") as f:
                blob.upload_from_file(_Counting(f), size=size, content_type="application/zip")
        except self._errors() as e:
            raise _unreachable(self._where, e) from None


def open_bucket(where: BucketUri, endpoint: str | None = None) -> Bucket:
    """The client for `where`'s scheme; `endpoint`: an S3-compatible store's URL (the stack's
    `objectStoreEndpoint`), used when AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL are unset."""
    return _S3(where, endpoint) if where.scheme == "s3" else _GCS(where)
