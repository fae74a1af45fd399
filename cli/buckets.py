"""One interface over `s3://` and `gs://`: the URI's scheme picks boto3 or google-cloud-storage.

Endpoints come from the clients' own environment variables, so the same code reaches AWS, GCS,
a MinIO (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, read by boto3 itself) or a GCS emulator
(`STORAGE_EMULATOR_HOST`, read by google-cloud-storage itself).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from cli.errors import CliError, Exit

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
        raise CliError(
            Exit.OUTPUTS, f"bucket URI {uri!r} is not s3://bucket/prefix or gs://bucket/prefix"
        )
    return BucketUri(parsed.scheme, parsed.netloc, parsed.path.strip("/"))


PART = 8 * 1024 * 1024
"""S3 multipart part size, and the size above which an upload goes multipart (boto3's defaults,
which the CLI used before it drove the upload itself)."""


@dataclass(frozen=True)
class Stored:
    """An object under a key: its size, and the version a write replacing it must name (S3's
    ETag, GCS's generation) so that it replaces that object and nothing written since."""

    size: int
    version: str


class Written(enum.Enum):
    """How a conditional upload ended."""

    STORED = "stored"
    TAKEN = "taken"
    """412: the key was no longer as expected (another submit stored its zip first)."""
    CONFLICT = "conflict"
    """S3's 409 ConditionalRequestConflict: another conditional write to the key was in flight."""


class Bucket(Protocol):
    """What `submit` does with a bucket: look at an object, upload one exactly once.

    An upload is atomic: readers see the whole object under `key` or none. Both stores publish
    an object only when its last byte has arrived and been checked (S3: a single PUT, or a
    multipart upload's CompleteMultipartUpload; GCS: the final request of a resumable upload),
    and the clients send a checksum the store verifies (boto3's CRC, google-cloud-storage's
    crc32c), so a torn or corrupted transfer is refused, never stored under the content-hash
    name. That is why no temporary key and copy are needed.

    An upload is also conditional, checked by the store when it publishes the object: it writes
    only if the key is still absent (`replacing` None; S3 `If-None-Match: *`, GCS
    `ifGenerationMatch=0`) or still holds `replacing` (S3 `If-Match: <ETag>`, GCS
    `ifGenerationMatch=<generation>`). Checking first and uploading after cannot give that:
    concurrent submits of one directory all see the key absent and all upload.
    """

    def stat(self, key: str) -> Stored | None:
        """The object under `key`; None when it is absent (a missing bucket is an error)."""
        ...

    def upload(
        self, path: Path, key: str, progress: Progress, replacing: Stored | None = None
    ) -> Written: ...


def _unreachable(where: BucketUri, e: BaseException) -> CliError:
    detail = " ".join(str(e).split()) or type(e).__name__
    return CliError(
        Exit.BUCKET, f"bucket {where.scheme}://{where.bucket} is unreachable or refused: {detail}"
    )


class _S3:
    def __init__(
        self,
        where: BucketUri,
        endpoint: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        import boto3  # type: ignore[import-untyped,unused-ignore]
        from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

        self._where = where
        # Few, short retries: an unreachable endpoint should fail in seconds, not minutes.
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2})
        # A fresh session: boto3's default one caches the credentials it resolved first.
        # The stack's own S3-compatible endpoint, unless the environment names one.
        named = any(os.environ.get(v) for v in ENDPOINT_VARIABLES)
        keys = {}
        if credentials is not None:
            keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
        self._client: Any = boto3.session.Session().client(
            "s3", config=config, endpoint_url=None if named else endpoint, **keys
        )

    def stat(self, key: str) -> Stored | None:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped,unused-ignore]

        try:
            head = self._client.head_object(Bucket=self._where.bucket, Key=key)
            return Stored(int(head["ContentLength"]), str(head["ETag"]))
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

    def upload(
        self, path: Path, key: str, progress: Progress, replacing: Stored | None = None
    ) -> Written:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped,unused-ignore]

        # boto3's managed transfer (upload_file) refuses IfNoneMatch/IfMatch in ExtraArgs, so
        # the upload is driven here: one PUT, or a multipart upload whose completion carries
        # the condition (S3 evaluates it when it would publish the object).
        condition = {"IfMatch": replacing.version} if replacing else {"IfNoneMatch": "*"}
        size = path.stat().st_size
        try:
            if size <= PART:
                with open(path, "rb") as f:
                    self._client.put_object(Bucket=self._where.bucket, Key=key, Body=f, **condition)
                progress(size)
            else:
                self._multipart(path, key, progress, condition)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code == "PreconditionFailed":
                return Written.TAKEN
            if code == "ConditionalRequestConflict":
                return Written.CONFLICT
            raise _unreachable(self._where, e) from None
        except BotoCoreError as e:
            raise _unreachable(self._where, e) from None
        return Written.STORED

    def _multipart(
        self, path: Path, key: str, progress: Progress, condition: dict[str, str]
    ) -> None:
        target = {"Bucket": self._where.bucket, "Key": key}
        # CRC32 per part, declared up front, as boto3's transfer does: the store checks each
        # part, and the completion lists the parts' checksums.
        upload_id = self._client.create_multipart_upload(**target, ChecksumAlgorithm="CRC32")[
            "UploadId"
        ]
        try:
            parts = []
            with open(path, "rb") as f:
                for number in itertools.count(1):
                    chunk = f.read(PART)
                    if not chunk:
                        break
                    sent = self._client.upload_part(
                        **target,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumAlgorithm="CRC32",
                    )
                    part = {"PartNumber": number, "ETag": sent["ETag"]}
                    if "ChecksumCRC32" in sent:
                        part["ChecksumCRC32"] = sent["ChecksumCRC32"]
                    parts.append(part)
                    progress(len(chunk))
            self._client.complete_multipart_upload(
                **target, UploadId=upload_id, MultipartUpload={"Parts": parts}, **condition
            )
        except BaseException:
            # Failed, refused (412/409) or interrupted (Ctrl-C): the parts are no object, but
            # the store keeps (and bills) them until the upload is aborted. Best effort: the
            # store may be what failed, and the original error is the one to report; the
            # stack's lifecycle rule aborts what is left after a few days.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(**target, UploadId=upload_id)
            raise


