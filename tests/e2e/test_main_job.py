"""End to end: the main job (`tools/up`, i.e. `python -m tools.devcluster.stack`) keeps the stack's
state in step with the cluster, and gives the local stack a real bucket on the control plane's
MinIO.

`down` throws the local control plane away, so the next `up` starts an empty one while the file
backend still lists every object. Run exactly as a user would — up, down, up, each its own
process, no KUBECONFIG — and check that everything exists in the new control plane afterwards
(before the fix the second up reported "unchanged" and deployed nothing).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import mainjob
from tests.e2e.mainjob import ok, printed_outputs
from tools.devcluster import localcluster, objectstore
from tools.devcluster.kube import Kube

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NS = "ray"
RAYCLUSTER = f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/ray"


@dataclass(frozen=True)
class Dirs:
    state: Path
    cluster: Path


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[Dirs]:
    found = Dirs(tmp_path / "state", tmp_path / "cluster")
    try:
        yield found
    finally:
        localcluster.down(found.cluster)


def job(action: str, dirs: Dirs) -> subprocess.CompletedProcess[str]:
    """One run of the main job on the control plane alone: these checks need no pods (the node
    has tests/e2e/test_node.py)."""
    return mainjob.job(action, dirs.state, dirs.cluster, "--control-plane-only", timeout=900)


def state_objects(state: Path) -> dict[str, str]:
    """Every Kubernetes object the stack's file-backend state lists: URN -> API path."""
    (checkpoint,) = state.glob(".pulumi/stacks/*/local.json")
    resources = json.loads(checkpoint.read_text())["checkpoint"]["latest"]["resources"]
    found = {}
    for resource in resources:
        outputs = resource.get("outputs") or {}
        meta = outputs.get("metadata") or {}
        if not (outputs.get("apiVersion") and outputs.get("kind") and meta.get("name")):
            continue  # components, providers, the stack itself
        version, kind, name = outputs["apiVersion"], outputs["kind"], meta["name"]
        # Plurals of the kinds a program like this creates (Policy -> policies).
        plural = kind.lower()[:-1] + "ies" if kind.endswith("y") else kind.lower() + "s"
        prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
        scope = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        found[resource["urn"]] = f"{prefix}{scope}/{plural}/{name}"
    return found


def kube_system_uid(kube: Kube) -> str:
    found = kube.get("/api/v1/namespaces/kube-system")
    assert found is not None
    return str(found["metadata"]["uid"])


def test_up_down_up_deploys_everything_into_the_new_control_plane(dirs: Dirs) -> None:
    ok(job("up", dirs))
    first = Kube(localcluster.kubeconfig(dirs.cluster))
    first_cluster = kube_system_uid(first)
    first_raycluster = first.get(RAYCLUSTER)
    assert first_raycluster is not None
    deployed = state_objects(dirs.state)
    assert RAYCLUSTER in deployed.values() and len(deployed) >= 10, deployed
    # The state names no kubeconfig (path or contents) of this control plane: the provider
    # resolves $KUBECONFIG at run time, so the refresh against the next one can parse it.
    (checkpoint,) = dirs.state.glob(".pulumi/stacks/*/local.json")
    resources = json.loads(checkpoint.read_text())["checkpoint"]["latest"]["resources"]
    providers = [r for r in resources if r["type"] == "pulumi:providers:kubernetes"]
    assert providers
    assert not any((p.get("inputs") or {}).get("kubeconfig") for p in providers), providers
    assert str(dirs.cluster) not in json.dumps(providers)

    ok(job("down", dirs))
    assert not localcluster.status(dirs.cluster).recorded

    second_run = ok(job("up", dirs))
    kube = Kube(localcluster.kubeconfig(dirs.cluster))
    assert kube_system_uid(kube) != first_cluster  # really a new control plane
    # The state lists the same resources as after the first up (the refresh dropped nothing for
    # good; auto-named objects may have new names) and every one exists in the new cluster.
    redeployed = state_objects(dirs.state)
    assert set(redeployed) == set(deployed)
    missing = [urn for urn, path in redeployed.items() if kube.get(path) is None]
    assert missing == []
    raycluster = kube.get(RAYCLUSTER)
    assert raycluster is not None
    assert raycluster["metadata"]["uid"] != first_raycluster["metadata"]["uid"]
    assert raycluster["spec"]["rayVersion"] == first_raycluster["spec"]["rayVersion"]
    assert "refreshing it first" in second_run.stderr  # and says why it refreshed
    outputs = printed_outputs(second_run.stdout)
    assert outputs["namespace"] == NS
    assert outputs["rayClusterName"] == "ray"


