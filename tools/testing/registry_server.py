"""The distribution registry (the node's own, built by tools.build) on a free loopback port, for
tests that push and pull images without a node: the image tools' e2e tests and the fast tier's
`ray-platform image build` tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tools.build import ensure


class RegistryDidNotStart(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def registry_server(root: Path, *, read_only: bool = False) -> Iterator[str]:
    """A registry storing under `root`, as `127.0.0.1:<port>` (plain HTTP); `read_only`: it
    serves what `root` holds and refuses every push (the registry's maintenance mode)."""
    binary = str(ensure(["registry"])["registry"])
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = root / "config.yml"
    readonly = "  maintenance: {readonly: {enabled: true}}\n" if read_only else ""
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n{readonly}"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    with open(root / "log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    tail = (root / "log").read_text(errors="replace")[-500:]
                    raise RegistryDidNotStart(f"registry did not start: {tail}") from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def served_digest(registry: str, repository: str, tag: str) -> str:
    """The digest the registry serves for `repository:tag` (its Docker-Content-Digest)."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Docker-Content-Digest"])