class _GCS:
    def __init__(self, where: BucketUri) -> None:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage  # type: ignore[import-untyped,unused-ignore]

        self._where = where
        try:
            self._bucket: Any = storage.Client().bucket(where.bucket)
        except DefaultCredentialsError as e:
            raise CliError(
                Exit.BUCKET,
                f"no Google credentials for gs://{where.bucket}: run "
                f"`gcloud auth application-default login` ({' '.join(str(e).split())[:120]})",
            ) from None

    def _errors(self) -> tuple[type[BaseException], ...]:
        import requests
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        return (GoogleAPIError, GoogleAuthError, requests.exceptions.RequestException)

    def stat(self, key: str) -> Stored | None:
        from google.api_core.retry import Retry

        # Short retry deadline: an unreachable endpoint should fail in seconds.
        retry = Retry(initial=0.5, maximum=2.0, timeout=6)
        try:
            blob = self._bucket.get_blob(key, timeout=10, retry=retry)
            if blob is not None:
                return Stored(int(blob.size), str(blob.generation))
            if not self._bucket.exists(timeout=10, retry=retry):
                raise CliError(Exit.BUCKET, f"bucket gs://{self._where.bucket} does not exist")
            return None
        except self._errors() as e:
            raise _unreachable(self._where, e) from None

    def upload(
        self, path: Path, key: str, progress: Progress, replacing: Stored | None = None
    ) -> Written:
        from google.api_core.exceptions import PreconditionFailed

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

        # Generation 0 means "no live object": GCS publishes the upload only if the key is
        # still absent, or still holds the generation being replaced.
        generation = int(replacing.version) if replacing else 0
        try:
            with open(path, "rb") as f:
                blob.upload_from_file(
                    _Counting(f),
                    size=size,
                    content_type="application/zip",
                    if_generation_match=generation,
                    # No retries, as before the condition was added (the client retries only
                    # conditional uploads by default): an unreachable store fails in seconds,
                    # and a retried final request cannot meet its own write's 412.
                    retry=None,
                )
        except PreconditionFailed:
            return Written.TAKEN
        except self._errors() as e:
            raise _unreachable(self._where, e) from None
        return Written.STORED


def open_bucket(
    where: BucketUri, endpoint: str | None = None, credentials: tuple[str, str] | None = None
) -> Bucket:
    """The client for `where`'s scheme; `endpoint`: an S3-compatible store's URL (the stack's
    `objectStoreEndpoint`), used when AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL are unset;
    `credentials`: (access key id, secret key) for it, else boto3's own chain."""
    return _S3(where, endpoint, credentials) if where.scheme == "s3" else _GCS(where)


ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def store_credentials_wanted(environ: Mapping[str, str]) -> bool:
    """Whether a local stack's object-store Secret may supply the upload's credentials: the
    environment names neither another endpoint nor keys nor a profile (`AWS_PROFILE`: the
    user's choice). Shared credential files are not asked (they are for AWS, not for the
    stack's MinIO), nor is any metadata service (boto3's chain would try one)."""
    return not any(environ.get(v) for v in (*ENDPOINT_VARIABLES, KEY_VARIABLES[0], "AWS_PROFILE"))