def minio_processes(cluster: Path) -> list[int]:
    """PIDs of live processes serving MinIO data under `cluster`."""
    data = str(cluster / "minio")
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = entry.read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[:1] and Path(argv[0]).name == objectstore.MINIO and data in argv:
            found.append(int(entry.parent.name))
    return found


def test_up_gives_the_local_stack_a_real_bucket_and_down_stops_it(dirs: Dirs) -> None:
    run = ok(job("up", dirs))
    store = localcluster.object_store(dirs.cluster)
    assert store.endpoint.startswith(f"http://{localcluster.LOOPBACK}:")
    assert store.bucket == localcluster.BUCKET == "ray"
    assert (dirs.cluster / "objectstore.json").stat().st_mode & 0o777 == 0o600
    status = localcluster.status(dirs.cluster)
    assert [c.healthy for c in status.components if c.name == localcluster.MINIO] == [True]

    # The stack exports the bucket like the cloud stacks (prefix: the stack's name).
    outputs = printed_outputs(run.stdout)
    assert outputs["bucketUri"] == "s3://ray/local"
    assert outputs["objectStoreEndpoint"] == store.endpoint

    # Every Ray container reaches that MinIO, with the credentials from the cluster's Secret.
    kube = Kube(localcluster.kubeconfig(dirs.cluster))
    raycluster = kube.get(RAYCLUSTER)
    assert raycluster is not None
    spec = raycluster["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]
    for pod in pods:
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["AWS_ENDPOINT_URL_S3"]["value"] == store.endpoint
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
            "ray-object-store"
        )
    secret = kube.get(f"/api/v1/namespaces/{NS}/secrets/ray-object-store")
    assert secret is not None
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "AWS_ACCESS_KEY_ID": store.access_key,
        "AWS_SECRET_ACCESS_KEY": store.secret_key,
    }

    # The secret key is a Pulumi secret: encrypted in the work dir's stack file and the state,
    # and never written into the repository's stack file.
    work_stack_file = (dirs.state / "project" / "Pulumi.local.yaml").read_text()
    assert "secure:" in work_stack_file and store.secret_key not in work_stack_file
    assert store.secret_key not in (ROOT / "Pulumi.local.yaml").read_text()
    (checkpoint,) = dirs.state.glob(".pulumi/stacks/*/local.json")
    assert store.secret_key not in checkpoint.read_text()

    # MinIO answers on that endpoint, with the bucket there, to boto3 with those credentials.
    s3 = objectstore.s3_client(store.endpoint, store.credentials, store.region)
    s3.head_bucket(Bucket="ray")
    s3.put_object(Bucket="ray", Key="local/probe.txt", Body=b"ok")
    assert s3.get_object(Bucket="ray", Key="local/probe.txt")["Body"].read() == b"ok"
    assert minio_processes(dirs.cluster)

    # `tools/up down` stops it with the rest of the control plane.
    ok(job("down", dirs))
    assert not localcluster.status(dirs.cluster).recorded
    assert minio_processes(dirs.cluster) == []
    assert not (dirs.cluster / "objectstore.json").exists()


def _as_if_killed_creating(checkpoint: Path, kind: str) -> str:
    """Rewrite the file backend's checkpoint as a run killed while creating the one `kind`
    resource leaves it: that create pending, it and what depends on it unknown to the state
    (never registered). Returns the pending resource's URN."""
    data = json.loads(checkpoint.read_text())
    latest = data["checkpoint"]["latest"]
    resources = latest["resources"]
    (target,) = [r for r in resources if r["type"] == kind]
    gone = {target["urn"]}
    changed = True
    while changed:  # everything that depends on a dropped resource was not created either
        changed = False
        for r in resources:
            needs = set(r.get("dependencies") or []) | {r.get("parent")}
            for deps in (r.get("propertyDependencies") or {}).values():
                needs |= set(deps)
            if r["urn"] not in gone and needs & gone:
                gone.add(r["urn"])
                changed = True
    latest["resources"] = [r for r in resources if r["urn"] not in gone]
    latest["pending_operations"] = [{"resource": target, "type": "creating"}]
    checkpoint.write_text(json.dumps(data))
    return str(target["urn"])


