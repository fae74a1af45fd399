"""The real program for Pulumi.gke-dev.yaml and Pulumi.gke-prod.yaml under mocks (GCP +
Kubernetes): lookups, bucket, Workload Identity, GCS FUSE, Filestore, options, bad settings."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra import kuberay_release
from infra.clouds.gcp import lookup
from infra.settings import SettingsError
from tests.conftest import fresh_interpreter
from tools.testing.pulumi_mocks import (
    ProgramRun,
    RecordingMonitor,
    Registration,
    run_program,
    stack_config,
)
from tools.testing.pulumi_mocks.gcp import (
    FILESTORE_IP,
    PROJECT_NUMBERS,
    GkeMocks,
    autoname,
    gke_cluster,
)

BUCKET = "gcp:storage/bucket:Bucket"
FILESTORE = "gcp:filestore/instance:Instance"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
RAYCLUSTER = "kubernetes:ray.io/v1:RayCluster"
KSA = "kubernetes:core/v1:ServiceAccount"
_RUNS: dict[str, ProgramRun] = {}


def gke_run_of(stack: str) -> ProgramRun:
    if stack not in _RUNS:
        _RUNS[stack] = run_program(stack, mocks=GkeMocks())
    return _RUNS[stack]


@pytest.fixture(params=["gke-dev", "gke-prod"])
def gke_run(request: pytest.FixtureRequest) -> Iterator[ProgramRun]:
    yield gke_run_of(request.param)


def _prod(run: ProgramRun) -> bool:
    return bool(run.outputs["mode"] == "prod")


def _project(run: ProgramRun) -> str:
    return "ml-platform-prod" if _prod(run) else "ml-platform-dev"


def _config(stack: str, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = copy.deepcopy(stack_config(stack))
    mutate(config)
    return config


def _gcp(config: dict[str, Any]) -> dict[str, Any]:
    return config["ray-platform:gcp"]  # type: ignore[no-any-return]


def _spec(run: ProgramRun) -> dict[str, Any]:
    return run.one(RAYCLUSTER).inputs["spec"]  # type: ignore[no-any-return]


def _templates(run: ProgramRun) -> list[dict[str, Any]]:
    spec = _spec(run)
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def _bucket_name(run: ProgramRun) -> str:
    return autoname(BUCKET, run.one(BUCKET).name)


def _instance_name(run: ProgramRun) -> str:
    return autoname(FILESTORE, run.one(FILESTORE).name)


def _addon(key: str, enabled: bool) -> dict[str, Any]:
    """getCluster's `addonsConfigs` with one add-on switched."""
    addons = gke_cluster("ml-dev", "us-central1", "ml-platform-dev")["addonsConfigs"]
    addons[0][key][0]["enabled"] = enabled
    return {"addonsConfigs": addons}


def _depends_on(reg: Registration, *others: Registration) -> bool:
    return all(o.urn in reg.dependencies for o in others)


# --- lookups -----------------------------------------------------------------------------------


def test_cluster_is_looked_up_from_name_location_and_project(gke_run: ProgramRun) -> None:
    project = _project(gke_run)
    name = "ml-prod" if _prod(gke_run) else "ml-dev"
    calls = [(t, a) for t, a in gke_run.calls if t.startswith("gcp:")]
    assert ("gcp:container/getCluster:getCluster", {}) not in calls
    clusters = [a for t, a in calls if t == "gcp:container/getCluster:getCluster"]
    assert clusters == [{"name": name, "location": "us-central1", "project": project}]
    assert [a for t, a in calls if t == "gcp:organizations/getProject:getProject"] == [
        {"projectId": project}
    ]
    agent = [a for t, a in calls if t.startswith("gcp:storage/getProjectServiceAccount")]
    # The GCS service agent is only needed to grant it the prod bucket key.
    assert agent == ([{"project": project}] if _prod(gke_run) else [])


def test_gke_stack_uses_no_aws_and_a_gke_kubeconfig(gke_run: ProgramRun) -> None:
    assert not [r for r in gke_run.registrations if r.type.startswith("aws:")]
    provider = gke_run.one("pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://34.118.12.34"
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"


def test_gcp_labels_follow_gcp_rules(gke_run: ProgramRun) -> None:
    key = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
    value = re.compile(r"^[a-z0-9_-]{0,63}$")
    labelled = [
        r for r in gke_run.registrations if r.type.startswith("gcp:") and "labels" in r.inputs
    ]
    assert {r.type for r in labelled} >= {BUCKET, FILESTORE}
    for reg in labelled:
        labels = reg.inputs["labels"]
        assert labels["ray-platform_stack"] == ("gke-prod" if _prod(gke_run) else "gke-dev")
        assert all(key.match(k) and value.match(v) for k, v in labels.items()), labels


# --- bucket ------------------------------------------------------------------------------------


def test_bucket_is_private_versioned_soft_deleting(gke_run: ProgramRun) -> None:
    bucket = gke_run.one(BUCKET).inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["softDeletePolicy"]["retentionDurationSeconds"] == 7 * 86_400
    assert bucket["location"] == "us-central1"
    days = 30 if _prod(gke_run) else 7
    assert bucket["lifecycleRules"][:2] == [
        {
            "action": {"type": "Delete"},
            "condition": {"daysSinceNoncurrentTime": days, "withState": "ARCHIVED"},
        },
        {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 7}},
    ]


