"""GKE lookups: what the program needs to know about an existing cluster, from its name,
location and project. Every failure is a one-line settings error."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.clouds.lookup import exec_kubeconfig, provider_reason
from infra.settings import SettingsError, setting_error
from infra.settings.errors import fmt_value

# The GCS FUSE CSI driver injects its sidecar as a native sidecar (an init container with
# restartPolicy Always) from this control-plane version on. Only then can an init container
# mount the bucket — and KubeRay's `wait-gcs-ready` init container copies the Ray container's
# volume mounts, bucket included, so older clusters would hang every Ray pod at init.
FUSE_NATIVE_SIDECAR = (1, 29, 3, 1093000)
FUSE_NATIVE_SIDECAR_TEXT = "1.29.3-gke.1093000"


@dataclass(frozen=True)
class GkeCluster:
    """What the program needs to know about an existing GKE cluster."""

    name: str
    location: str
    project: str
    project_number: str
    endpoint: str
    ca_certificate: str
    master_version: str
    node_versions: tuple[str, ...]
    """The node pools' versions: the FUSE webhook injects a native sidecar only where every
    node's kubelet supports it, and node pools may lag the control plane."""
    network: str
    """As GKE reports it: `projects/P/global/networks/N` (or the bare name)."""
    node_locations: tuple[str, ...]
    autopilot: bool
    workload_pool: str | None
    """`PROJECT.svc.id.goog` when Workload Identity is on."""
    gcs_fuse_driver: bool
    filestore_driver: bool
    ray_operator_addon: bool
    storage_service_agent: str | None = None
    """The project's GCS service agent (e-mail), when a customer-managed key needs it."""

    @property
    def oldest_version(self) -> str:
        return min((self.master_version, *self.node_versions), key=version_key)

    @property
    def supports_native_sidecar(self) -> bool:
        return version_key(self.oldest_version) >= FUSE_NATIVE_SIDECAR

    def gcloud_update(self, flags: str) -> str:
        return f"gcloud container clusters update {self.name} --location {self.location} {flags}"


def version_key(version: str) -> tuple[int, ...]:
    """`1.33.5-gke.1162000` → (1, 33, 5, 1162000); unparsable parts count as 0."""
    numbers = [int(n) for n in re.findall(r"\d+", version)]
    return tuple([*numbers, 0, 0, 0, 0][:4])


def _enabled(addons: Any, key: str) -> bool:
    configs = getattr(addons, key, None) or []
    return bool(configs and configs[0].enabled)


def lookup_cluster(
    name: str, location: str, project: str, *, need_agent: bool, provider: gcp.Provider
) -> GkeCluster:
    """Data-source lookups: the cluster, the project's number and (for a customer-managed key)
    the GCS service agent, each through the stack's own provider."""
    opts = pulumi.InvokeOptions(provider=provider)
    try:
        cluster = gcp.container.get_cluster(
            name=name, location=location, project=project, opts=opts
        )
    except Exception as err:
        raise setting_error(
            "gcp.clusterName",
            name,
            f"could not be looked up in {location} of project {project}: {provider_reason(err)}",
        ) from None
    try:
        number = gcp.organizations.get_project(project_id=project, opts=opts).number
    except Exception as err:
        raise SettingsError(
            f"gcp:project ({fmt_value(project)}) could not be looked up: {provider_reason(err)}"
        ) from None
    agent = None
    if need_agent:
        try:
            agent = gcp.storage.get_project_service_account(
                project=project, opts=opts
            ).email_address
        except Exception as err:
            raise SettingsError(
                f"gcp:project ({fmt_value(project)}) has no GCS service agent to grant the "
                f"bucket key to: {provider_reason(err)}"
            ) from None
    addons = (cluster.addons_configs or [None])[0]
    pools = cluster.workload_identity_configs or []
    auth = (cluster.master_auths or [None])[0]
    return GkeCluster(
        name=name,
        location=cluster.location or location,
        project=project,
        project_number=str(number),
        endpoint=cluster.endpoint,
        ca_certificate=auth.cluster_ca_certificate if auth else "",
        master_version=cluster.master_version or "",
        node_versions=tuple(
            v
            for v in (
                cluster.node_version,
                *(p.version for p in cluster.node_pools or []),
            )
            if v
        ),
        network=cluster.network or "",
        node_locations=tuple(cluster.node_locations or ()),
        autopilot=bool(cluster.enable_autopilot),
        workload_pool=(pools[0].workload_pool or None) if pools else None,
        gcs_fuse_driver=_enabled(addons, "gcs_fuse_csi_driver_configs"),
        filestore_driver=_enabled(addons, "gcp_filestore_csi_driver_configs"),
        ray_operator_addon=_enabled(addons, "ray_operator_configs"),
        storage_service_agent=agent,
    )


