"""`ray.packageIndex`: the environment the program gives Ray pods makes the real pip (the
shared-packages installer, runtime_env pip) and the real uv (runtime_env uv) install from that
index and nowhere else.

The index is a PEP 503 simple index served by this test on loopback, reached as
`http://ray-index.invalid:3141/index/` through a forward proxy (the same server): pip treats
loopback addresses as secure, so only a name that is not loopback shows that the plain-http
index must be trusted — as a cluster-network address such as 10.88.0.1 must be.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from components.kuberay.raycluster_spec import INSTALL_SCRIPT
from tests.wheels import write_wheel
from tools.testing.pulumi_mocks import ProgramRun, run_program, stack_config

INDEX = "http://ray-index.invalid:3141/index/"
INDEX_VARS = ("PIP_INDEX_URL", "PIP_TRUSTED_HOST", "UV_DEFAULT_INDEX", "UV_INDEX_URL")


@dataclass
class Index:
    proxy: str
    wheels: Path
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    wheels = tmp_path_factory.mktemp("wheels")
    write_wheel(wheels, "extra", "0.1")
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # uv asks before it downloads a wheel
            self.do_GET(body_too=False)

        def do_GET(self, body_too: bool = True) -> None:
            url = urlsplit(self.path)  # absolute: the client talks to a proxy
            seen.append(f"{url.netloc}{url.path}")
            parts = [p for p in url.path.split("/") if p]
            body: bytes | None = None
            ctype = "text/html"
            if url.netloc != "ray-index.invalid:3141":
                body = None
            elif len(parts) == 2 and parts[0] == "index":
                links = [
                    f'<a href="/files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}"'
                    f">{w.name}</a>"
                    for w in sorted(wheels.glob(f"{parts[1].replace('-', '_')}-*.whl"))
                ]
                if links:
                    body = ("<html><body>" + "".join(links) + "</body></html>").encode()
            elif len(parts) == 2 and parts[0] == "files" and (wheels / parts[1]).is_file():
                body, ctype = (wheels / parts[1]).read_bytes(), "application/octet-stream"
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body_too:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Index(f"http://127.0.0.1:{server.server_address[1]}", wheels, seen)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def with_index() -> ProgramRun:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:ray"]["packageIndex"] = INDEX
    config.setdefault("ray-platform:kubernetes", {})["networkPolicy"] = {"restrictEgress": True}
    return run_program("dev", config)


def _pods(run: ProgramRun) -> list[dict[str, Any]]:
    spec = run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]


def _containers(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c
        for pod in _pods(run)
        for c in [*pod.get("initContainers", []), *pod["containers"]]
    }


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_every_ray_container_and_the_installers_get_the_index(with_index: ProgramRun) -> None:
    containers = _containers(with_index)
    assert {"ray-head", "ray-worker", "install-shared-packages", "jupyter"} <= set(containers)
    for name in ("ray-head", "ray-worker", "install-shared-packages", "jupyter"):
        env = _env(containers[name])
        assert {k: env[k] for k in (*INDEX_VARS, "UV_INSECURE_HOST")} == {
            "PIP_INDEX_URL": INDEX,
            "PIP_TRUSTED_HOST": "ray-index.invalid:3141",
            "UV_DEFAULT_INDEX": INDEX,
            "UV_INDEX_URL": INDEX,
            "UV_INSECURE_HOST": "ray-index.invalid:3141",
        }, name


def test_an_https_index_is_not_marked_insecure() -> None:
    config = copy.deepcopy(stack_config("local"))
    config["ray-platform:ray"]["packageIndex"] = "https://pypi.example.com/simple/"
    for c in _containers(run_program("local", config)).values():
        if c["name"].startswith("ray-"):
            env = _env(c)
            assert env["PIP_INDEX_URL"] == "https://pypi.example.com/simple/"
            assert "PIP_TRUSTED_HOST" not in env and "UV_INSECURE_HOST" not in env


def test_without_the_setting_nothing_points_pip_anywhere() -> None:
    for stack in ("dev", "local"):
        run = run_program(stack)
        for c in _containers(run).values():
            assert not set(_env(c)) & {*INDEX_VARS, "UV_INSECURE_HOST"}, c["name"]


def test_closed_egress_still_reaches_the_index(with_index: ProgramRun) -> None:
    egress = with_index.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"][
        "egress"
    ]
    assert {"ports": [{"protocol": "TCP", "port": 3141}]} in egress
    config = copy.deepcopy(stack_config("local"))
    config["ray-platform:ray"]["packageIndex"] = "http://10.88.0.1:3141/index/"
    config.setdefault("ray-platform:kubernetes", {})["networkPolicy"] = {"restrictEgress": True}
    egress = (
        run_program("local", config)
        .one("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        .inputs["spec"]["egress"]
    )
    # An index named by its address: that address only.
    assert {
        "to": [{"ipBlock": {"cidr": "10.88.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 3141}],
    } in egress


def _process_env(tmp: Path, pod_env: dict[str, str], proxy: str) -> dict[str, str]:
    """The pod's variables over a clean environment: an image-like base Python first on PATH,
    no index, proxy or pip/uv setting of this machine's, the test's proxy for every request."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python"
    if not python.exists():
        python.symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("PIP_", "UV_", "HTTP", "NO_PROXY", "ALL_PROXY"))
        and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        HOME=str(tmp / "home"),
        HTTP_PROXY=proxy,
        http_proxy=proxy,
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(tmp / "uv-cache"),
        PIP_NO_CACHE_DIR="1",
        HOSTNAME="ray-head-abcde",
    )
    return {**env, **pod_env}