def test_a_claim_whose_create_was_killed_is_made_again_on_the_same_volume(dirs: Dirs) -> None:
    """The killed run's claim was already bound when it died: recovery deletes it (the state
    does not know it), which leaves the retained volume Released, naming the deleted claim. The
    next up's claim must bind to that volume again, not wait for it until the provider's timeout
    (found by the faults tier in CI: `up` failed after 5 minutes). Twice: the second time the
    claim is already gone when the up starts (a recovery killed between its delete and its
    patch, or a claim deleted by hand): the volume is found from the checkpoint."""
    ok(job("up", dirs))
    kube = Kube(localcluster.kubeconfig(dirs.cluster))
    claim_path = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/ray-shared"
    (checkpoint,) = dirs.state.glob(".pulumi/stacks/*/local.json")
    for claim_gone in (False, True):
        claim = kube.get(claim_path)
        assert claim is not None and claim["status"]["phase"] == "Bound"
        volume = claim["spec"]["volumeName"]
        _as_if_killed_creating(checkpoint, "kubernetes:core/v1:PersistentVolumeClaim")
        if claim_gone:
            kube.delete(claim)
            kube.wait("the claim to go", lambda: kube.get(claim_path) is None)

        run = ok(job("up", dirs))
        if not claim_gone:
            assert "deleted PersistentVolumeClaim ray/ray-shared (its create never" in run.stderr
        assert f"PersistentVolume {volume} is bindable again" in run.stderr
        again = kube.get(claim_path)
        assert again is not None and again["metadata"]["uid"] != claim["metadata"]["uid"]
        assert again["status"]["phase"] == "Bound" and again["spec"]["volumeName"] == volume
        pv = kube.get(f"/api/v1/persistentvolumes/{volume}")
        assert pv is not None and pv["spec"]["claimRef"]["uid"] == again["metadata"]["uid"]
        # One volume, and the state knows every object again.
        volumes = [v["metadata"]["name"] for v in kube.items("/api/v1/persistentvolumes")]
        assert volumes == [volume]
        objects = state_objects(dirs.state)
        assert [urn for urn, path in objects.items() if kube.get(path) is None] == []
        assert any(urn.endswith("::shared-pvc") for urn in objects)


def test_a_crd_release_whose_install_was_killed_is_installed_by_the_next_up(dirs: Dirs) -> None:
    """A hard kill during the CRDs' Helm install leaves Helm's record of it (pending-install, or
    deployed when the kill came just after Helm's last write), and Helm refuses to install the
    name again ("cannot re-use a name that is still in use"): the next up deletes the records of
    the release the state never recorded, and the install takes the CRDs over (they carry Helm's
    ownership annotations) without deleting them. Run once as each."""
    ok(job("up", dirs))
    kube = Kube(localcluster.kubeconfig(dirs.cluster))
    records = f"/api/v1/namespaces/{NS}/secrets?labelSelector=owner%3Dhelm%2Cname%3Dkuberay-crds"
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayclusters.ray.io"
    crd, raycluster = kube.get(crd_path), kube.get(RAYCLUSTER)
    assert crd is not None and raycluster is not None
    (checkpoint,) = dirs.state.glob(".pulumi/stacks/*/local.json")
    for status in ("pending-install", "deployed"):
        (record,) = kube.items(records)
        # As the kill leaves it: the release's create pending in the state, its record there.
        _as_if_killed_creating(checkpoint, "kubernetes:helm.sh/v3:Release")
        meta = {"name": record["metadata"]["name"], "namespace": NS}
        labels = {"status": status}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "labels": labels}}
        kube.apply(secret, manager="helm-killed")

        run = ok(job("up", dirs))
        assert "deleted Helm release ray/kuberay-crds's records of the install" in run.stderr
        (again,) = kube.items(records)
        assert again["metadata"]["labels"]["status"] == "deployed"
        assert again["metadata"]["uid"] != record["metadata"]["uid"], status
        # The CRDs were taken over, not deleted and made again (that takes every RayCluster).
        after, still = kube.get(crd_path), kube.get(RAYCLUSTER)
        assert after is not None and after["metadata"]["uid"] == crd["metadata"]["uid"]
        assert still is not None and still["metadata"]["uid"] == raycluster["metadata"]["uid"]
