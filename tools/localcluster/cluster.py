"""`up`, `down`, `status`, `kubeconfig` and `object_store` of one local cluster: the components
of `components.py`, started and stopped by `process.py`, recorded by `state.py`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.build import BuildError, ensure
from tools.certs import ADMIN_USER, CONTROLLER_MANAGER_USER, write_pki
from tools.localcluster import process
from tools.localcluster.components import (
    BUCKET,
    BY_NAME,
    LOOPBACK,
    MINIO,
    SERVICE_IP,
    Component,
    Context,
    components,
    minio_endpoint,
    port_names,
)
from tools.localcluster.process import READY_TIMEOUT, progress
from tools.localcluster.state import (
    Layout,
    LocalClusterError,
    ObjectStore,
    State,
    layout,
    load_object_store,
    load_state,
    locked,
    render_kubeconfig,
    save_object_store,
    save_state,
    write_private,
)
from tools.objectstore import S3Credentials


@dataclass(frozen=True)
class ComponentStatus:
    """One process of the local cluster."""

    name: str
    pid: int
    running: bool
    """The recorded PID still runs the recorded command line."""
    healthy: bool
    """Its health endpoint answers OK."""
    endpoint: str


@dataclass(frozen=True)
class ClusterStatus:
    """What `status` found in a state directory."""

    state_dir: Path
    kubeconfig: Path | None
    """None when no cluster is recorded there."""
    components: tuple[ComponentStatus, ...]
    object_store: ObjectStore | None = None
    """The MinIO's endpoint, bucket and credentials, when the cluster runs one."""

    @property
    def recorded(self) -> bool:
        """A cluster was started here and not taken down."""
        return self.kubeconfig is not None

    @property
    def healthy(self) -> bool:
        """Every recorded process runs, and the control plane reports healthy.

        The operator's probe does not count: while its CRDs are missing it exits every couple of
        minutes and its supervisor restarts it, which is expected (see `process.supervise`).
        """
        return self.recorded and all(
            c.running and (c.healthy or not BY_NAME[c.name].counts_for_health)
            for c in self.components
        )


def _status(where: Layout, state: State | None) -> ClusterStatus:
    if state is None:
        return ClusterStatus(where.root, None, ())
    found = []
    for record in state.processes:
        component = BY_NAME[record.name]
        running = process.running(record)
        healthy = running and process.healthy(component, state.ports, where.pki)
        endpoint = component.endpoint(state.ports)
        found.append(ComponentStatus(record.name, record.pid, running, healthy, endpoint))
    store = load_object_store(where)
    return ClusterStatus(where.root, Path(state.kubeconfig), tuple(found), store)


def status(state_dir: Path | None = None) -> ClusterStatus:
    """Inspect the cluster recorded in `state_dir` (default: `default_state_dir()`)."""
    where = layout(state_dir)
    return _status(where, load_state(where))


def kubeconfig(state_dir: Path | None = None) -> Path:
    """Path of the admin kubeconfig of the running cluster; raises if none is recorded."""
    where = layout(state_dir)
    state = load_state(where)
    if state is None or not Path(state.kubeconfig).is_file():
        raise LocalClusterError(f"no local cluster in {where.root}; run `up` first")
    return Path(state.kubeconfig)


def object_store(state_dir: Path | None = None) -> ObjectStore:
    """The running cluster's MinIO (endpoint, bucket, credentials); raises if it runs none."""
    where = layout(state_dir)
    state = load_state(where)
    store = load_object_store(where) if state is not None else None
    if state is None or store is None or MINIO not in {p.name for p in state.processes}:
        raise LocalClusterError(f"no object store in the local cluster in {where.root}")
    return store


def up(
    state_dir: Path | None = None,
    *,
    with_operator: bool = True,
    with_object_store: bool = True,
    timeout: float = READY_TIMEOUT,
) -> Path:
    """Start a fresh local cluster (or reuse the healthy one) and return its kubeconfig path.

    Returns once /readyz is OK, the `default` namespace and its `default` ServiceAccount exist
    (so Pods can be admitted), with `with_operator` the KubeRay operator answers its probe, and
    with `with_object_store` MinIO is ready with the bucket `ray` created (see `object_store`).
    """
    where = layout(state_dir)
    wanted_components = components(with_operator=with_operator, with_object_store=with_object_store)
    with locked(where):
        current = _status(where, load_state(where))
        wanted = {c.name for c in wanted_components}
        same = {c.name for c in current.components} == wanted
        if current.healthy and same and current.kubeconfig is not None:
            progress(f"already up ({where.root})")
            return current.kubeconfig
        if current.recorded:
            progress("found a stale or different cluster; stopping it first")
        _teardown(where)
        return _start(where, wanted_components, timeout=timeout)


def down(state_dir: Path | None = None) -> None:
    """Stop the processes `up` recorded and delete the cluster's data (logs are kept)."""
    where = layout(state_dir)
    with locked(where):
        _teardown(where)


def _teardown(where: Layout) -> None:
    state = load_state(where)
    if state is not None:
        for record in reversed(state.processes):  # clients first, etcd last
            process.stop(record)
    for path in (where.etcd_data, where.pki, where.minio_data):
        shutil.rmtree(path, ignore_errors=True)
    files = (where.kubeconfig, where.controller_manager_kubeconfig, where.object_store)
    for path in (*files, where.state_file):
        path.unlink(missing_ok=True)


def _start(where: Layout, wanted: tuple[Component, ...], *, timeout: float) -> Path:
    names = [c.name for c in wanted]
    progress("resolving binaries: " + ", ".join(names))
    try:
        binaries = ensure(names)
    except BuildError as err:
        raise LocalClusterError(f"cannot build the control plane: {err}") from err

    progress(f"starting in {where.root}")
    ports = process.free_ports(port_names(wanted))
    pki = write_pki(where.pki, service_ip=SERVICE_IP)
    server = f"https://{LOOPBACK}:{ports['apiserver']}"
    write_private(
        where.kubeconfig,
        render_kubeconfig(server, pki.ca_cert, pki.admin_cert, pki.admin_key, ADMIN_USER),
    )
    write_private(
        where.controller_manager_kubeconfig,
        render_kubeconfig(
            server,
            pki.ca_cert,
            pki.controller_manager_cert,
            pki.controller_manager_key,
            CONTROLLER_MANAGER_USER,
        ),
    )
    credentials = None
    if MINIO in names:
        credentials = S3Credentials.generate()
        store = ObjectStore(
            minio_endpoint(ports), BUCKET, credentials.access_key, credentials.secret_key
        )
        save_object_store(where, store)
    state = State(ports=ports, kubeconfig=str(where.kubeconfig))
    save_state(where, state)
    ctx = Context(where, pki, ports, binaries, credentials)
    launcher = process.Launcher(where, state, timeout)
    try:
        for component in wanted:
            launcher.launch(component, ctx)
    except BaseException:
        progress("start failed; stopping what was started")
        _teardown(where)
        raise
    progress(f"up; kubeconfig: {where.kubeconfig}")
    return where.kubeconfig