def test_working_dir_zips_expire_under_the_stacks_prefix(gke_run: ProgramRun) -> None:
    """GCS's side: live zips under <prefix>/working_dirs/ are deleted after
    workingDirExpiryDays (default 30); versioning keeps them noncurrent, which the noncurrent
    rule then removes."""
    from contract.outputs import WORKING_DIRS

    rules = gke_run.one(BUCKET).inputs["lifecycleRules"]
    prefix = f"{'ray/prod' if _prod(gke_run) else 'ray/dev'}/{WORKING_DIRS}/"
    assert {
        "action": {"type": "Delete"},
        "condition": {"age": 30, "matchesPrefixes": [prefix], "withState": "LIVE"},
    } in rules
    assert gke_run.outputs["bucketUri"].endswith(prefix.removesuffix(f"/{WORKING_DIRS}/"))
    noncurrent = [r for r in rules if "daysSinceNoncurrentTime" in r["condition"]]
    assert len(noncurrent) == 1


def test_working_dir_expiry_is_a_setting_on_gcs() -> None:
    def week(c: dict[str, Any]) -> None:
        c["ray-platform:storage"]["artifactBucket"]["workingDirExpiryDays"] = 7

    run = run_program("gke-dev", _config("gke-dev", week), mocks=GkeMocks())
    ages = [r["condition"].get("age") for r in run.one(BUCKET).inputs["lifecycleRules"]]
    assert 7 in ages


def test_dev_bucket_is_destroyable_and_google_encrypted() -> None:
    run = gke_run_of("gke-dev")
    bucket = run.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is True
    assert "encryption" not in bucket.inputs
    assert not bucket.protect and not bucket.retain_on_delete
    assert not [r for r in run.registrations if r.type.startswith("gcp:kms")]


