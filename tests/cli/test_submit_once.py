"""Issue 15: concurrent `ray-platform submit`s of one directory store its zip exactly once.

Against the session's real MinIO and fake-gcs-server. The uploads race through the CLI's own
upload path (`upload.upload`, one client per thread), held at a barrier after their look at the
key so that all of them find it absent, as truly concurrent submits do. The proof is the store's:
a MinIO bucket with versioning on keeps every write, so one version under the key means one
write. (Checking first and uploading after, as the CLI did before, stores one version per
racer here.)

Both test stores honour the conditions, checked atomically (read in their sources, at the
versions tools/build.py builds): MinIO evaluates If-None-Match / If-Match on PutObject and on
CompleteMultipartUpload under its per-object namespace lock, so a racer gets 412 and never
S3's 409 ConditionalRequestConflict; fake-gcs-server (v1.56.1) keeps a resumable session's
ifGenerationMatch until the session is finalized and checks it under its backend's lock. The
409 path is therefore exercised only with a scripted bucket, below."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cli import buckets, package, upload
from cli.errors import CliError, Exit
from contract.outputs import WORKING_DIRS
from tests.cli.conftest import Stores
from tools.devcluster import objectstore

VERSIONED = "once"
"""A bucket of these tests' own in the session's MinIO, with versioning on."""
RACERS = 12
ALREADY = "is already in the bucket (uploaded by a concurrent submit): not uploading"


@pytest.fixture
def store_env(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Stores:
    for k, v in stores.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return stores


@pytest.fixture
def s3(store_env: Stores) -> Any:
    """A client for the versioned bucket (created once per session's MinIO)."""
    server = store_env.s3
    client = objectstore.s3_client(server.endpoint, server.credentials, server.region)
    objectstore.create_s3_bucket(server.endpoint, server.credentials, VERSIONED, server.region)
    client.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    return client


def _zip(tmp_path: Path, payload: int) -> package.Package:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "main.py").write_text("print('once')\n")
    # Random bytes do not compress: `payload` sets the zip's size (and the multipart path).
    (root / "weights.bin").write_bytes(os.urandom(payload))
    return package.build(root, [], package.DEFAULT_MAX_SIZE, tmp_path)


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """What each thread's `upload.upload` said, by thread name."""
    lines: dict[str, list[str]] = {}
    lock = threading.Lock()

    def say(msg: str) -> None:
        with lock:
            lines.setdefault(threading.current_thread().name, []).append(msg)

    monkeypatch.setattr(upload, "say", say)
    yield lines


def _race(
    monkeypatch: pytest.MonkeyPatch, where: buckets.BucketUri, pkg: package.Package, key: str
) -> None:
    """RACERS concurrent `upload.upload`s of `pkg`, each of which finds `key` absent."""
    client_class = buckets._S3 if where.scheme == "s3" else buckets._GCS
    looked: Any = client_class.stat
    barrier = threading.Barrier(RACERS, timeout=60)
    first = threading.local()

    def stat(self: object, k: str) -> buckets.Stored | None:
        found: buckets.Stored | None = looked(self, k)
        if not getattr(first, "done", False):
            first.done = True
            barrier.wait()  # everyone has looked before anyone uploads
        return found

    monkeypatch.setattr(client_class, "stat", stat)

    def one(_: int) -> None:
        upload.upload(buckets.open_bucket(where), pkg, key, where.uri(key))

    with ThreadPoolExecutor(RACERS, thread_name_prefix="submit") as pool:
        list(pool.map(one, range(RACERS)))


def _outcomes(said: dict[str, list[str]], uri: str) -> list[str]:
    assert len(said) == RACERS
    for lines in said.values():
        assert lines[0].startswith("uploading 2 files") and lines[0].endswith(uri), lines

    def outcome(last: str) -> str:
        if ALREADY in last:
            return "already"
        return "stored" if last == f"stored {uri}" else f"unexpected: {last}"

    return sorted(outcome(lines[-1]) for lines in said.values())


@pytest.mark.parametrize("payload", [1024, 12 * package.MIB], ids=["put", "multipart"])
def test_concurrent_submits_store_the_zip_once_s3(
    tmp_path: Path,
    s3: Any,
    said: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    payload: int,
) -> None:
    pkg = _zip(tmp_path, payload)
    assert (pkg.size > buckets.PART) == (payload > buckets.PART)
    where = buckets.BucketUri("s3", VERSIONED, f"race-{payload}")
    key = where.key(WORKING_DIRS, pkg.name)
    _race(monkeypatch, where, pkg, key)

    assert _outcomes(said, where.uri(key)) == ["already"] * (RACERS - 1) + ["stored"]
    versions = s3.list_object_versions(Bucket=VERSIONED, Prefix=key).get("Versions", [])
    assert [v["Size"] for v in versions] == [pkg.size]  # one write, of the whole zip
    assert s3.get_object(Bucket=VERSIONED, Key=key)["Body"].read() == pkg.path.read_bytes()
    # The refused multipart uploads were aborted, not left holding their parts.
    assert s3.list_multipart_uploads(Bucket=VERSIONED, Prefix=key).get("Uploads", []) == []


