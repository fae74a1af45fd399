"""A tiny Kubernetes client for the e2e checks and the benchmark (HTTPS + client certificate).

Only what those need: GET, server-side apply and DELETE of a handful of kinds.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import yaml

# apiVersion/kind → (URL prefix, plural, namespaced) for the kinds this project creates.
KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): (
        "/apis/networking.k8s.io/v1",
        "networkpolicies",
        True,
    ),
    ("v1", "PersistentVolume"): ("/api/v1", "persistentvolumes", False),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    ("ray.io/v1", "RayCluster"): ("/apis/ray.io/v1", "rayclusters", True),
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterroles",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        False,
    ),
}


def object_path(obj: dict[str, Any]) -> str:
    """The URL of an object (apiVersion, kind, metadata.name[, namespace])."""
    prefix, plural, namespaced = KINDS[(obj["apiVersion"], obj["kind"])]
    meta = obj["metadata"]
    if namespaced:
        return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
    return f"{prefix}/{plural}/{meta['name']}"


class Kube:
    """Requests against the cluster a kubeconfig points at."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(
            c["context"] for c in config["contexts"] if c["name"] == config["current-context"]
        )
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)

        def material(key: str, data_key: str, name: str, source: dict[str, Any]) -> str | None:
            if data_key in source:
                path = tmp / name
                path.write_bytes(base64.b64decode(source[data_key]))
                return str(path)
            return source.get(key)

        ca = material("certificate-authority", "certificate-authority-data", "ca.crt", cluster)
        self.ssl = ssl.create_default_context(cafile=ca)
        cert = material("client-certificate", "client-certificate-data", "client.crt", user)
        key = material("client-key", "client-key-data", "client.key", user)
        if cert and key:
            self.ssl.load_cert_chain(cert, key)
        self.token = user.get("token")

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        *,
        absent: tuple[int, ...] = (404,),
    ) -> bytes | None:
        """The response body, or None for a status in `absent` (the object is not there)."""
        request = urllib.request.Request(self.server + path, data=body, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=60) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as err:
            if err.code in absent:
                return None
            detail = err.read().decode(errors="replace")[:300]
            raise RuntimeError(f"{method} {path}: HTTP {err.code}: {detail}") from None

    def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> dict[str, Any] | None:
        raw = self._send(method, path, body, content_type)
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def text(self, path: str) -> str | None:
        """A plain-text resource (a container's log), or None if it does not exist (400: the
        container has not started yet)."""
        raw = self._send("GET", path, absent=(400, 404))
        return None if raw is None else raw.decode(errors="replace")

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None if it does not exist."""
        return self._request("GET", path)

    def apply(
        self, obj: dict[str, Any], manager: str = "ray-platform-bench", *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply `obj` (forcing conflicts, as a sole owner would); `dry_run`: the
        API server validates and answers without storing anything."""
        path = f"{object_path(obj)}?fieldManager={manager}&force=true"
        if dry_run:
            path += "&dryRun=All"
        body = json.dumps(obj).encode()
        result = self._request("PATCH", path, body, "application/apply-patch+yaml")
        assert result is not None
        return result

    def delete(self, obj: dict[str, Any], preconditions: Mapping[str, str] | None = None) -> None:
        """Delete `obj` (foreground: dependents first); a missing object is fine. With
        `preconditions` ({"uid": …, "resourceVersion": …}) only the object as it was read: a
        changed one raises (the API server's 409 Conflict)."""
        options: dict[str, Any] = {"propagationPolicy": "Foreground"}
        if preconditions:
            options["preconditions"] = dict(preconditions)
        body = json.dumps(options).encode()
        self._request("DELETE", object_path(obj), body, "application/json")

    def items(self, path: str) -> list[dict[str, Any]]:
        found = self.get(path)
        return list(found["items"]) if found else []

    def wait(self, what: str, fn: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Poll `fn` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)