def test_prod_bucket_uses_a_rotating_key_granted_to_the_gcs_agent() -> None:
    run = gke_run_of("gke-prod")
    bucket = run.one(BUCKET)
    ring = run.one("gcp:kms/keyRing:KeyRing", "artifacts-keyring")
    key = run.one("gcp:kms/cryptoKey:CryptoKey", "artifacts-key")
    grant = run.one("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember", "artifacts-key-gcs-agent")
    assert ring.inputs["location"] == bucket.inputs["location"] == "us-central1"
    assert key.inputs["rotationPeriod"] == "7776000s"
    assert key.inputs["purpose"] == "ENCRYPT_DECRYPT"
    key_id = bucket.inputs["encryption"]["defaultKmsKeyName"]
    assert key_id.startswith(f"{key.inputs['keyRing']}/cryptoKeys/artifacts-key-")
    assert grant.inputs["cryptoKeyId"] == key_id
    number = PROJECT_NUMBERS["ml-platform-prod"]
    assert grant.inputs["member"] == (
        f"serviceAccount:service-{number}@gs-project-accounts.iam.gserviceaccount.com"
    )
    assert grant.inputs["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert _depends_on(bucket, grant)
    assert bucket.inputs["forceDestroy"] is False
    for reg in (bucket, ring, key, grant):
        assert reg.protect and reg.retain_on_delete, reg.name


# --- Workload Identity -------------------------------------------------------------------------


def _principal(run: ProgramRun, ksa: str) -> str:
    project = _project(run)
    return (
        f"principal://iam.googleapis.com/projects/{PROJECT_NUMBERS[project]}/locations/global/"
        f"workloadIdentityPools/{project}.svc.id.goog/subject/ns/ray/sa/{ksa}"
    )


def test_head_and_workers_have_own_ksas_bound_to_the_bucket_only(gke_run: ProgramRun) -> None:
    ksas = {r.inputs["metadata"]["name"]: r for r in gke_run.of_type(KSA)}
    assert set(ksas) == {"ray-head", "ray-worker"}
    assert all(r.inputs["metadata"]["namespace"] == "ray" for r in ksas.values())
    assert all("annotations" not in r.inputs["metadata"] for r in ksas.values())
    bucket = _bucket_name(gke_run)
    members = {r.inputs["member"]: r.inputs for r in gke_run.of_type(BUCKET_MEMBER)}
    assert set(members) == {_principal(gke_run, "ray-head"), _principal(gke_run, "ray-worker")}
    assert all(m["bucket"] == bucket for m in members.values())
    assert all(m["role"] == "roles/storage.objectUser" for m in members.values())
    # Never a project-level grant (the Artifact Registry agent's ServiceIdentity is not one).
    assert not [r for r in gke_run.registrations if r.type.startswith("gcp:projects/iAM")]
    spec = _spec(gke_run)
    assert spec["headGroupSpec"]["template"]["spec"]["serviceAccountName"] == "ray-head"
    assert all(
        g["template"]["spec"]["serviceAccountName"] == "ray-worker"
        for g in spec["workerGroupSpecs"]
    )
    assert json.loads(gke_run.outputs["workloadIdentityMembers"]) == {
        "ray-head": _principal(gke_run, "ray-head"),
        "ray-worker": _principal(gke_run, "ray-worker"),
    }


def test_ray_waits_for_its_identities(gke_run: ProgramRun) -> None:
    # Depending on a component means depending on its children: the KSAs and the bucket grants.
    cluster = gke_run.one(RAYCLUSTER)
    assert _depends_on(cluster, *gke_run.of_type(KSA), *gke_run.of_type(BUCKET_MEMBER))


def test_ray_pods_land_on_metadata_server_nodes_on_standard(gke_run: ProgramRun) -> None:
    for template in _templates(gke_run):
        assert template["spec"]["nodeSelector"]["iam.gke.io/gke-metadata-server-enabled"] == "true"


def test_autopilot_needs_no_metadata_server_selector() -> None:
    run = run_program("gke-dev", mocks=GkeMocks(enableAutopilot=True))
    for template in _templates(run):
        assert "iam.gke.io/gke-metadata-server-enabled" not in template["spec"].get(
            "nodeSelector", {}
        )


def test_narrower_bucket_role_by_setting() -> None:
    config = _config(
        "gke-dev",
        lambda c: _gcp(c).update(
            workloadIdentity={"bucketRole": "roles/storage.objectViewer"}, gcsFuse={}
        ),
    )
    run = run_program("gke-dev", config, mocks=GkeMocks())
    assert {r.inputs["role"] for r in run.of_type(BUCKET_MEMBER)} == {"roles/storage.objectViewer"}


def test_google_service_account_path_by_setting() -> None:
    config = _config(
        "gke-dev", lambda c: _gcp(c).update(workloadIdentity={"googleServiceAccount": True})
    )
    run = run_program("gke-dev", config, mocks=GkeMocks())
    gsa = run.one("gcp:serviceaccount/account:Account").inputs
    email = "ray-gke-dev@ml-platform-dev.iam.gserviceaccount.com"
    assert gsa["accountId"] == "ray-gke-dev"
    users = [
        r.inputs
        for r in run.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        if r.inputs["role"] == "roles/iam.workloadIdentityUser"
    ]
    assert sorted(u["member"] for u in users) == [
        "serviceAccount:ml-platform-dev.svc.id.goog[ray/ray-head]",
        "serviceAccount:ml-platform-dev.svc.id.goog[ray/ray-worker]",
    ]
    assert [r.inputs["member"] for r in run.of_type(BUCKET_MEMBER)] == [f"serviceAccount:{email}"]
    for ksa in run.of_type(KSA):
        assert ksa.inputs["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": email}
    assert run.outputs["googleServiceAccount"] == email


# --- GCS FUSE ----------------------------------------------------------------------------------


def test_bucket_prefix_is_mounted_on_every_ray_pod(gke_run: ProgramRun) -> None:
    bucket = _bucket_name(gke_run)
    prefix = "ray/prod" if _prod(gke_run) else "ray/dev"
    for template in _templates(gke_run):
        assert template["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        csi = volumes["gcs-fuse"]["csi"]
        assert csi["driver"] == "gcsfuse.csi.storage.gke.io"
        assert csi["volumeAttributes"]["bucketName"] == bucket
        assert csi["volumeAttributes"]["mountOptions"] == (
            f"uid=1000,gid=100,implicit-dirs,only-dir={prefix}"
        )
        for container in template["spec"]["containers"]:
            assert {"name": "gcs-fuse", "mountPath": "/mnt/bucket"} in container["volumeMounts"]
    assert gke_run.outputs["bucketMountPath"] == "/mnt/bucket"


def test_prod_fuse_caches_and_sidecar_from_settings() -> None:
    for template in _templates(gke_run_of("gke-prod")):
        attributes = next(v for v in template["spec"]["volumes"] if v["name"] == "gcs-fuse")["csi"][
            "volumeAttributes"
        ]
        assert attributes["fileCacheCapacity"] == "50Gi"
        assert attributes["metadataCacheTTLSeconds"] == "600"
        assert template["metadata"]["annotations"]["gke-gcsfuse/ephemeral-storage-limit"] == "60Gi"


def test_fuse_off_mounts_no_bucket() -> None:
    config = _config("gke-dev", lambda c: _gcp(c).update(gcsFuse={"enabled": False}))
    run = run_program("gke-dev", config, mocks=GkeMocks())
    for template in _templates(run):
        assert "gke-gcsfuse/volumes" not in template.get("metadata", {}).get("annotations", {})
        assert all("csi" not in v for v in template["spec"]["volumes"])
    assert "bucketMountPath" not in run.outputs


# --- Filestore ---------------------------------------------------------------------------------


def test_filestore_on_the_cluster_network_with_tier_and_capacity(gke_run: ProgramRun) -> None:
    fs = gke_run.one(FILESTORE).inputs
    tier, capacity = ("BASIC_SSD", 2560) if _prod(gke_run) else ("BASIC_HDD", 1024)
    assert fs["tier"] == tier
    assert fs["fileShares"] == {"name": "ray", "capacityGb": capacity}
    # Regional cluster, zonal tier: the zone the stack names.
    assert fs["location"] == "us-central1-a"
    assert fs["networks"][0]["network"] == "ml-vpc"
    assert fs["networks"][0]["connectMode"] == "DIRECT_PEERING"
    assert gke_run.outputs["fileSystemId"] == (
        f"projects/{_project(gke_run)}/locations/us-central1-a/instances/{_instance_name(gke_run)}"
    )
    assert gke_run.outputs["sharedMountPath"] == "/mnt/shared"


def test_prod_filestore_is_protected_and_retained() -> None:
    prod = gke_run_of("gke-prod").one(FILESTORE)
    assert prod.protect and prod.retain_on_delete
    assert prod.inputs["deletionProtectionEnabled"] is True
    dev = gke_run_of("gke-dev").one(FILESTORE)
    assert not dev.protect and not dev.retain_on_delete
    assert dev.inputs["deletionProtectionEnabled"] is False


VAULT = "gcp:backupdisasterrecovery/backupVault:BackupVault"
PLAN = "gcp:backupdisasterrecovery/backupPlan:BackupPlan"
ASSOCIATION = "gcp:backupdisasterrecovery/backupPlanAssociation:BackupPlanAssociation"


def test_prod_filestore_is_backed_up_daily_with_an_enforced_retention() -> None:
    """gke-prod's side of AWS Backup: a Backup and DR vault and daily plan in the instance's
    region, associated with the instance, each kept like it (protect, retain_on_delete)."""
    run = gke_run_of("gke-prod")
    vault, plan, association = run.one(VAULT), run.one(PLAN), run.one(ASSOCIATION)
    instance = run.one(FILESTORE)
    for reg in (vault, plan, association):
        assert reg.protect and reg.retain_on_delete, reg.type
        assert reg.inputs["location"] == "us-central1"
        assert reg.inputs["project"] == "ml-platform-prod"
    ids = "ray-gke-prod-shared-fs"
    assert vault.inputs["backupVaultId"] == ids
    # Backups cannot be deleted before the retention is over, by anyone.
    assert vault.inputs["backupMinimumEnforcedRetentionDuration"] == f"{35 * 86_400}s"
    assert plan.inputs["resourceType"] == "file.googleapis.com/Instance"
    vault_id = f"projects/ml-platform-prod/locations/us-central1/backupVaults/{ids}"
    assert plan.inputs["backupVault"] == vault_id
    assert plan.inputs["backupRules"] == [
        {
            "ruleId": "daily",
            "backupRetentionDays": 35,
            "standardSchedule": {
                "recurrenceType": "DAILY",
                "timeZone": "UTC",
                "backupWindow": {"startHourOfDay": 2, "endHourOfDay": 8},
            },
        }
    ]
    assert association.inputs["resourceType"] == "file.googleapis.com/Instance"
    assert association.inputs["resource"] == (
        f"projects/ml-platform-prod/locations/us-central1-a/instances/{_instance_name(run)}"
    )
    assert association.inputs["backupPlan"] == (
        f"projects/ml-platform-prod/locations/us-central1/backupPlans/{ids}"
    )
    assert instance.urn in association.dependencies
    assert run.outputs["fileSystemBackupVault"] == vault_id


def test_backup_retention_and_window_are_settings_and_dev_has_no_backups() -> None:
    def longer(c: dict[str, Any]) -> None:
        _gcp(c)["filestore"]["backup"] = {"retentionDays": 90, "windowStartHourUtc": 21}

    run = run_program("gke-prod", _config("gke-prod", longer), mocks=GkeMocks())
    rule = run.one(PLAN).inputs["backupRules"][0]
    assert rule["backupRetentionDays"] == 90
    assert rule["standardSchedule"]["backupWindow"] == {"startHourOfDay": 21, "endHourOfDay": 24}
    assert run.one(VAULT).inputs["backupMinimumEnforcedRetentionDuration"] == f"{90 * 86_400}s"
    dev = gke_run_of("gke-dev")
    assert not [r for r in dev.registrations if r.type.startswith("gcp:backupdisasterrecovery")]
    assert "fileSystemBackupVault" not in dev.outputs


def test_shared_volume_is_a_static_rwx_retained_filestore_pv(gke_run: ProgramRun) -> None:
    fs = gke_run.one(FILESTORE).inputs
    pv = gke_run.one("kubernetes:core/v1:PersistentVolume").inputs["spec"]
    assert pv["csi"] == {
        "driver": "filestore.csi.storage.gke.io",
        "volumeHandle": f"modeInstance/us-central1-a/{_instance_name(gke_run)}/ray",
        "volumeAttributes": {"ip": FILESTORE_IP, "volume": "ray"},
    }
    assert pv["accessModes"] == ["ReadWriteMany"]
    assert pv["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["capacity"]["storage"] == f"{int(fs['fileShares']['capacityGb'])}Gi"
    pvc = gke_run.one("kubernetes:core/v1:PersistentVolumeClaim").inputs
    assert pvc["metadata"] == {
        "name": "ray-shared",
        "namespace": "ray",
        "labels": {
            "app.kubernetes.io/managed-by": "pulumi",
            "ray-platform/stack": "gke-prod" if _prod(gke_run) else "gke-dev",
        },
    }
    assert (
        pvc["metadata"]["labels"]
        == gke_run.one("kubernetes:core/v1:PersistentVolume").inputs["metadata"]["labels"]
    )
    head = _spec(gke_run)["headGroupSpec"]["template"]["spec"]
    assert {"name": "shared", "persistentVolumeClaim": {"claimName": "ray-shared"}} in head[
        "volumes"
    ]


def test_without_the_filestore_driver_the_pv_mounts_nfs() -> None:
    run = run_program("gke-dev", mocks=GkeMocks(**_addon("gcpFilestoreCsiDriverConfigs", False)))
    pv = run.one("kubernetes:core/v1:PersistentVolume").inputs["spec"]
    assert pv["nfs"] == {"server": FILESTORE_IP, "path": "/ray"}
    assert "csi" not in pv


def test_zonal_cluster_puts_filestore_in_its_zone() -> None:
    def zonal(c: dict[str, Any]) -> None:
        _gcp(c).update(location="us-central1-f")
        del _gcp(c)["filestore"]["zone"]

    run = run_program("gke-dev", _config("gke-dev", zonal), mocks=GkeMocks())
    assert run.one(FILESTORE).inputs["location"] == "us-central1-f"
    assert run.one(BUCKET).inputs["location"] == "us-central1"


@pytest.mark.parametrize("stack", ["gke-dev", "gke-prod"])
@pytest.mark.parametrize("zone", ["us-central1-c", None], ids=["zone-set", "zone-unset"])
def test_a_new_node_zone_never_moves_the_filestore_instance(stack: str, zone: str | None) -> None:
    """A Filestore instance cannot move: a changed location replaces it (dev loses the shared
    file system, prod's `up` fails on protect). Adding a node zone to the cluster (outside the
    settings) must change no input of the instance: on a regional cluster the zone is a setting,
    used as is, and without it the program refuses, naming the cluster's zones."""

    def set_zone(c: dict[str, Any]) -> None:
        if zone is None:
            del _gcp(c)["filestore"]["zone"]
        else:
            _gcp(c)["filestore"]["zone"] = zone

    config = _config(stack, set_zone)
    runs = []
    for zones in (
        ["us-central1-c", "us-central1-f"],
        ["us-central1-a", "us-central1-c", "us-central1-f"],
    ):
        monitor = RecordingMonitor(GkeMocks(nodeLocations=zones))
        try:
            runs.append(run_program(stack, config, mocks=monitor.mocks, monitor=monitor))  # type: ignore[arg-type]
        except SettingsError as err:
            assert str(err) == (
                "ray-platform:gcp.filestore.zone (null) is required for the "
                f"{_gcp(config)['filestore']['tier']} tier on regional cluster "
                f"{_gcp(config)['clusterName']}: name the instance's zone (the cluster's node "
                f"zones: {', '.join(zones)}); it is used as is, and changing it replaces the "
                "instance"
            )
            assert monitor.registered_resources == []
    if zone is None:
        assert runs == []
        return
    before, after = (run.one(FILESTORE).inputs for run in runs)
    assert before == after
    assert after["location"] == zone
    handles = {
        run.one("kubernetes:core/v1:PersistentVolume").inputs["spec"]["csi"]["volumeHandle"]
        for run in runs
    }
    assert len(handles) == 1


def test_regional_tier_takes_no_zone() -> None:
    def regional(c: dict[str, Any]) -> None:
        _gcp(c)["filestore"]["tier"] = "REGIONAL"

    with pytest.raises(
        SettingsError,
        match=r"gcp\.filestore\.zone \(\"us-central1-a\"\) is not used by the REGIONAL tier",
    ):
        run_program("gke-dev", _config("gke-dev", regional), mocks=GkeMocks())


def test_shared_vpc_network_is_named_in_full() -> None:
    network = "projects/host-project-123/global/networks/shared-vpc"
    run = run_program("gke-dev", mocks=GkeMocks(network=network))
    net = run.one(FILESTORE).inputs["networks"][0]
    assert net["network"] == network
    assert net["connectMode"] == "PRIVATE_SERVICE_ACCESS"


def test_share_root_is_handed_to_ray_by_a_root_job_outside_rays_namespace(
    gke_run: ProgramRun,
) -> None:
    ns = {
        r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
        for r in gke_run.of_type("kubernetes:core/v1:Namespace")
    }
    assert ns["ray-prep"]["pod-security.kubernetes.io/enforce"] == "baseline"
    job = gke_run.one("kubernetes:batch/v1:Job").inputs
    assert job["metadata"]["namespace"] == "ray-prep"
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "shared", "nfs": {"server": FILESTORE_IP, "path": "/ray"}}]
    container = pod["containers"][0]
    assert "chown 1000:100 /shared" in container["command"][-1]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Nothing in Ray's namespace runs as root; Ray pods wait until the share is writable.
    for template in _templates(gke_run):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c.get("securityContext", {}).get("runAsUser", 1000) != 0
        assert spec["initContainers"][0]["name"] == "wait-for-shared-dir"
    pvc = gke_run.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert _depends_on(gke_run.one(RAYCLUSTER), pvc)


def test_only_the_heads_ksa_mounts_a_kubernetes_token(gke_run: ProgramRun) -> None:
    ksas = {r.inputs["metadata"]["name"]: r.inputs for r in gke_run.of_type(KSA)}
    assert ksas["ray-head"]["automountServiceAccountToken"] is True
    assert ksas["ray-worker"]["automountServiceAccountToken"] is False


def test_outputs(gke_run: ProgramRun) -> None:
    out = gke_run.outputs
    bucket = _bucket_name(gke_run)
    prefix = "ray/prod" if _prod(gke_run) else "ray/dev"
    assert out["cloud"] == "gcp"
    assert out["bucketUri"] == f"gs://{bucket}/{prefix}"
    assert out["gcpProject"] == _project(gke_run)
    assert "irsaRoleArn" not in out
    env = _spec(gke_run)["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RAY_PLATFORM_BUCKET_URI", "value": out["bucketUri"]} in env
    assert {"name": "GOOGLE_CLOUD_PROJECT", "value": _project(gke_run)} in env


# --- bad settings: one line, before any resource ------------------------------------------------


def _without_project(c: dict[str, Any]) -> None:
    del c["gcp:project"]


def _without_location(c: dict[str, Any]) -> None:
    del _gcp(c)["location"]


def _small_ssd(c: dict[str, Any]) -> None:
    _gcp(c)["filestore"] = {"tier": "BASIC_SSD", "capacityGiB": 2048}


def _small_hdd(c: dict[str, Any]) -> None:
    _gcp(c)["filestore"] = {"tier": "BASIC_HDD", "capacityGiB": 512}


def _helm(c: dict[str, Any]) -> None:
    c.setdefault("ray-platform:operator", {})["install"] = "helm"


def _ray_addon() -> dict[str, Any]:
    return _addon("rayOperatorConfigs", True)


def _no_fuse_driver() -> dict[str, Any]:
    return _addon("gcsFuseCsiDriverConfigs", False)


@pytest.mark.parametrize(
    ("mutate", "cluster", "expected"),
    [
        (
            _without_project,
            {},
            "gcp:project is required for cloud gcp (pulumi config set gcp:project",
        ),
        (_without_location, {}, "ray-platform:gcp.location is required but not set"),
        (
            _small_ssd,
            {},
            "ray-platform:gcp.filestore.capacityGiB (2048) is below the BASIC_SSD "
            "minimum of 2560 GiB",
        ),
        (
            _small_hdd,
            {},
            "ray-platform:gcp.filestore.capacityGiB (512) is below the BASIC_HDD "
            "minimum of 1024 GiB",
        ),
        (
            None,
            _no_fuse_driver(),
            "ray-platform:gcp.gcsFuse.enabled (true) needs the GCS FUSE CSI driver, which cluster "
            "ml-dev does not run; enable it: gcloud container clusters update ml-dev --location "
            "us-central1 --update-addons GcsFuseCsiDriver=ENABLED",
        ),
        (
            None,
            {"masterVersion": "1.28.15-gke.1480000"},
            "ray-platform:gcp.gcsFuse.enabled (true) needs GKE 1.29.3-gke.1093000 or later",
        ),
        (
            None,
            # The control plane is new enough, one node pool lags it.
            {
                "nodePools": [
                    {"name": "default-pool", "version": "1.33.5-gke.1308000"},
                    {"name": "old-gpus", "version": "1.28.15-gke.1480000"},
                ]
            },
            "ray-platform:gcp.gcsFuse.enabled (true) needs GKE 1.29.3-gke.1093000 or later (the "
            "FUSE native sidecar, so KubeRay's wait-gcs-ready init container can mount the "
            "bucket); cluster ml-dev runs 1.28.15-gke.1480000 (control plane or a node pool)",
        ),
        (
            lambda c: c["ray-platform:gcp"]["filestore"].update(capacityGiB=70_000),
            {},
            "ray-platform:gcp.filestore.capacityGiB (70000) is above the BASIC_HDD maximum",
        ),
        (
            None,
            {"workloadIdentityConfigs": []},
            'ray-platform:gcp.clusterName ("ml-dev") has Workload Identity off, which Ray\'s '
            "bucket access needs; turn it on: gcloud container clusters update ml-dev "
            "--location us-central1 --workload-pool=ml-platform-dev.svc.id.goog",
        ),
        (
            _helm,
            _ray_addon(),
            'ray-platform:operator.install ("helm") would install a second KubeRay: cluster '
            "ml-dev runs the GKE Ray operator add-on, which owns KubeRay and its CRDs; set "
            "operator.install: managed",
        ),
    ],
    ids=[
        "missing-project",
        "missing-location",
        "ssd-below-minimum",
        "hdd-below-minimum",
        "fuse-without-driver",
        "fuse-without-native-sidecar",
        "fuse-with-an-old-node-pool",
        "hdd-above-maximum",
        "workload-identity-off",
        "helm-on-ray-addon-cluster",
    ],
)
def test_gcp_bad_setting_stops_before_any_resource(
    mutate: Callable[[dict[str, Any]], None] | None, cluster: dict[str, Any], expected: str
) -> None:
    config = _config("gke-dev", mutate or (lambda c: None))
    mocks = GkeMocks(**cluster)
    monitor = RecordingMonitor(mocks)
    with pytest.raises(SettingsError) as info:
        run_program("gke-dev", config, mocks=mocks, monitor=monitor)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message
    assert monitor.registered_resources == []


def test_a_cluster_lacking_two_things_says_both_in_one_run() -> None:
    """The adapter raises every problem gke_problems finds, before any resource, not the first."""
    mocks = GkeMocks(workloadIdentityConfigs=[], **_no_fuse_driver())
    monitor = RecordingMonitor(mocks)
    with pytest.raises(SettingsError) as info:
        run_program("gke-dev", mocks=mocks, monitor=monitor)
    # Joined on one line as the settings loader joins its problems.
    message = str(info.value)
    assert message.startswith('ray-platform:gcp.clusterName ("ml-dev") has Workload Identity off')
    assert "; ray-platform:gcp.gcsFuse.enabled (true) needs the GCS FUSE CSI driver" in message
    assert "\n" not in message
    assert monitor.registered_resources == []


def _live_crd(monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any] | Exception) -> list[str]:
    """The cluster's API server, as the managed-operator check reads it: `answer` is the
    RayCluster CRD it serves (or the error reading it raises). Returns the clusters read."""
    read: list[str] = []

    def raycluster_crd(cluster: Any) -> dict[str, Any]:
        read.append(cluster.name)
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)

    monkeypatch.setattr("infra.clouds.gcp.lookup.raycluster_crd", raycluster_crd)
    return read


