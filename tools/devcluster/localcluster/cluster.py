"""`up`, `down`, `status`, `kubeconfig` and `object_store` of one local cluster: the components
of `components.py`, started and stopped by `process.py`, recorded by `state.py`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.build import BuildError, ensure
from tools.devcluster.certs import ADMIN_USER, CONTROLLER_MANAGER_USER, NODE_CLIENTS, Pki, write_pki
from tools.devcluster.localcluster import node, process
from tools.devcluster.localcluster.components import (
    BUCKET,
    LOOPBACK,
    MINIO,
    NODE_BINARIES,
    SERVICE_CLUSTER_IP_RANGE,
    SERVICE_IP,
    Component,
    Context,
    by_name,
    components,
    minio_endpoint,
    node_kubeconfig,
    package_mirror_url,
    port_names,
    registry_address,
    registry_config_file,
)
from tools.devcluster.localcluster.process import READY_TIMEOUT, progress
from tools.devcluster.localcluster.state import (
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
from tools.devcluster.objectstore import S3Credentials


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
    node: bool = False
    """The cluster has a node: pods run (kubelet, containerd, the pod network)."""
    registry: str | None = None
    """host:port of the node's image registry (docker.io and registry.k8s.io resolve there)."""
    package_index: str | None = None
    """The PEP 503 index pods install from (the node's pull-through mirror of PyPI)."""

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
        records = by_name(self.node)
        return self.recorded and all(
            c.running and (c.healthy or not records[c.name].counts_for_health)
            for c in self.components
        )


def _status(where: Layout, state: State | None) -> ClusterStatus:
    if state is None:
        return ClusterStatus(where.root, None, ())
    found = []
    records = by_name(state.node)
    for record in state.processes:
        component = records[record.name]
        running = process.running(record)
        healthy = running and process.healthy(component, state.ports, where.pki)
        endpoint = component.endpoint(state.ports)
        found.append(ComponentStatus(record.name, record.pid, running, healthy, endpoint))
    store = load_object_store(where)
    names = {p.name for p in state.processes}
    return ClusterStatus(
        where.root,
        Path(state.kubeconfig),
        tuple(found),
        store,
        node=state.node,
        registry=registry_address(state.ports) if "registry" in names else None,
        package_index=package_mirror_url(state.ports) if "package-mirror" in names else None,
    )


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
    with_node: bool = False,
    timeout: float = READY_TIMEOUT,
) -> Path:
    """Start a fresh local cluster (or reuse the healthy one) and return its kubeconfig path.

    Returns once /readyz is OK, the `default` namespace and its `default` ServiceAccount exist
    (so Pods can be admitted), with `with_operator` the KubeRay operator answers its probe, and
    with `with_object_store` MinIO is ready with the bucket `ray` created (see `object_store`),
    and `with_node` (root only) a real node runs pods: kubelet, containerd, kube-scheduler,
    kube-proxy, CoreDNS, the image registry and the package mirror, on the pod network of
    `node.py` (checked before anything starts: one line says what is missing).
    """
    where = layout(state_dir)
    if with_node:
        node.check_host()
    wanted_components = components(
        with_operator=with_operator, with_object_store=with_object_store, with_node=with_node
    )
    with locked(where):
        current = _status(where, load_state(where))
        wanted = {c.name for c in wanted_components}
        same = {c.name for c in current.components} == wanted and current.node == with_node
        if current.healthy and same and current.kubeconfig is not None:
            progress(f"already up ({where.root})")
            return current.kubeconfig
        if current.recorded:
            progress("found a stale or different cluster; stopping it first")
        _teardown(where)
        return _start(where, wanted_components, with_node=with_node, timeout=timeout)


def down(state_dir: Path | None = None) -> None:
    """Stop the processes `up` recorded and delete the cluster's data (logs are kept)."""
    where = layout(state_dir)
    with locked(where):
        _teardown(where)


def restart(names: list[str], state_dir: Path | None = None, timeout: float = 120.0) -> None:
    """Stop the named components of the running cluster and start them again, one after the
    other, on the same ports and files (a node's kubelet and containerd: their pods must keep
    running; the operator: it must recreate nothing)."""
    where = layout(state_dir)
    with locked(where):
        state = load_state(where)
        if state is None:
            raise LocalClusterError(f"no cluster recorded in {where.root}")
        records = by_name(state.node)
        unknown = [n for n in names if n not in records]
        if unknown:
            raise LocalClusterError(
                f"unknown component(s) {', '.join(unknown)}; one of: {', '.join(records)}"
            )
        wanted = [records[n] for n in names]
        # Every binary a command line or hook may name (the shim beside containerd, the pause
        # binary behind the registry's image): all cached, so this only resolves paths.
        built = [c.name for c in records.values() if c.built]
        binaries = ensure(list(dict.fromkeys([*built, *(NODE_BINARIES if state.node else ())])))
        store = load_object_store(where)
        ctx = Context(
            where,
            Pki.of(where.pki),
            state.ports,
            binaries,
            store.credentials if store is not None else None,
            node=node.NodePaths.of(where) if state.node else None,
        )
        launcher = process.Launcher(where, state, timeout)
        for component in wanted:
            for record in [p for p in state.processes if p.name == component.name]:
                progress(f"stopping {component.name} (pid {record.pid})")
                process.stop(record)
                state.processes.remove(record)
            launcher.launch(component, ctx)


