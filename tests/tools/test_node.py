"""The node's pure parts (tools/devcluster/localcluster/node.py, tools/devcluster/readiness.py):
what the configs say, how readiness is decided. The node itself runs in the e2e tier
(tests/e2e/test_node.py)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tools.devcluster import readiness
from tools.devcluster.localcluster import node
from tools.devcluster.localcluster.state import Layout


def paths(tmp_path: Path) -> node.NodePaths:
    return node.NodePaths(tmp_path / "node")


def test_containerd_runs_with_restricted_oom_adj_its_own_dirs_and_no_internet_registry(
    tmp_path: Path,
) -> None:
    p = paths(tmp_path)
    text = node.containerd_config(
        p, runc="/usr/sbin/runc", cni_bin=Path("/usr/lib/cni"), metrics_port=1234, cgroupfs=True
    )
    config = tomllib.loads(text)
    assert config["version"] == 3
    assert config["root"] == str(p.containerd_root)
    assert config["state"] == str(p.containerd_state)
    assert config["plugins"]["io.containerd.server.v1.grpc"]["address"] == str(p.containerd_socket)
    assert config["imports"] == []
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    # Without it runc fails every sandbox on machines lacking CAP_SYS_RESOURCE.
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc == {
        "BinaryName": "/usr/sbin/runc",
        "Root": str(p.runc_root),
        "SystemdCgroup": False,
    }
    assert runtime["disable_apparmor"] is True
    assert runtime["cni"]["conf_dir"] == str(p.cni_conf)
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == node.PAUSE_IMAGE
    assert images["registry"]["config_path"] == str(p.registry_hosts)


def test_a_mirrored_registry_never_falls_back_to_the_internet() -> None:
    hosts = tomllib.loads(node.registry_hosts_toml("127.0.0.1:5000"))
    # containerd falls back to `server` when the mirror fails: it must be the local one too.
    assert hosts["server"] == "http://127.0.0.1:5000"
    assert list(hosts["host"]) == ["http://127.0.0.1:5000"]


def test_the_pod_network_is_one_bridge_without_masquerade(tmp_path: Path) -> None:
    conf = json.loads(node.cni_conflist(paths(tmp_path)))
    (bridge,) = conf["plugins"]
    assert bridge["bridge"] == node.BRIDGE
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.POD_CIDR, "gateway": node.NODE_IP}]]
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_pods_resolve_through_cluster_dns_only() -> None:
    assert node.resolv_conf() == f"nameserver {node.NODE_IP}\n"
    corefile = node.corefile(Path("/k"), health_port=1, ready_port=2)
    assert f"bind {node.NODE_IP}" in corefile
    assert "forward" not in corefile  # nothing leaves the machine


def test_kubelet_config_fits_this_machine(tmp_path: Path) -> None:
    p = paths(tmp_path)
    config: dict[str, Any] = yaml.safe_load(
        node.kubelet_config(
            p,
            client_ca=Path("/ca"),
            serving_cert=Path("/c"),
            serving_key=Path("/k"),
            cgroupfs=True,
        )
    )
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failCgroupV1"] is False
    assert config["address"] == node.NODE_IP
    assert config["clusterDNS"] == [node.NODE_IP]
    assert config["resolvConf"] == str(p.resolv_conf)
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0
    assert config["containerRuntimeEndpoint"] == f"unix://{p.containerd_socket}"


def test_the_fence_keeps_pod_traffic_on_the_bridge() -> None:
    rules = node.fence_rules(forwarding_was_off=False)
    assert rules[0] == ["-i", node.BRIDGE, "-o", node.BRIDGE, "-j", "RETURN"]
    assert ["-i", node.BRIDGE, "-j", "DROP"] in rules
    assert ["-o", node.BRIDGE, "-j", "DROP"] in rules
    assert not any(
        rule[-2:] == ["-j", "DROP"] and "-i" not in rule and "-o" not in rule for rule in rules
    )
    # A host that forwarded nothing before forwards nothing but the bridge's traffic now.
    assert node.fence_rules(forwarding_was_off=True)[-1] == [
        "-m",
        "physdev",
        "!",
        "--physdev-is-bridged",
        "-j",
        "DROP",
    ]
    ingress = node.ingress_rules("10.96.0.0/16")
    assert ingress[:2] == [["-i", node.BRIDGE, "-j", "RETURN"], ["-i", "lo", "-j", "RETURN"]]
    assert ["-d", node.POD_CIDR, "-j", "DROP"] in ingress
    assert ["-d", "10.96.0.0/16", "-j", "DROP"] in ingress


def test_missing_capabilities_are_named() -> None:
    full = "CapEff:\t000001ffffffffff\n"
    assert node.missing_capabilities(full) == []
    without_net_admin = f"CapEff:\t{0x1FFFFFFFFFF & ~(1 << 12):016x}\n"
    assert node.missing_capabilities(without_net_admin) == ["CAP_NET_ADMIN"]


def test_rules_jumping_to_the_nodes_chains_are_recognised() -> None:
    assert node._jumps_to(["-A", "FORWARD", "-j", "KUBE-FORWARD"], ["KUBE-FORWARD"])
    assert not node._jumps_to(["-A", "FORWARD", "-j", "ACCEPT"], ["KUBE-FORWARD"])


# ------------------------------------------------------------------------------------ readiness


def pod(
    name: str,
    kind: str,
    *,
    group: str | None = None,
    phase: str = "Running",
    ready: bool = True,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    labels = {"ray.io/node-type": kind}
    if group:
        labels["ray.io/group"] = group
    st: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    st.update(status or {})
    return {"metadata": {"name": name, "labels": labels}, "status": st}


def test_ready_needs_the_head_and_the_minimum_workers() -> None:
    head = pod("h", "head")
    worker = pod("w", "worker", group="cpu")
    assert readiness.verdict([head, worker], {"cpu": 1}).ready
    assert not readiness.verdict([head], {"cpu": 1}).ready
    assert readiness.verdict([head], {"cpu": 0}).ready
    assert not readiness.verdict([pod("h", "head", ready=False)], {}).ready


def test_a_head_that_cannot_start_is_a_failure_with_the_pods_reason() -> None:
    pulling = pod(
        "h",
        "head",
        phase="Pending",
        ready=False,
        status={
            "containerStatuses": [
                {
                    "name": "ray-head",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
                }
            ]
        },
    )
    found = readiness.verdict([pulling], {})
    assert found.failure == "pod h container ray-head: ImagePullBackOff: not found"
    unschedulable = pod(
        "h",
        "head",
        phase="Pending",
        ready=False,
        status={
            "conditions": [
                {"type": "PodScheduled", "reason": "Unschedulable", "message": "Insufficient cpu"}
            ]
        },
    )
    assert "Insufficient cpu" in (readiness.verdict([unschedulable], {}).failure or "")


def test_a_failing_installer_is_a_failure_after_a_few_restarts() -> None:
    status = {
        "initContainerStatuses": [
            {
                "name": "install-shared-packages",
                "restartCount": 3,
                "lastState": {"terminated": {"exitCode": 1, "message": "No matching distribution"}},
            }
        ]
    }
    found = readiness.verdict([pod("h", "head", phase="Pending", ready=False, status=status)], {})
    assert found.failure is not None and "No matching distribution" in found.failure
    status["initContainerStatuses"][0]["restartCount"] = 1
    assert (
        readiness.verdict(
            [pod("h", "head", phase="Pending", ready=False, status=status)], {}
        ).failure
        is None
    )


def test_a_head_recreated_again_and_again_is_a_failure() -> None:
    waiting = pod("h", "head", phase="Pending", ready=False)
    assert readiness.verdict([waiting], {}, failed_heads=1).failure is None
    assert readiness.verdict([waiting], {}, failed_heads=3).failure is not None


def test_a_failing_shared_packages_install_is_read_from_the_installers_log() -> None:
    attempt = (
        "shared packages: attempt {n} failed (exit 1), retrying in 10s; pip's output in this "
        "container's log says why."
    )
    log = "\n".join(
        [
            "ERROR: Could not find a version that satisfies the requirement nosuchpkg==1.0",
            "ERROR: No matching distribution found for nosuchpkg==1.0",
            attempt.format(n=1),
        ]
    )
    assert readiness.installer_failure(log) is None  # one failure may be transient
    # The count comes from the installer's own line: earlier attempts may be out of the tail.
    assert readiness.installer_failure(attempt.format(n=3)) is not None
    found = readiness.installer_failure(log + "\n" + attempt.format(n=2))
    assert found is not None
    assert "No matching distribution found for nosuchpkg==1.0" in found
    assert "\n" not in found


def test_an_install_failing_before_pip_says_what_failed() -> None:
    """A read-only shared file system fails `mkdir` before pip runs: no ERROR line of pip's, the
    command's own message is the reason."""
    attempt = "shared packages: attempt {n} failed (exit 1), retrying in 10s;"
    mkdir = (
        "mkdir: cannot create directory '/mnt/shared/python-packages/x.tmp': Read-only file system"
    )
    log = "\n".join([mkdir, attempt.format(n=1), mkdir, attempt.format(n=2)])
    found = readiness.installer_failure(log)
    assert found is not None and "Read-only file system" in found