def filestore_network(cluster: GkeCluster) -> tuple[str, str]:
    """(network, connect mode) for a Filestore instance on the cluster's VPC.

    Filestore takes the bare name for a network of its own project (direct peering); a Shared
    VPC network of another project must be named in full and reached by private service access.
    """
    match = re.fullmatch(r"(?:.*/)?projects/([^/]+)/global/networks/([^/]+)", cluster.network)
    if match is None:
        return cluster.network, "DIRECT_PEERING"
    host, network = match.groups()
    if host == cluster.project:
        return network, "DIRECT_PEERING"
    return f"projects/{host}/global/networks/{network}", "PRIVATE_SERVICE_ACCESS"


def kubeconfig(cluster: GkeCluster) -> str:
    """A kubeconfig that authenticates with `gke-gcloud-auth-plugin` (no long-lived keys)."""
    return exec_kubeconfig(
        name=f"gke_{cluster.project}_{cluster.location}_{cluster.name}",
        server=f"https://{cluster.endpoint}",
        certificate_authority=cluster.ca_certificate,
        exec_={
            "command": "gke-gcloud-auth-plugin",
            "installHint": "gcloud components install gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
        },
    )


RAYCLUSTER_CRD = "rayclusters.ray.io"
CRD_READ_TIMEOUT = (10, 30)
"""Seconds to connect to the API server, and to read its answer."""


def read_crd(kubeconfig_json: str, name: str) -> dict[str, Any]:
    """A CustomResourceDefinition as the cluster's API server serves it, read with the kubeconfig
    the Kubernetes provider gets (so the same credentials: GKE's exec plugin)."""
    from kubernetes import client, config

    api = config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
        json.loads(kubeconfig_json), persist_config=False
    )
    try:
        # Unparsed (a urllib3 response): the schema as served, not the client's model of it.
        answer: Any = client.ApiextensionsV1Api(api).read_custom_resource_definition(
            name, _preload_content=False, _request_timeout=CRD_READ_TIMEOUT
        )
        crd: dict[str, Any] = json.loads(answer.data)
        return crd
    finally:
        api.close()


def raycluster_crd(cluster: GkeCluster) -> dict[str, Any]:
    """The live RayCluster CRD of the cluster (the GKE Ray add-on's, with `install: managed`)."""
    return read_crd(kubeconfig(cluster), RAYCLUSTER_CRD)


@dataclass(frozen=True)
class LiveCrd:
    """The RayCluster CRD the cluster serves, or why it could not be read: data for the checks
    (`checks.gke_problems`), which report an unreadable CRD beside the cluster's other problems."""

    crd: dict[str, Any] | None = None
    error: str | None = None


def live_raycluster_crd(cluster: GkeCluster) -> LiveCrd:
    try:
        return LiveCrd(crd=raycluster_crd(cluster))
    except Exception as err:
        return LiveCrd(error=api_reason(err))


def api_reason(err: Exception) -> str:
    """One line for a failed Kubernetes API call: the status, or the client's own words."""
    status = getattr(err, "status", None)
    if status:
        return f"HTTP {status} {getattr(err, 'reason', '') or ''}".strip()
    return provider_reason(err)
