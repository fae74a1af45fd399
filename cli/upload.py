"""Put a planned zip into the stack's bucket, exactly once however many submits race for it."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm  # type: ignore[import-untyped]

from cli import buckets, package
from cli.console import say
from cli.errors import CliError, Exit

CONDITIONAL_ATTEMPTS = 4
"""Uploads tried while concurrent writes keep beating this one to the key (S3's 409, or a 412
that leaves an object of another size): then exit 5, with nothing of ours half-stored."""


def upload(bucket: buckets.Bucket, pkg: package.Package, key: str, uri: str) -> None:
    """Upload unless the object is there, exactly once however many submits race for it.

    Its name is the content's hash and uploads are atomic (see buckets.Bucket), so an object of
    the zip's size under that name is this zip; one of another size is not (put there by hand,
    or by a client that wrote objects piecemeal) and is replaced rather than trusted. The
    upload is conditional on the key still being as looked at here, so when several submits
    of one directory all find it absent, the store lets one of them write it and refuses the
    others (412), which then find the zip there."""
    raced = False
    for attempt in range(CONDITIONAL_ATTEMPTS):
        found = bucket.stat(key)
        if found is not None and found.size == pkg.size:
            # After a refusal the writer was another submit (or, rarely, a retried request of
            # our own whose first try had landed): either way the zip is stored once.
            why = "uploaded by a concurrent submit" if raced else "same content"
            say(f"{uri} is already in the bucket ({why}): not uploading")
            return
        if found is not None:
            say(
                f"{uri} is in the bucket with {found.size} bytes, not this zip's {pkg.size}: "
                "replacing it"
            )
        if attempt == 0:
            say(f"uploading {pkg.files} files ({package.human_size(pkg.size)}) to {uri}")
        with tqdm(
            total=pkg.size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=None,
        ) as bar:
            written = bucket.upload(pkg.path, key, bar.update, replacing=found)
        if written is buckets.Written.STORED:
            # The one line that says this submit is the one that stored it (racers that lost
            # said "uploading" too, then "already in the bucket").
            say(f"stored {uri}")
            return
        raced = True
        if written is buckets.Written.CONFLICT:
            # Another conditional write is in flight; it will land or fail shortly.
            time.sleep(0.2 * 2**attempt)
    raise CliError(
        Exit.BUCKET,
        f"{uri} kept changing under concurrent writes ({CONDITIONAL_ATTEMPTS} tries): "
        "run the same command again",
    )