def test_concurrent_submits_store_the_zip_once_gcs(
    tmp_path: Path,
    store_env: Stores,
    said: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pkg = _zip(tmp_path, 1024)
    where = buckets.BucketUri("gs", store_env.gcs.bucket, "race")
    key = where.key(WORKING_DIRS, pkg.name)
    _race(monkeypatch, where, pkg, key)
    # fake-gcs-server keeps no versions: the refusals are the proof (every racer past the
    # look wrote, and reported nothing but its upload, before the condition).
    assert _outcomes(said, where.uri(key)) == ["already"] * (RACERS - 1) + ["stored"]


@pytest.mark.parametrize(
    ("scheme", "payload"),
    [("s3", 1024), ("s3", 12 * package.MIB), ("gs", 1024), ("gs", 12 * package.MIB)],
    ids=["s3-put", "s3-multipart", "gs", "gs-chunked"],
)
def test_the_store_refuses_a_second_write_and_a_stale_replace(
    tmp_path: Path, s3: Any, store_env: Stores, scheme: str, payload: int
) -> None:
    """The condition itself, one request at a time: the store (not a look beforehand) refuses
    writing a key that is taken, and replacing an object that changed since it was looked at."""
    pkg = _zip(tmp_path, payload)
    bucket_name = VERSIONED if scheme == "s3" else store_env.gcs.bucket
    where = buckets.BucketUri(scheme, bucket_name, f"cond-{payload}")
    key = where.key(WORKING_DIRS, pkg.name)
    bucket = buckets.open_bucket(where)
    sent: list[int] = []
    assert bucket.stat(key) is None
    assert bucket.upload(pkg.path, key, sent.append) is buckets.Written.STORED
    assert sum(sent) == pkg.size
    first = bucket.stat(key)
    assert first is not None and first.size == pkg.size
    assert bucket.upload(pkg.path, key, sent.append) is buckets.Written.TAKEN
    # Someone else's object replaces it (other bytes: S3's ETag is the content's digest).
    other = tmp_path / "other.zip"
    other.write_bytes(b"not this zip")
    assert bucket.upload(other, key, sent.append, replacing=first) is buckets.Written.STORED
    changed = bucket.stat(key)
    assert changed is not None and changed.version != first.version
    stale = bucket.upload(pkg.path, key, sent.append, replacing=first)
    assert stale is buckets.Written.TAKEN
    assert bucket.stat(key) == changed
    assert bucket.upload(pkg.path, key, sent.append, replacing=changed) is buckets.Written.STORED
    if scheme == "s3":
        versions = s3.list_object_versions(Bucket=VERSIONED, Prefix=key).get("Versions", [])
        assert len(versions) == 3  # the three writes the store let through
        assert s3.list_multipart_uploads(Bucket=VERSIONED, Prefix=key).get("Uploads", []) == []


class _Scripted:
    """A bucket whose uploads end as scripted, and which holds the zip once one is STORED or a
    script step says another writer stored it."""

    def __init__(self, pkg: package.Package, outcomes: list[tuple[buckets.Written, bool]]) -> None:
        self._pkg, self._outcomes, self.held = pkg, outcomes, False
        self.uploads = 0

    def stat(self, key: str) -> buckets.Stored | None:
        return buckets.Stored(self._pkg.size, "v") if self.held else None

    def upload(
        self,
        path: Path,
        key: str,
        progress: buckets.Progress,
        replacing: buckets.Stored | None = None,
    ) -> buckets.Written:
        self.uploads += 1
        written, stored_by_other = self._outcomes.pop(0)
        self.held = written is buckets.Written.STORED or stored_by_other
        return written


def test_a_conflict_is_looked_at_again_and_retried(
    tmp_path: Path, said: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.upload.time.sleep", lambda _: None)
    pkg = _zip(tmp_path, 16)
    conflict, stored = buckets.Written.CONFLICT, buckets.Written.STORED
    # 409, then the other write landed: the zip is there, no second upload.
    landed = _Scripted(pkg, [(conflict, True)])
    upload.upload(landed, pkg, "k", "s3://b/k")
    assert landed.uploads == 1
    assert said.pop(threading.current_thread().name)[-1] == f"s3://b/k {ALREADY}"
    # 409, then the other write failed: this one goes again, and stores it.
    failed = _Scripted(pkg, [(conflict, False), (stored, False)])
    upload.upload(failed, pkg, "k", "s3://b/k")
    assert failed.uploads == 2
    # Never let through: exit 5, after a bounded number of tries.
    stuck = _Scripted(pkg, [(conflict, False)] * upload.CONDITIONAL_ATTEMPTS)
    with pytest.raises(CliError) as refused:
        upload.upload(stuck, pkg, "k", "s3://b/k")
    assert refused.value.code == Exit.BUCKET
    assert "kept changing under concurrent writes" in refused.value.message