def _managed(c: dict[str, Any]) -> None:
    c.setdefault("ray-platform:operator", {}).update(install="managed")


def test_ray_addon_cluster_with_managed_operator_installs_no_kuberay_and_no_crds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The GKE add-on owns KubeRay and its CRDs: applying ours would fight its field manager,
    and a dev destroy deleting them would delete every RayCluster in the cluster."""
    read = _live_crd(monkeypatch, kuberay_release.crd("1.6.1"))
    run = run_program("gke-dev", _config("gke-dev", _managed), mocks=GkeMocks(**_ray_addon()))
    assert read == ["ml-dev"]
    assert not run.of_type("kubernetes:helm.sh/v3:Release")  # neither the operator nor the CRDs
    assert run.one("kubernetes:ray.io/v1:RayCluster")


def _without(crd: dict[str, Any], *fields: str) -> dict[str, Any]:
    crd = copy.deepcopy(crd)
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        for name in fields:
            spec.pop(name, None)
    return crd


@pytest.mark.parametrize(
    ("crd", "auth", "lacks"),
    [
        # A real older release: KubeRay 1.5.1 has authOptions, not upgradeStrategy.
        (lambda: kuberay_release.crd("1.5.1"), "token", "spec.upgradeStrategy.type"),
        (
            lambda: _without(kuberay_release.crd("1.6.1"), "authOptions", "upgradeStrategy"),
            "token",
            "spec.upgradeStrategy.type, spec.authOptions.mode",
        ),
    ],
    ids=["kuberay-1.5.1", "neither-field"],
)
def test_managed_operator_refuses_an_addon_that_would_prune_the_raycluster(
    monkeypatch: pytest.MonkeyPatch, crd: Callable[[], dict[str, Any]], auth: str, lacks: str
) -> None:
    """What the add-on's CRD does not declare the API server drops without a word: the pods
    would never be recreated on a change, or the dashboard would run without auth."""
    _live_crd(monkeypatch, crd())

    def managed(c: dict[str, Any]) -> None:
        _managed(c)
        c["ray-platform:ray"]["auth"] = auth

    monitor = RecordingMonitor(GkeMocks(**_ray_addon()))
    with pytest.raises(SettingsError) as info:
        run_program("gke-dev", _config("gke-dev", managed), mocks=monitor.mocks, monitor=monitor)  # type: ignore[arg-type]
    assert str(info.value) == (
        'ray-platform:operator.install ("managed") needs KubeRay 1.6 or later from the GKE Ray '
        f"add-on; cluster ml-dev's RayCluster CRD lacks {lacks} (the API server would drop "
        "them silently): upgrade the cluster (the add-on follows its GKE version), or disable "
        "the add-on and use operator.install: helm"
    )
    assert monitor.registered_resources == []


def test_managed_operator_without_token_auth_needs_no_auth_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _live_crd(monkeypatch, _without(kuberay_release.crd("1.6.1"), "authOptions"))

    def managed(c: dict[str, Any]) -> None:
        _managed(c)
        c["ray-platform:ray"]["auth"] = "disabled"
        c["ray-platform:ray"]["jupyter"] = {"enabled": False}

    run = run_program("gke-dev", _config("gke-dev", managed), mocks=GkeMocks(**_ray_addon()))
    assert "authOptions" not in run.one(RAYCLUSTER).inputs["spec"]


def test_managed_operator_whose_crd_cannot_be_read_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubernetes.client.exceptions import ApiException

    _live_crd(monkeypatch, ApiException(status=403, reason="Forbidden"))
    monitor = RecordingMonitor(GkeMocks(**_ray_addon()))
    with pytest.raises(SettingsError) as info:
        run_program("gke-dev", _config("gke-dev", _managed), mocks=monitor.mocks, monitor=monitor)  # type: ignore[arg-type]
    assert str(info.value) == (
        'ray-platform:operator.install ("managed") needs the RayCluster CRD of cluster ml-dev\'s '
        "Ray add-on, which could not be read: HTTP 403 Forbidden"
    )
    assert monitor.registered_resources == []


def test_the_crd_is_read_from_the_api_server_with_the_providers_kubeconfig() -> None:
    """The reader itself, against an HTTP server answering like kube-apiserver: the CRD's path,
    its JSON back as served, and a missing CRD as the API's own error."""
    import http.server
    import threading

    from kubernetes.client.exceptions import ApiException

    served = kuberay_release.crd("1.6.1")
    paths: list[str] = []

    class ApiServer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            known = self.path.endswith("/rayclusters.ray.io")
            body = json.dumps(served if known else {"kind": "Status", "code": 404}).encode()
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubeconfig = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
        assert lookup.read_crd(kubeconfig, lookup.RAYCLUSTER_CRD) == served
        with pytest.raises(ApiException) as info:
            lookup.read_crd(kubeconfig, "rayjobs.ray.io")
        assert lookup.api_reason(info.value).startswith("HTTP 404")
    finally:
        server.shutdown()
    assert paths[0] == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayclusters.ray.io"


