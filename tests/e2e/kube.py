"""A tiny read-only Kubernetes client for the e2e checks (HTTPS + client certificate)."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class Kube:
    """GET against the cluster a kubeconfig points at."""

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

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None if it does not exist."""
        request = urllib.request.Request(self.server + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=15) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

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
            time.sleep(1.0)