def _teardown(where: Layout) -> None:
    state = load_state(where)
    if state is not None:
        for record in reversed(state.processes):  # clients first, etcd last
            process.stop(record)
    # The node's containers, mounts, network and host changes (a no-op without a node).
    node.restore_host(node.NodePaths.of(where))
    for path in (where.etcd_data, where.pki, where.minio_data):
        shutil.rmtree(path, ignore_errors=True)
    for stem in NODE_CLIENTS:
        node_kubeconfig(where, stem).unlink(missing_ok=True)
    files = (where.kubeconfig, where.controller_manager_kubeconfig, where.object_store)
    for path in (*files, where.state_file):
        path.unlink(missing_ok=True)


def _start(
    where: Layout, wanted: tuple[Component, ...], *, with_node: bool, timeout: float
) -> Path:
    names = [c.name for c in wanted if c.built]
    if with_node:
        names += [n for n in NODE_BINARIES if n not in names]
    progress("resolving binaries: " + ", ".join(names))
    try:
        binaries = ensure(names)
    except BuildError as err:
        raise LocalClusterError(f"cannot build the cluster's binaries: {err}") from err

    progress(f"starting in {where.root}")
    ports = process.free_ports(port_names(wanted))
    paths = node.NodePaths.of(where) if with_node else None
    host = node.NODE_IP if with_node else LOOPBACK
    if paths is not None:
        other = node.other_kubernetes()
        if other:
            raise node.NodeUnavailable(
                f"another Kubernetes node or container runtime runs here ({other}): it would "
                "share kubelet's fixed paths and iptables chains with this one; stop it first, "
                "or use `tools/up --control-plane-only`"
            )
        # Records what it changes first: `down` undoes a failed start.
        node.prepare_host(
            paths, SERVICE_CLUSTER_IP_RANGE, closed_ports=[ports["kube-router-health"]]
        )
    pki = write_pki(where.pki, service_ip=SERVICE_IP, node_ip=node.NODE_IP if with_node else None)
    server = f"https://{host}:{ports['apiserver']}"
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
    if paths is not None:
        for stem, (user, _groups) in NODE_CLIENTS.items():
            write_private(
                node_kubeconfig(where, stem),
                render_kubeconfig(
                    server, pki.ca_cert, where.pki / f"{stem}.crt", where.pki / f"{stem}.key", user
                ),
            )
    credentials = None
    if MINIO in names:
        credentials = S3Credentials.generate()
        store = ObjectStore(
            minio_endpoint(ports, host), BUCKET, credentials.access_key, credentials.secret_key
        )
        save_object_store(where, store)
    state = State(ports=ports, kubeconfig=str(where.kubeconfig), node=with_node)
    save_state(where, state)
    ctx = Context(where, pki, ports, binaries, credentials, node=paths)
    if paths is not None:
        _write_node_files(ctx, paths)
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


def _write_node_files(ctx: Context, paths: node.NodePaths) -> None:
    """The node's configuration files, rendered by node.py from this cluster's ports and PKI."""
    from tools.devcluster.localcluster.components import package_mirror_cache, registry_storage

    # cgroupfs on v1 and v2 alike: the systemd driver needs systemd as PID 1 and leaves
    # kubepods*.slice units behind (only cgroup v1 has been run here).
    cgroupfs = True
    cni_bin = node.cni_bin_dir()
    runc = shutil.which("runc") or "runc"
    files = {
        paths.containerd_config: node.containerd_config(
            paths,
            runc=runc,
            cni_bin=cni_bin,
            metrics_port=ctx.ports["containerd-metrics"],
            cgroupfs=cgroupfs,
        ),
        paths.cni_conf / "10-ray-platform.conflist": node.cni_conflist(paths),
        paths.resolv_conf: node.resolv_conf(),
        paths.kubelet_config: node.kubelet_config(
            paths,
            client_ca=ctx.pki.ca_cert,
            serving_cert=ctx.layout.pki / "kubelet-serving.crt",
            serving_key=ctx.layout.pki / "kubelet-serving.key",
            cgroupfs=cgroupfs,
        ),
        paths.corefile: node.corefile(
            node_kubeconfig(ctx.layout, "coredns"),
            health_port=ctx.ports["coredns-health"],
            ready_port=ctx.ports["coredns-ready"],
        ),
        registry_config_file(ctx): node.registry_config(registry_storage(), ctx.ports["registry"]),
    }
    files.update(node.registry_hosts_files(paths.registry_hosts, registry_address(ctx.ports)))
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    package_mirror_cache().mkdir(parents=True, exist_ok=True)
    registry_storage().mkdir(parents=True, exist_ok=True)


def shared_dir(state_dir: Path | None = None) -> Path:
    """The node's hostPath for the local stack's shared file system: inside the cluster's state
    directory, so `down` (which throws the cluster away) leaves nothing behind."""
    return node.NodePaths.of(layout(state_dir)).root / "shared"
