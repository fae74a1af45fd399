"""The GKE checks: a pure function from the looked-up cluster and the settings to every problem.

No lookup and no Pulumi run here: the adapter looks the cluster up (and, for `operator.install:
managed` on a cluster with the Ray add-on, reads the add-on's RayCluster CRD), then hands the data
in, so the tests feed it cluster shapes. Each problem is one settings line
(`ray-platform:<key> (<value>) <problem>`, naming the gcloud command that fixes it where there is
one); the adapter raises them together, like the settings loader, so a cluster that lacks two
things says both in one run.
"""

from __future__ import annotations

from infra import kuberay_release
from infra.clouds.gcp.filestore import filestore_location
from infra.clouds.gcp.lookup import FUSE_NATIVE_SIDECAR_TEXT, GkeCluster, LiveCrd
from infra.clouds.gcp.settings import GcpSettings
from infra.settings import Settings
from infra.settings.errors import message


def gke_problems(
    cluster: GkeCluster, settings: Settings, live_crd: LiveCrd | None = None
) -> list[str]:
    """Every way `cluster` cannot run these settings, in the order a reader fixes them: identity,
    operator, FUSE, Filestore. `live_crd` is the add-on's RayCluster CRD, read by the adapter only
    for `operator.install: managed` on a cluster that runs the add-on."""
    block = settings.cloud_settings
    if not isinstance(block, GcpSettings):
        raise TypeError(f"gke_problems got a {type(block).__name__} block")
    problems = [*_workload_identity(cluster), *_operator(cluster, settings, live_crd)]
    if block.gcs_fuse.enabled:
        problems += _fuse(cluster)
    if settings.storage.shared_filesystem.enabled:
        problems += _filestore(cluster, block)
    return problems


def _workload_identity(cluster: GkeCluster) -> list[str]:
    if cluster.workload_pool is not None:
        return []
    return [
        message(
            "gcp.clusterName",
            cluster.name,
            "has Workload Identity off, which Ray's bucket access needs; turn it on: "
            + cluster.gcloud_update(f"--workload-pool={cluster.project}.svc.id.goog"),
        )
    ]


def _operator(cluster: GkeCluster, settings: Settings, live_crd: LiveCrd | None) -> list[str]:
    install = settings.operator.install
    if cluster.ray_operator_addon and install != "managed":
        return [
            message(
                "operator.install",
                install,
                f"would install a second KubeRay: cluster {cluster.name} runs the GKE Ray "
                "operator add-on, which owns KubeRay and its CRDs; set operator.install: managed "
                "(a stack deployed before: first `pulumi state delete` its kuberay-crds "
                "resources so the switch does not delete the CRDs)",
            )
        ]
    if install != "managed":
        return []
    if not cluster.ray_operator_addon:
        return [
            message(
                "operator.install",
                install,
                f"needs the GKE Ray operator add-on, which cluster {cluster.name} does not run; "
                "use helm, or enable it: "
                + cluster.gcloud_update("--update-addons RayOperator=ENABLED"),
            )
        ]
    return _managed_kuberay(cluster, settings, live_crd)


def _managed_kuberay(
    cluster: GkeCluster, settings: Settings, live_crd: LiveCrd | None
) -> list[str]:
    """The add-on's KubeRay must serve what the RayCluster sets: the API server prunes fields its
    CRD lacks, silently (an add-on older than KubeRay 1.6 drops `upgradeStrategy`, and so the
    pods are never recreated on a change; one without `authOptions` runs the dashboard without
    auth, or the head waits for a Secret that never comes). Read from the live CRD, so the
    add-on's own version needs no table."""
    if live_crd is None or live_crd.crd is None:
        reason = live_crd.error if live_crd is not None else None
        return [
            message(
                "operator.install",
                "managed",
                f"needs the RayCluster CRD of cluster {cluster.name}'s Ray add-on, which could "
                f"not be read: {reason or 'not looked up'}",
            )
        ]
    needs: dict[str, str | None] = {"spec.upgradeStrategy.type": "Recreate"}
    if settings.ray.auth == "token":
        needs["spec.authOptions.mode"] = "token"
    schema = kuberay_release.served_schema(live_crd.crd)
    missing = (
        ["apiVersion ray.io/v1"]
        if schema is None
        else kuberay_release.missing_fields(schema, needs)
    )
    if not missing:
        return []
    return [
        message(
            "operator.install",
            "managed",
            f"needs KubeRay 1.6 or later from the GKE Ray add-on; cluster {cluster.name}'s "
            f"RayCluster CRD lacks {', '.join(missing)} (the API server would drop them "
            "silently): upgrade the cluster (the add-on follows its GKE version), or disable the "
            "add-on and use operator.install: helm",
        )
    ]


def _fuse(cluster: GkeCluster) -> list[str]:
    problems = []
    if not cluster.gcs_fuse_driver:
        problems.append(
            message(
                "gcp.gcsFuse.enabled",
                True,
                f"needs the GCS FUSE CSI driver, which cluster {cluster.name} does not run; "
                "enable it: " + cluster.gcloud_update("--update-addons GcsFuseCsiDriver=ENABLED"),
            )
        )
    if not cluster.supports_native_sidecar:
        problems.append(
            message(
                "gcp.gcsFuse.enabled",
                True,
                f"needs GKE {FUSE_NATIVE_SIDECAR_TEXT} or later (the FUSE native sidecar, so "
                "KubeRay's wait-gcs-ready init container can mount the bucket); cluster "
                f"{cluster.name} runs {cluster.oldest_version} (control plane or a node pool)",
            )
        )
    return problems


def _filestore(cluster: GkeCluster, block: GcpSettings) -> list[str]:
    if filestore_location(block, cluster) is not None:
        return []
    tier = block.filestore.tier
    zones = ", ".join(sorted(cluster.node_locations)) or "none reported"
    return [
        message(
            "gcp.filestore.zone",
            None,
            f"is required for the {tier} tier on regional cluster {cluster.name}: name the "
            f"instance's zone (the cluster's node zones: {zones}); it is used as is, and "
            "changing it replaces the instance",
        )
    ]