def test_external_operator_is_refused_on_a_ray_addon_cluster() -> None:
    config = _config(
        "gke-dev", lambda c: c.setdefault("ray-platform:operator", {}).update(install="external")
    )
    with pytest.raises(SettingsError, match=r"set operator\.install: managed"):
        run_program("gke-dev", config, mocks=GkeMocks(**_ray_addon()))


# --- lazy SDK ----------------------------------------------------------------------------------


def test_aws_and_local_stacks_never_load_pulumi_gcp() -> None:
    code = (
        "import sys\n"
        "from tools.testing.pulumi_mocks import run_program\n"
        "for stack in ('dev', 'local'):\n"
        "    run_program(stack)\n"
        "    assert 'pulumi_gcp' not in sys.modules, stack\n"
        "from tools.testing.pulumi_mocks.gcp import GkeMocks\n"
        "run_program('gke-dev', mocks=GkeMocks())\n"
        "assert 'pulumi_gcp' in sys.modules\n"
    )
    done = fresh_interpreter(code)
    assert done.returncode == 0, done.stdout + done.stderr


def test_closed_egress_still_reaches_the_gke_metadata_server() -> None:
    """Workload Identity's tokens come from the metadata server: closing egress must not cut
    Ray (and the FUSE sidecar) off from it."""
    config = _config(
        "gke-dev",
        lambda c: c.setdefault("ray-platform:kubernetes", {}).update(
            networkPolicy={"restrictEgress": True}
        ),
    )
    run = run_program("gke-dev", config, mocks=GkeMocks())
    egress = run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]["egress"]
    cidrs = {b["ipBlock"]["cidr"] for rule in egress for b in rule.get("to", []) if "ipBlock" in b}
    assert {"169.254.169.254/32", "169.254.169.252/32"} <= cidrs


def test_managed_operator_needs_the_ray_addon() -> None:
    """Nothing would install KubeRay or its CRDs: the RayCluster would never be reconciled."""
    config = _config(
        "gke-dev", lambda c: c.setdefault("ray-platform:operator", {}).update(install="managed")
    )
    monitor = RecordingMonitor(GkeMocks())
    with pytest.raises(
        SettingsError, match=r"needs the GKE Ray operator add-on.*RayOperator=ENABLED"
    ):
        run_program("gke-dev", config, mocks=monitor.mocks, monitor=monitor)  # type: ignore[arg-type]
    assert monitor.registered_resources == []
