"""JupyterLab started exactly as the dev head's `jupyter` container starts it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.kuberay.jupyter import (
    NO_TOKEN_EXIT,
    PREFIX_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    jupyter_command,
    jupyter_container,
    token_volume,
)
from components.kuberay.raycluster_spec import PACKAGES_VENV
from tests.cli.conftest import closed_port

TOKEN = "t0ken-" + "a" * 40


def _env(tmp: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, TOKEN_FILE_ENV)}
    venv_bin = str(Path(sys.executable).parent)
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        # Jupyter's own state in the test's directory, not in ~.
        HOME=str(tmp / "home"),
        JUPYTER_CONFIG_DIR=str(tmp / "cfg"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    if token is not None:
        # As the pod has it: the Secret mounted as a file, its path in JUPYTER_TOKEN_FILE.
        token_file = tmp / "token"
        token_file.write_text(token)
        env[TOKEN_FILE_ENV] = str(token_file)
    # A stray JUPYTER_TOKEN would win over the file in Jupyter Server: the guard unsets it.
    env[TOKEN_ENV] = "not-the-token-from-the-secret"
    return env


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _non_loopback_ipv4() -> set[str]:
    """This host's IPv4 addresses outside 127/8 (SIOCGIFADDR per interface; Linux)."""
    import fcntl
    import struct

    found = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, req)[20:24])
            except OSError:
                continue  # an interface without an IPv4 address
            if not addr.startswith("127."):
                found.add(addr)
    return found


def _start(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        start_new_session=True,
    )


def _wait_for_api(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter exited {proc.returncode}: {log.read_text()}")
        try:
            if _get(f"{base}/api")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("JupyterLab did not answer within 90s")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("jupyter")
    root = tmp / "shared"
    root.mkdir()
    (root / "notebook-data.txt").write_text("on the shared file system")
    if os.geteuid() == 0:
        # This sandbox runs tests as root, which Jupyter refuses by default (see
        # test_refuses_to_run_as_root); allow it through config so the command stays exact.
        (tmp / "cfg").mkdir()
        (tmp / "cfg" / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"allow_root": True}})
        )
    port = closed_port()
    proc = _start(jupyter_command(port, str(root)), _env(tmp, TOKEN), root, tmp / "lab.log")
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_api(proc, base, tmp / "lab.log")
        yield base
    finally:
        _stop(proc)


def _shared_packages_layout(tmp: Path) -> tuple[Path, Path]:
    """JupyterLab where the head's installer puts it: a virtualenv in a content-addressed
    directory on the shared file system, whose site-packages PYTHONPATH reaches through the
    `site-packages` symlink beside it, and an interpreter whose own prefix has no JupyterLab
    (the image's Python). Here the virtualenv is this project's (it has JupyterLab 4.6), linked
    in, and the interpreter is the one it was made from. Returns (packages dir, bin dir)."""
    venv = Path(sys.prefix)
    packages = tmp / "shared" / "python-packages" / "0123456789ab"
    packages.mkdir(parents=True)
    (packages / PACKAGES_VENV).symlink_to(venv)
    site = next((venv / "lib").glob("python*/site-packages")).relative_to(venv)
    (packages / "site-packages").symlink_to(Path(PACKAGES_VENV) / site)
    bin_dir = tmp / "image-bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    assert not (Path(sys.base_prefix) / "share" / "jupyter" / "lab").exists()
    return packages, bin_dir


