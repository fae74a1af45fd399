"""The main job keeps the state in step with the cluster (tools/stack.py), decided without an
engine: when to refresh, what is recorded, how the cluster is identified."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from tools import stack

RESOURCES = [
    {"type": "pulumi:pulumi:Stack", "urn": "s"},
    {"type": "pulumi:providers:kubernetes", "urn": "p"},
    {"type": "kubernetes:core/v1:Namespace", "urn": "n"},
    {"type": "kubernetes:ray.io/v1:RayCluster", "urn": "r"},
]


def test_new_cluster_forces_a_refresh() -> None:
    """The bug this guards: up, down, up reported `unchanged` against an empty new cluster."""
    assert stack.needs_refresh("uid-old", "uid-new", deployed=15)


def test_same_cluster_trusts_the_state() -> None:
    assert not stack.needs_refresh("uid-1", "uid-1", deployed=15)


@pytest.mark.parametrize(("recorded", "current"), [(None, "uid-1"), ("uid-1", None), (None, None)])
def test_unknown_identity_refreshes_to_be_safe(recorded: str | None, current: str | None) -> None:
    assert stack.needs_refresh(recorded, current, deployed=3)


def test_empty_state_never_needs_a_refresh() -> None:
    assert not stack.needs_refresh(None, "uid-1", deployed=0)
    assert not stack.needs_refresh("uid-0", "uid-1", deployed=0)


def test_only_real_objects_count_as_deployed() -> None:
    assert stack.deployed_resources({"resources": RESOURCES}) == 2
    assert stack.deployed_resources({"resources": RESOURCES[:2]}) == 0
    assert stack.deployed_resources({}) == 0
    assert stack.deployed_resources(None) == 0


def test_identity_is_recorded_per_stack_and_forgotten_on_destroy(tmp_path: Path) -> None:
    assert stack.recorded_identity(tmp_path, "local") is None
    stack.record_identity(tmp_path, "local", "uid-1")
    stack.record_identity(tmp_path, "other", "uid-2")
    assert stack.recorded_identity(tmp_path, "local") == "uid-1"
    assert stack.recorded_identity(tmp_path, "other") == "uid-2"
    stack.record_identity(tmp_path, "local", None)
    assert stack.recorded_identity(tmp_path, "local") is None
    assert stack.recorded_identity(tmp_path, "other") == "uid-2"


def test_a_damaged_record_means_unknown(tmp_path: Path) -> None:
    (tmp_path / stack.IDENTITY_FILE).write_text("{damaged")
    assert stack.recorded_identity(tmp_path, "local") is None
    stack.record_identity(tmp_path, "local", "uid-1")  # and is replaced, not fatal
    assert stack.recorded_identity(tmp_path, "local") == "uid-1"


class _KubeSystem(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/api/v1/namespaces/kube-system":
            body = json.dumps({"metadata": {"name": "kube-system", "uid": "uid-live"}}).encode()
            self.send_response(200)
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _KubeSystem)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_cluster_identity_is_the_kube_system_uid(tmp_path: Path, api: str) -> None:
    assert stack.cluster_identity(_kubeconfig(tmp_path / "kc", api)) == "uid-live"


def test_unreachable_or_unusable_cluster_has_no_identity(tmp_path: Path) -> None:
    assert stack.cluster_identity(None) is None
    assert stack.cluster_identity(_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")) is None
    (tmp_path / "bad").write_text("not: [a kubeconfig")
    assert stack.cluster_identity(tmp_path / "bad") is None