def _index_vars(container: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in _env(container).items() if k.startswith(("PIP_", "UV_"))}


def test_the_installer_installs_from_the_index(
    with_index: ProgramRun, index: Index, tmp_path: Path
) -> None:
    installer = _containers(with_index)["install-shared-packages"]
    target = tmp_path / "shared" / "pkgs"
    target.parent.mkdir()
    env = _process_env(tmp_path, _index_vars(installer), index.proxy)
    env.update(
        TARGET=str(target),
        REQUIREMENTS="extra==0.1",
        RETRY_DELAY="1",
        RETRY_MAX_DELAY="1",
        TERMINATION_LOG=str(tmp_path / "termination-log"),
    )
    before = len(index.requests)
    done = subprocess.run(
        ["/bin/sh", "-c", INSTALL_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (target / "site-packages" / "extra" / "__init__.py").is_file()
    fetched = index.requests[before:]
    assert "ray-index.invalid:3141/index/extra/" in fetched
    assert any(r.startswith("ray-index.invalid:3141/files/extra-0.1") for r in fetched)


def test_pip_refuses_the_plain_http_index_without_the_trusted_host(
    with_index: ProgramRun, index: Index, tmp_path: Path
) -> None:
    """What the runtime_env pip plugin runs (`python -m pip install`, the agent's environment):
    with the pod's variables it installs from the index; without PIP_TRUSTED_HOST pip ignores a
    plain-http index that is not on loopback."""
    pod = _index_vars(_containers(with_index)["ray-worker"])

    def pip(env_vars: dict[str, str], into: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["python", "-m", "pip", "install", "--target", str(into), "extra==0.1"],
            env=_process_env(tmp_path, env_vars, index.proxy),
            capture_output=True,
            text=True,
            timeout=120,
        )

    untrusted = pip({k: v for k, v in pod.items() if k != "PIP_TRUSTED_HOST"}, tmp_path / "a")
    assert untrusted.returncode != 0
    assert "not a trusted or secure host" in untrusted.stdout + untrusted.stderr
    trusted = pip(pod, tmp_path / "b")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert (tmp_path / "b" / "extra" / "__init__.py").is_file()


def test_uv_installs_from_the_index(with_index: ProgramRun, index: Index, tmp_path: Path) -> None:
    """What the runtime_env uv plugin runs (`uv pip install`, the agent's environment)."""
    uv = shutil.which("uv")
    assert uv is not None, "uv not found on PATH"
    pod = _index_vars(_containers(with_index)["ray-worker"])
    before = len(index.requests)
    done = subprocess.run(
        [
            *(uv, "pip", "install", "--python", sys._base_executable),  # type: ignore[attr-defined]
            *("--target", str(tmp_path / "t"), "extra==0.1"),
        ],
        env=_process_env(tmp_path, pod, index.proxy),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "t" / "extra" / "__init__.py").is_file()
    assert "ray-index.invalid:3141/index/extra/" in index.requests[before:]