@pytest.mark.parametrize("prefix_given", [True, False])
def test_lab_serves_its_application_from_the_shared_packages(
    tmp_path: Path, prefix_given: bool
) -> None:
    """`/lab` is the application, not "JupyterLab application assets not found", when JupyterLab
    comes from the shared packages' virtualenv through the symlinked PYTHONPATH. Without the
    prefix the container passes, the failure the review saw on a real head shows here too."""
    packages, bin_dir = _shared_packages_layout(tmp_path)
    root = tmp_path / "shared"
    env = _env(tmp_path, TOKEN)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(packages / "site-packages")
    for name in ("VIRTUAL_ENV", "JUPYTERLAB_DIR", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
        env.pop(name, None)
    if prefix_given:
        (container_env,) = [
            e
            for e in jupyter_container(**{**_kwargs(), "prefix": str(packages / PACKAGES_VENV)})[
                "env"
            ]
            if e["name"] == PREFIX_ENV
        ]
        env[PREFIX_ENV] = container_env["value"]
    if os.geteuid() == 0:
        (tmp_path / "cfg").mkdir()
        (tmp_path / "cfg" / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"allow_root": True}})
        )
    port = closed_port()
    log = tmp_path / "lab.log"
    proc = _start(jupyter_command(port, str(root)), env, root, log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_api(proc, base, log)
        status, body = _get(f"{base}/lab", token=TOKEN)
        if prefix_given:
            assert status == 200, body[:500]
            assert b"application assets not found" not in body
            assert b"/static/lab/" in body  # the application's own bundle
            # The server extensions JupyterLab's dependencies enable are there too.
            assert _get(f"{base}/api/terminals", token=TOKEN)[0] == 200
        else:
            assert b"JupyterLab application assets not found" in body, body[:500]
    finally:
        _stop(proc)


def test_api_refuses_requests_without_the_token(lab: str) -> None:
    assert _get(f"{lab}/api/status")[0] == 403
    assert _get(f"{lab}/api/contents")[0] == 403
    assert _get(f"{lab}/api/contents", token="wrong-token")[0] == 403


def test_api_answers_with_the_token_and_serves_the_root_dir(lab: str) -> None:
    status, body = _get(f"{lab}/api/contents", token=TOKEN)
    assert status == 200
    names = [item["name"] for item in json.loads(body)["content"]]
    assert names == ["notebook-data.txt"]
    assert _get(f"{lab}/api/status", token=TOKEN)[0] == 200


def test_listens_on_loopback_only(lab: str) -> None:
    port = int(lab.rsplit(":", 1)[1])
    others = _non_loopback_ipv4()
    assert others, "no non-loopback IPv4 address on this host to check against"
    for ip in others:
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.settimeout(3)
            s.connect((ip, port))


@pytest.mark.parametrize("token", [None, ""])
def test_refuses_to_start_without_a_token(tmp_path: Path, token: str | None) -> None:
    proc = subprocess.run(
        jupyter_command(closed_port(), str(tmp_path)),
        env=_env(tmp_path, token),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == NO_TOKEN_EXIT
    assert proc.stderr.strip() == (
        "JUPYTER_TOKEN_FILE is missing or empty: refusing to start JupyterLab without a token"
    )


def test_refuses_to_run_as_root(tmp_path: Path) -> None:
    assert not any("allow_root" in arg or "allow-root" in arg for arg in jupyter_command(1, "/"))
    if os.geteuid() != 0:
        return  # only a root test process can show the refusal itself
    proc = subprocess.run(
        jupyter_command(closed_port(), str(tmp_path)),
        env=_env(tmp_path, TOKEN),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Running as root is not recommended. Use --allow-root to bypass." in proc.stderr


def test_container_takes_the_token_from_the_secret_and_stays_hardened() -> None:
    c = jupyter_container(
        image="rayproject/ray:2.60.0-py311",
        port=8888,
        root_dir="/mnt/shared/notebooks",
        token_secret_name="ray-jupyter",
        token_secret_key="token",
        env=[{"name": "RAY_ADDRESS", "value": "127.0.0.1:6379"}],
        volume_mounts=[{"name": "shared", "mountPath": "/mnt/shared"}],
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        security_context={
            "runAsUser": 1000,
            "runAsNonRoot": False,
            "capabilities": {"drop": ["ALL"]},
        },
    )
    assert c["env"][0] == {"name": "JUPYTER_TOKEN_FILE", "value": "/etc/jupyter-token/token"}
    assert {"name": "jupyter-token", "mountPath": "/etc/jupyter-token", "readOnly": True} in c[
        "volumeMounts"
    ]
    assert token_volume("ray-jupyter") == {
        "name": "jupyter-token",
        "secret": {"secretName": "ray-jupyter", "defaultMode": 0o400, "optional": False},
    }
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "--ServerApp.ip=127.0.0.1" in c["command"]
    assert c["workingDir"] == "/mnt/shared/notebooks"
    assert not any(TOKEN_ENV in arg and "$" not in arg for arg in c["command"])
    with pytest.raises(ValueError, match="must not set JUPYTER_TOKEN"):
        jupyter_container(**{**_kwargs(), "env": [{"name": TOKEN_ENV, "value": "x"}]})


def _kwargs() -> dict[str, Any]:
    return {
        "image": "i",
        "port": 8888,
        "root_dir": "/mnt/shared",
        "token_secret_name": "s",
        "token_secret_key": "k",
        "env": [],
        "volume_mounts": [],
        "resources": {},
        "security_context": {},
    }
