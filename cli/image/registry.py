"""Push an OCI layout to a registry with skopeo, keeping its digest.

Why a tool rather than a registry client of our own: pushing is the registry API's stateful
part (a HEAD per blob, an upload session per missing blob against the `Location` the registry
hands back, the digest check on completion, the manifest PUT with its exact media type, the
token-auth dance of ECR and Artifact Registry, retries of half-done uploads). skopeo
(containers/image; Debian's `skopeo` package) is the maintained implementation of exactly that,
it reads the credentials `skopeo login` / `docker login` stored, and it is a second,
independent reader of the layouts cli/image/oci.py writes. `--preserve-digests` forbids it to
rewrite anything (it would otherwise compress uncompressed layers), so the registry holds the
manifest byte for byte and the digest printed is the one built.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from cli.errors import CliError, Exit
from cli.image import tools

_REPOSITORY = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+(:\d+)?|\[[0-9a-fA-F:]+\](:\d+)?)/(?P<path>[a-z0-9]+(?:[._/-][a-z0-9]+)*)$"
)


def check_repository(repository: str, what: str) -> str:
    """`host[:port]/path`, lowercase path (what a registry accepts as a repository name)."""
    if not _REPOSITORY.match(repository):
        raise CliError(
            Exit.USAGE,
            f"{what} {repository!r} is not a repository (host[:port]/path, lowercase, no tag)",
        )
    return repository


def push_argv(
    skopeo: str, layout: Path, layout_tag: str, target: str, digestfile: Path, *, tls_verify: bool
) -> list[str]:
    """skopeo's command line: the layout untouched (`--preserve-digests`), plain HTTP only when
    asked (a local registry), the pushed manifest's digest written to `digestfile`."""
    return [
        skopeo,
        "--insecure-policy",  # our own layout: no signature policy to consult
        "copy",
        "--quiet",
        "--retry-times",
        "3",
        "--preserve-digests",
        f"--dest-tls-verify={'true' if tls_verify else 'false'}",
        "--digestfile",
        str(digestfile),
        f"oci:{layout}:{layout_tag}",
        f"docker://{target}",
    ]


def _explain(target: str) -> Callable[[str], str | None]:
    def explain(output: str) -> str | None:
        low = output.lower()
        if "connection refused" in low or "no such host" in low:
            return f"no registry answers for {target}: {tools.key_line(output)}"
        if "unauthorized" in low or "denied" in low or "authentication required" in low:
            return (
                f"the registry refused the push of {target} (log in first: `skopeo login "
                f"{target.split('/')[0]}`): {tools.key_line(output)}"
            )
        if "tag invalid" in low or "immutable" in low or "already exists" in low:
            return f"the registry refused {target}: its tag is immutable and already taken"
        return None

    return explain


_ABSENT = ("manifest unknown", "not found", "name unknown", "does not exist")


def stored_digest(skopeo: str, target: str, *, tls_verify: bool) -> str | None:
    """The digest of the manifest `target` (`repo:tag`) names in its registry; None when the
    registry has no such tag (or repository) yet."""
    try:
        proc = subprocess.run(
            [skopeo, "inspect", "--raw", "--retry-times", "3",
             f"--tls-verify={'true' if tls_verify else 'false'}", f"docker://{target}"],
            env=tools.tool_env(), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=300, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(Exit.REGISTRY, f"reading {target} failed: {e}") from None
    if proc.returncode == 0:
        return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()
    output = (proc.stderr + proc.stdout).decode(errors="replace")
    if any(word in output.lower() for word in _ABSENT):
        return None
    message = _explain(target)(output) or f"reading {target} failed: {tools.key_line(output)}"
    raise CliError(Exit.REGISTRY, message)


def push(layout: Path, layout_tag: str, target: str, digest: str, *, tls_verify: bool) -> str:
    """Copy the image tagged `layout_tag` in `layout` to `target` (`repo:tag`); returns the
    digest the registry stored, which must be `digest`.

    A tag already holding exactly this image is left alone (no push): registries with immutable
    tags (ECR) refuse even an identical re-push, and the same inputs give the same tag, so a
    re-run of an unchanged build must succeed. A tag holding something else is refused here,
    in one line, before any byte moves."""
    skopeo = tools.require("skopeo", "it pushes the image to the registry")
    stored = stored_digest(skopeo, target, tls_verify=tls_verify)
    if stored == digest:
        return digest
    if stored is not None:
        raise CliError(
            Exit.REGISTRY,
            f"{target} already names another image ({stored}, not the built {digest}); "
            "registry tags here are never moved: choose another --tag",
        )
    with tempfile.TemporaryDirectory(prefix="image-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        tools.run(
            push_argv(skopeo, layout, layout_tag, target, digestfile, tls_verify=tls_verify),
            what=f"pushing {target}",
            code=Exit.REGISTRY,
            explain=_explain(target),
        )
        pushed = digestfile.read_text(encoding="utf-8").strip()
    if pushed != digest:
        raise CliError(Exit.REGISTRY, f"{target} was stored as {pushed}, not as the built {digest}")
    return pushed
