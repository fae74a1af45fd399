"""The local control plane's component records: command lines, ports, probes, start order.

Pure: no binaries run. A regression here (a component listening beyond loopback, the API server
pointed at the wrong etcd port, the operator not supervised) would otherwise only show up in the
e2e tier, after a 26-minute cold build.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tools.devcluster import objectstore
from tools.devcluster.certs import Pki
from tools.devcluster.localcluster import cli, components, process
from tools.devcluster.localcluster.cluster import ClusterStatus, ComponentStatus
from tools.devcluster.localcluster.components import (
    APISERVER,
    CONTROLLER_MANAGER,
    ETCD,
    LOOPBACK,
    MINIO,
    OPERATOR,
    Context,
)
from tools.devcluster.localcluster.state import Layout, LocalClusterError, ObjectStore

ALL = components.components(with_operator=True)


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    layout = Layout(tmp_path / "cluster")
    pki = Pki(**{f.name: layout.pki / f"{f.name}.pem" for f in dataclasses.fields(Pki)})
    names = components.port_names(ALL)
    ports = {name: 20000 + i for i, name in enumerate(names)}
    binaries = {c.name: tmp_path / "bin" / c.name for c in ALL}
    credentials = objectstore.S3Credentials("rp-user", "rp-secret-0123456789")
    return Context(layout, pki, ports, binaries, credentials)


def flags(argv: list[str]) -> dict[str, str]:
    """`--name=value` flags of a command line (a flag given twice would be a bug: keep the last)."""
    return dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)


def test_components_start_in_dependency_order() -> None:
    assert [c.name for c in ALL] == [ETCD, APISERVER, CONTROLLER_MANAGER, OPERATOR, MINIO]
    without = components.components(with_operator=False)
    assert [c.name for c in without] == [ETCD, APISERVER, CONTROLLER_MANAGER, MINIO]
    bare = components.components(with_operator=False, with_object_store=False)
    assert [c.name for c in bare] == [ETCD, APISERVER, CONTROLLER_MANAGER]


def test_every_component_runs_its_own_binary(ctx: Context) -> None:
    for component in ALL:
        assert component.argv(ctx)[0] == str(ctx.binaries[component.name])


def test_ports_are_owned_by_exactly_one_component() -> None:
    owned = [port for c in ALL for port in c.ports]
    assert len(owned) == len(set(owned))
    assert components.port_names(ALL) == owned
    assert "operator-probe" not in components.port_names(components.components(with_operator=False))


NETWORK_FLAG = re.compile(r"listen|advertise|address|addr$|bind|etcd-servers|initial-cluster$")


def test_everything_listens_on_loopback_only(ctx: Context) -> None:
    seen = 0
    for component in ALL:
        for name, value in flags(component.argv(ctx)).items():
            if not NETWORK_FLAG.search(name):
                continue
            seen += 1
            for item in value.split(","):
                target = item.split("=", 1)[-1]  # initial-cluster: name=url
                host = urlsplit(target).hostname if "://" in target else target.rsplit(":", 1)[0]
                assert host == LOOPBACK, f"{component.name} --{name}={value}"
    assert seen >= 10  # the pattern still matches the flags it is meant to


def test_each_component_listens_on_its_own_ports(ctx: Context) -> None:
    for component in ALL:
        argv = " ".join(component.argv(ctx))
        for port in component.ports:
            assert f":{ctx.ports[port]}" in argv or f"={ctx.ports[port]}" in argv
        others = [p for c in ALL if c is not component for p in c.ports if p != "etcd-client"]
        for port in others:
            assert str(ctx.ports[port]) not in argv, f"{component.name} uses {port}"


def test_apiserver_talks_to_the_etcd_that_etcd_advertises(ctx: Context) -> None:
    etcd = flags(components.etcd_argv(ctx))
    apiserver = flags(components.apiserver_argv(ctx))
    assert apiserver["etcd-servers"] == etcd["advertise-client-urls"] == etcd["listen-client-urls"]
    assert etcd["data-dir"] == str(ctx.layout.etcd_data)
    assert etcd["initial-cluster"] == f"localcluster={etcd['listen-peer-urls']}"


def test_apiserver_serves_tls_with_rbac_and_the_default_admission_plugins(ctx: Context) -> None:
    apiserver = flags(components.apiserver_argv(ctx))
    assert apiserver["secure-port"] == str(ctx.ports["apiserver"])
    assert apiserver["tls-cert-file"] == str(ctx.pki.apiserver_cert)
    assert apiserver["client-ca-file"] == str(ctx.pki.ca_cert)
    assert apiserver["authorization-mode"] == "RBAC"
    # PodSecurity admission is on by default: nothing may switch the defaults off.
    assert "disable-admission-plugins" not in apiserver
    assert "enable-admission-plugins" not in apiserver
    # Tokens the controller manager signs must verify at the API server.
    assert apiserver["service-account-key-file"] == str(ctx.pki.service_account_pub)
    assert apiserver["service-account-signing-key-file"] == str(ctx.pki.service_account_key)


def test_controller_manager_acts_as_itself_with_cloud_controllers_off(ctx: Context) -> None:
    cm = flags(components.controller_manager_argv(ctx))
    # Its own kubeconfig: RBAC's bootstrap policy grants that user, not the admin, its rights.
    assert cm["kubeconfig"] == str(ctx.layout.controller_manager_kubeconfig)
    assert cm["kubeconfig"] != str(ctx.layout.kubeconfig)
    assert cm["service-account-private-key-file"] == str(ctx.pki.service_account_key)
    controllers = cm["controllers"].split(",")
    assert controllers[0] == "*"
    assert set(controllers[1:]) == {f"-{n}" for n in components.DISABLED_CONTROLLERS}
    assert cm["leader-elect"] == "false"


def test_operator_uses_the_admin_kubeconfig_and_probe_port(ctx: Context) -> None:
    op = flags(components.operator_argv(ctx))
    assert op["kubeconfig"] == str(ctx.layout.kubeconfig)
    assert op["health-probe-bind-address"] == f"{LOOPBACK}:{ctx.ports['operator-probe']}"
    assert op["metrics-addr"] == f"{LOOPBACK}:{ctx.ports['operator-metrics']}"
    assert op["enable-leader-election"] == "false"


def test_health_probes_hit_each_components_own_port(ctx: Context) -> None:
    expected = {
        ETCD: ("http", "etcd-client", "/health", None),
        APISERVER: ("https", "apiserver", "/readyz", "admin"),
        CONTROLLER_MANAGER: ("https", "controller-manager", "/healthz", None),
        OPERATOR: ("http", "operator-probe", "/readyz", None),
        MINIO: ("http", "minio", "/minio/health/ready", None),
    }
    for component in ALL:
        probe = component.health(ctx.ports)
        url = urlsplit(probe.url)
        scheme, port, path, client = expected[component.name]
        assert (url.scheme, url.hostname, url.port, url.path, probe.client) == (
            scheme,
            LOOPBACK,
            ctx.ports[port],
            path,
            client,
        )
        assert component.endpoint(ctx.ports) == f"{scheme}://{LOOPBACK}:{ctx.ports[port]}"


def test_readiness_waits_for_what_pods_need() -> None:
    by_name = components.BY_NAME
    assert [p for _, p in by_name[APISERVER].ready_objects] == ["/api/v1/namespaces/default"]
    assert [p for _, p in by_name[CONTROLLER_MANAGER].ready_objects] == [
        "/api/v1/namespaces/default/serviceaccounts/default"
    ]
    probe = components.api_probe({"apiserver": 6443}, "/api/v1/namespaces/default")
    assert probe.url == f"https://{LOOPBACK}:6443/api/v1/namespaces/default"
    assert probe.client == "admin"


def test_only_the_operator_is_supervised_and_may_be_unready() -> None:
    assert [c.name for c in ALL if c.supervised] == [OPERATOR]
    assert [c.name for c in ALL if not c.counts_for_health] == [OPERATOR]


def test_minio_serves_the_clusters_data_dir_on_its_loopback_ports(ctx: Context) -> None:
    argv = components.minio_argv(ctx)
    assert argv[:3] == [str(ctx.binaries[MINIO]), "server", str(ctx.layout.minio_data)]
    assert ctx.layout.minio_data.parent == ctx.layout.root  # `down` deletes it with the rest
    got = flags(argv)
    assert got["address"] == f"{LOOPBACK}:{ctx.ports['minio']}"
    assert got["console-address"] == f"{LOOPBACK}:{ctx.ports['minio-console']}"
    # One implementation: the submit tests' servers (tools/testing/bucket_servers.py) run it too.
    same = objectstore.minio_argv(
        ctx.binaries[MINIO], ctx.layout.minio_data, ctx.ports["minio"], ctx.ports["minio-console"]
    )
    assert argv == same
    assert components.minio_endpoint(ctx.ports) == f"http://{LOOPBACK}:{ctx.ports['minio']}"


def test_minio_gets_the_generated_credentials_through_its_environment_only(ctx: Context) -> None:
    record = components.BY_NAME[MINIO]
    env = record.env(ctx)
    assert ctx.object_store is not None
    assert env["MINIO_ROOT_USER"] == ctx.object_store.access_key
    assert env["MINIO_ROOT_PASSWORD"] == ctx.object_store.secret_key
    assert env["MINIO_UPDATE"] == env["MINIO_CALLHOME_ENABLE"] == "off"
    assert env == objectstore.minio_env(ctx.object_store)
    # The argv is recorded in state.json; the secret must not be in it.
    assert ctx.object_store.secret_key not in " ".join(record.argv(ctx))
    # The other components get no extra environment.
    assert [c.name for c in ALL if c.env(ctx)] == [MINIO]
    with pytest.raises(LocalClusterError, match="no object store credentials"):
        record.env(dataclasses.replace(ctx, object_store=None))


def test_minio_creates_the_bucket_once_healthy(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = components.BY_NAME[MINIO]
    assert [c.name for c in ALL if c.after_ready is not None] == [MINIO]
    calls = []
    monkeypatch.setattr(
        objectstore, "create_s3_bucket", lambda *args, **kw: calls.append((args, kw))
    )
    assert record.after_ready is not None
    record.after_ready(ctx)
    endpoint = f"http://{LOOPBACK}:{ctx.ports['minio']}"
    assert calls == [((endpoint, ctx.object_store, components.BUCKET), {})]
    assert components.BUCKET == "ray"


def test_generated_credentials_are_fresh_and_long_enough() -> None:
    one, two = objectstore.S3Credentials.generate(), objectstore.S3Credentials.generate()
    assert one != two
    assert len(one.access_key) >= 3 and len(one.secret_key) >= 8  # MinIO's minimums


def test_status_prints_the_bucket(tmp_path: Path) -> None:
    import io

    store = ObjectStore("http://127.0.0.1:9000", "ray", "rp-user", "rp-secret")
    out = io.StringIO()
    cli.print_status(ClusterStatus(tmp_path, tmp_path / "kubeconfig", (), store), out)
    assert "bucket: s3://ray at http://127.0.0.1:9000" in out.getvalue()
    assert "rp-secret" not in out.getvalue()


def test_supervisor_command_line_round_trips_through_the_cli() -> None:
    operator = ["/bin/kuberay-operator", "--kubeconfig=/x", "--", "-v"]
    argv = process.supervisor_argv(operator)
    assert argv[1:4] == ["-m", "tools.devcluster.localcluster", cli.SUPERVISE]
    assert cli.supervised_argv(argv[3:]) == operator
    assert cli.supervised_argv(["up", "--dir", "x"]) is None


def _status(**health: bool) -> ClusterStatus:
    comps = tuple(
        ComponentStatus(name, 1, True, health.get(name.replace("-", "_"), True), "")
        for name in (ETCD, APISERVER, CONTROLLER_MANAGER, OPERATOR, MINIO)
    )
    return ClusterStatus(Path("/x"), Path("/x/kubeconfig"), comps)


def test_cluster_health_ignores_only_the_operator_probe() -> None:
    assert _status().healthy
    assert _status(kuberay_operator=False).healthy
    assert not _status(kube_apiserver=False).healthy
    assert not _status(minio=False).healthy
    assert not ClusterStatus(Path("/x"), None, ()).healthy
    stopped = dataclasses.replace(_status().components[0], running=False)
    assert not ClusterStatus(Path("/x"), Path("/k"), (stopped,)).healthy