def test_without_root_the_node_is_refused_in_one_line(monkeypatch: Any) -> None:
    import pytest

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(node.NodeUnavailable) as refused:
        node.check_host()
    message = str(refused.value)
    assert "needs root" in message and "--control-plane-only" in message
    assert "\n" not in message


def test_pods_of_a_replaced_spec_prove_nothing_and_terminating_ones_are_no_failure() -> None:
    ready = [pod("h", "head"), pod("w", "worker", group="cpu")]
    assert not readiness.verdict(ready, {"cpu": 1}, reconciled=False).ready
    gone = pod("old", "head", phase="Failed", ready=False)
    gone["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:00Z"
    pending = pod(
        "h",
        "head",
        phase="Pending",
        ready=False,
        status={
            "conditions": [
                {"type": "PodScheduled", "reason": "Unschedulable", "message": "Insufficient cpu"}
            ]
        },
    )
    # While the old head terminates, the new one waiting for its CPU is not a failure...
    assert readiness.verdict([gone, pending], {}).failure is None
    # ... nor just after (the scheduler retries after a backoff) ...
    assert readiness.verdict([pending], {}, settling=True).failure is None
    # ... once nothing terminated for a while, it is.
    assert readiness.verdict([pending], {}).failure is not None


def test_another_kubelet_on_the_machine_is_noticed(monkeypatch: Any, tmp_path: Path) -> None:
    seen: set[str] = set()
    monkeypatch.setattr("os.path.lexists", lambda p: p in seen)
    monkeypatch.setattr(node, "kubepods_cgroups", lambda: [])
    monkeypatch.setattr(node, "chains", lambda _tool, _table: ["INPUT", "FORWARD"])
    assert node.other_kubernetes() is None
    seen.add("/var/lib/kubelet/device-plugins/kubelet.sock")
    assert "device-plugins" in (node.other_kubernetes() or "")
    seen.clear()
    monkeypatch.setattr(node, "chains", lambda _tool, _table: ["INPUT", "KUBE-SERVICES"])
    assert "KUBE-*" in (node.other_kubernetes() or "")


def test_down_removes_only_kubelets_links_into_the_node(tmp_path: Path) -> None:
    logs, root = tmp_path / "containers", tmp_path / "node"
    logs.mkdir()
    (root / "pod-logs").mkdir(parents=True)
    (logs / "ours.log").symlink_to(root / "pod-logs" / "x.log")
    (logs / "theirs.log").symlink_to(tmp_path / "elsewhere.log")
    node._remove_links_into(logs, root)
    assert sorted(p.name for p in logs.iterdir()) == ["theirs.log"]


def test_nothing_is_deleted_under_a_mount(monkeypatch: Any, tmp_path: Path) -> None:
    import pytest

    (tmp_path / "d").mkdir()
    monkeypatch.setattr(node, "_mounts_under", lambda _p: [str(tmp_path / "d" / "m")])
    from tools.devcluster.localcluster.state import LocalClusterError

    with pytest.raises(LocalClusterError, match="still mounted"):
        node._remove_unmounted(tmp_path / "d")
    assert (tmp_path / "d").is_dir()


# ------------------------------------------------------------------------- the policy engine


def test_kube_router_runs_only_its_policy_controller_as_its_own_user(tmp_path: Path) -> None:
    """kube-router's router (BGP, its own CNI config) and service proxy (IPVS) would fight the
    CNI bridge and kube-proxy; its health port is the one the fence closes to other
    interfaces."""
    import dataclasses

    from tools.devcluster.certs import NODE_CLIENTS, Pki
    from tools.devcluster.localcluster import components
    from tools.devcluster.localcluster.components import Context

    layout = Layout(tmp_path / "cluster")
    pki = Pki(**{f.name: layout.pki / f"{f.name}.pem" for f in dataclasses.fields(Pki)})
    wanted = components.components(with_operator=True, with_node=True)
    ports = {name: 30000 + i for i, name in enumerate(components.port_names(wanted))}
    binaries = {n: tmp_path / n for n in components.NODE_BINARIES}
    ctx = Context(layout, pki, ports, binaries, node=node.NodePaths.of(layout))
    argv = components.kube_router_argv(ctx)
    flags = dict(a[2:].split("=", 1) for a in argv[1:])
    assert flags["run-firewall"] == "true"
    assert flags["run-router"] == flags["run-service-proxy"] == flags["enable-cni"] == "false"
    assert flags["health-port"] == str(ports["kube-router-health"])
    assert flags["metrics-port"] == "0"
    assert flags["kubeconfig"].endswith("kube-router.kubeconfig")
    assert flags["service-cluster-ip-range"] == components.SERVICE_CLUSTER_IP_RANGE
    names = [c.name for c in wanted]
    # After kube-proxy (which waits for the Node to be Ready: kube-router reads its IP).
    assert names.index("kube-router") == names.index("kube-proxy") + 1
    assert "kube-router" in NODE_CLIENTS
    # What its informers list and watch, or it never syncs its caches and enforces nothing.
    granted = {
        (group, resource)
        for rule in components.KUBE_ROUTER_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if "watch" in rule["verbs"]
    }
    assert {("", "pods"), ("", "namespaces"), ("networking.k8s.io", "networkpolicies")} <= granted


def test_kube_router_is_ready_only_once_it_enforces_and_comes_back_if_it_exits() -> None:
    from tools.devcluster.localcluster import components

    record = components.KUBE_ROUTER_COMPONENT
    assert record.supervised
    assert record.after_ready is components.wait_policy_engine


def test_the_fence_closes_ports_listening_on_every_address_to_other_interfaces() -> None:
    ingress = node.ingress_rules("10.96.0.0/16", closed_ports=[20244])
    drop = ["-p", "tcp", "--dport", "20244", "-j", "DROP"]
    assert drop in ingress
    # ... after the bridge and loopback returned: pods and the host still reach it.
    assert ingress.index(drop) > ingress.index(["-i", "lo", "-j", "RETURN"])
    # It listens on [::] too: closed to other interfaces over IPv6 as well.
    ingress6 = node.ingress6_rules([20244])
    assert ingress6 == [["-i", "lo", "-j", "RETURN"], drop]


def test_down_destroys_only_the_ip_sets_the_node_made(monkeypatch: Any) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        node,
        "ipsets",
        lambda: ["KUBE-DST-NEW", "KUBE-SRC-OLD", "TMP-ABC", "someone-elses", "KUBE-CLUSTER-IP"],
    )
    monkeypatch.setattr(node, "_run", lambda argv, check=True: calls.append(list(argv)))
    node.remove_new_ipsets(node.HostRecord(ipsets=["KUBE-SRC-OLD"]))
    assert calls == [["ipset", "destroy", "KUBE-DST-NEW"], ["ipset", "destroy", "TMP-ABC"]]


def test_a_chain_counts_as_hooked_only_when_the_hook_jumps_to_it(monkeypatch: Any) -> None:
    import subprocess

    listed = (
        "-P FORWARD ACCEPT\n"
        '-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" '
        "-j KUBE-ROUTER-FORWARD\n"
    )
    monkeypatch.setattr(
        node, "_run", lambda argv, check=True: subprocess.CompletedProcess(argv, 0, listed, "")
    )
    assert node.hooked("KUBE-ROUTER-FORWARD")
    assert not node.hooked("KUBE-ROUTER-INPUT")


def test_containerd_resolves_the_local_registry_under_its_own_address_over_plain_http(
    tmp_path: Path,
) -> None:
    files = node.registry_hosts_files(tmp_path, "127.0.0.1:41234")
    own = tomllib.loads(files[tmp_path / "127.0.0.1:41234" / "hosts.toml"])
    assert own["server"] == "http://127.0.0.1:41234"
    assert set(files) == {
        tmp_path / name / "hosts.toml"
        for name in ("docker.io", "registry.k8s.io", "127.0.0.1:41234")
    }
