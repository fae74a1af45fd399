"""One local cluster's files: the layout of its state directory, the record of what `up` started
(state.json), the lock that serialises `up`/`down`, and the kubeconfigs written there."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from infra.cache import cache_root
from tools.devcluster.objectstore import DEFAULT_REGION, S3Credentials, s3_client_env

STATE_VERSION = 1
"""Bump when state.json changes shape: an older `down` must not misread a newer record."""


class LocalClusterError(RuntimeError):
    """The local cluster could not be started, inspected or stopped; the message is one line."""


def default_state_dir() -> Path:
    """`${RAY_PLATFORM_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ray-platform}/localcluster`."""
    return cache_root() / "localcluster"


@dataclass(frozen=True)
class Layout:
    """Where everything of one cluster lives under its state directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig `up` hands out (also used by the operator)."""
        return self.root / "kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "controller-manager.kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def minio_data(self) -> Path:
        return self.root / "minio"

    @property
    def object_store(self) -> Path:
        """MinIO's endpoint, bucket and credentials (0600), read by tools/devcluster/stack.py."""
        return self.root / "objectstore.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def layout(state_dir: Path | None) -> Layout:
    """The layout of `state_dir` (default: `default_state_dir()`), as an absolute path."""
    return Layout((state_dir or default_state_dir()).expanduser().resolve())


@contextlib.contextmanager
def locked(where: Layout) -> Iterator[None]:
    """Serialise `up` and `down` on one state directory (e.g. parallel test workers)."""
    where.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with where.lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ProcessRecord:
    """A process `up` started, as recorded in state.json."""

    name: str
    pid: int
    argv: list[str]
    """The exact command line: `down` only signals the PID while /proc still shows it."""
    binaries: list[str]
    """Executables allowed in its process group (the supervisor's group holds the operator)."""


@dataclass
class State:
    """What state.json holds: the ports chosen at `up`, the kubeconfig, the processes started."""

    ports: dict[str, int]
    kubeconfig: str
    processes: list[ProcessRecord] = field(default_factory=list)
    node: bool = False
    """The cluster has a node (kubelet, containerd, the pod network: see node.py)."""


def load_state(where: Layout) -> State | None:
    """The recorded state, or None when no cluster is recorded in `where`."""
    try:
        raw = json.loads(where.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LocalClusterError(f"unreadable {where.state_file}: {err}") from err
    if raw.get("version") != STATE_VERSION:
        raise LocalClusterError(
            f"{where.state_file} has an unknown format; stop its processes by hand, then delete it"
        )
    return State(
        ports={str(k): int(v) for k, v in raw["ports"].items()},
        kubeconfig=str(raw["kubeconfig"]),
        processes=[ProcessRecord(**p) for p in raw["processes"]],
        node=bool(raw.get("node", False)),
    )


def save_state(where: Layout, state: State) -> None:
    """Write state.json atomically: a crash mid-write must not lose the PIDs `down` needs."""
    data = {"version": STATE_VERSION, **asdict(state)}
    tmp = where.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(where.state_file)


@dataclass(frozen=True)
class ObjectStore:
    """The local control plane's MinIO, as `objectstore.json` records it."""

    endpoint: str
    """`http://127.0.0.1:<port>`: its S3 API."""
    bucket: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION

    @property
    def credentials(self) -> S3Credentials:
        return S3Credentials(self.access_key, self.secret_key)

    def env(self) -> dict[str, str]:
        """Environment that points boto3 here."""
        return s3_client_env(self.endpoint, self.credentials, self.region)


def save_object_store(where: Layout, store: ObjectStore) -> None:
    """Record the object store, readable by the owner only (it holds the secret key)."""
    write_private(where.object_store, json.dumps(asdict(store), indent=2) + "\n")


def load_object_store(where: Layout) -> ObjectStore | None:
    """The recorded object store, or None when this cluster runs none."""
    try:
        raw = json.loads(where.object_store.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LocalClusterError(f"unreadable {where.object_store}: {err}") from err
    return ObjectStore(**raw)


def render_kubeconfig(
    server: str, ca_cert: Path, client_cert: Path, client_key: Path, user: str
) -> str:
    """A self-contained kubeconfig (credentials embedded, so it can be copied or passed as text)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localcluster",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client_cert),
                    "client-key-data": b64(client_key),
                },
            }
        ],
        "contexts": [
            {"name": "localcluster", "context": {"cluster": "localcluster", "user": user}}
        ],
        "current-context": "localcluster",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only (kubeconfigs embed private keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file already existed
    with os.fdopen(fd, "w") as f:
        f.write(text)
