"""Pulumi mocks for GKE stacks: the GCP data sources with the shapes pulumi-gcp 10.2 returns
(camelCase keys, nested blocks as one-element lists — a snake_case key would silently read back as
None), and created GCP resources with what the provider would compute (bucket name and URL,
Filestore id and IP address, service-account e-mail, Artifact Registry name and registry URI)."""

from __future__ import annotations

import copy
from typing import Any

import pulumi

from tools.testing.pulumi_mocks.aws import PlatformMocks

PROJECT_NUMBERS = {"ml-platform-dev": "412345678901", "ml-platform-prod": "598765432109"}
REGION = "us-central1"
NODE_ZONES = ["us-central1-c", "us-central1-a", "us-central1-f"]
FILESTORE_IP = "10.87.0.2"
MASTER_VERSION = "1.33.5-gke.1162000"
# Pulumi's engine autonames resources; under mocks the provider's answer stands in for it.
AUTONAME_SUFFIX = {
    "gcp:storage/bucket:Bucket": "3f9a1c7",
    "gcp:filestore/instance:Instance": "8d2e4b1",
}
CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUVMRENDQXBTZ0F3SUJBZ0lRCg=="


def autoname(typ: str, name: str) -> str:
    """The name the mocked provider gives a resource registered without one."""
    return f"{name}-{AUTONAME_SUFFIX[typ]}"


def _enabled(on: bool) -> list[dict[str, Any]]:
    return [{"enabled": on}]


def gke_cluster(name: str, location: str, project: str) -> dict[str, Any]:
    """gcp:container/getCluster for a regional Standard cluster with Workload Identity and the
    GCS FUSE and Filestore CSI drivers on, as GKE reports it."""
    return {
        "id": f"projects/{project}/locations/{location}/clusters/{name}",
        "name": name,
        "location": location,
        "project": project,
        "endpoint": "34.118.12.34",
        "masterVersion": MASTER_VERSION,
        "minMasterVersion": "",
        "nodeVersion": MASTER_VERSION,
        "network": f"projects/{project}/global/networks/ml-vpc",
        "subnetwork": f"projects/{project}/regions/{REGION}/subnetworks/ml-gke",
        "nodeLocations": list(NODE_ZONES),
        "enableAutopilot": False,
        "clusterIpv4Cidr": "10.96.0.0/14",
        "selfLink": f"https://container.googleapis.com/v1/projects/{project}/locations/"
        f"{location}/clusters/{name}",
        "masterAuths": [
            {
                "clusterCaCertificate": CA,
                "clientCertificate": "",
                "clientKey": "",
                "clientCertificateConfigs": [{"issueClientCertificate": False}],
            }
        ],
        "workloadIdentityConfigs": [{"workloadPool": f"{project}.svc.id.goog"}],
        "addonsConfigs": [
            {
                "gcsFuseCsiDriverConfigs": _enabled(True),
                "gcpFilestoreCsiDriverConfigs": _enabled(True),
                "gcePersistentDiskCsiDriverConfigs": _enabled(True),
                "rayOperatorConfigs": [
                    {
                        "enabled": False,
                        "rayClusterLoggingConfigs": [{"enabled": False}],
                        "rayClusterMonitoringConfigs": [{"enabled": False}],
                    }
                ],
                "horizontalPodAutoscalings": [{"disabled": False}],
                "httpLoadBalancings": [{"disabled": False}],
                "networkPolicyConfigs": [{"disabled": True}],
                "dnsCacheConfigs": _enabled(False),
                "gkeBackupAgentConfigs": _enabled(False),
                "statefulHaConfigs": _enabled(False),
                "parallelstoreCsiDriverConfigs": _enabled(False),
            }
        ],
        "releaseChannels": [{"channel": "REGULAR"}],
        "resourceLabels": {},
        "nodePools": [],
        "nodeConfigs": [],
    }


class GkeMocks(PlatformMocks):
    """GKE data sources and GCP resources; `cluster_changes` edits the getCluster answer."""

    def __init__(self, **cluster_changes: Any) -> None:
        super().__init__()
        self.cluster_changes = cluster_changes

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        token, a = args.token, dict(args.args)
        if token == "gcp:container/getCluster:getCluster":
            self.calls.append((token, a))
            cluster = gke_cluster(a["name"], a["location"], a["project"])
            for key, value in self.cluster_changes.items():
                cluster[key] = copy.deepcopy(value)
            return cluster
        if token == "gcp:organizations/getProject:getProject":
            self.calls.append((token, a))
            project = a["projectId"]
            return {
                "id": f"projects/{project}",
                "projectId": project,
                "name": project,
                "number": PROJECT_NUMBERS[project],
                "orgId": "123456789012",
                "folderId": "",
                "billingAccount": "01AB23-C45D67-E89F01",
                "labels": {},
                "effectiveLabels": {},
                "autoCreateNetwork": False,
            }
        if token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            self.calls.append((token, a))
            number = PROJECT_NUMBERS[a["project"]]
            email = f"service-{number}@gs-project-accounts.iam.gserviceaccount.com"
            return {
                "id": email,
                "emailAddress": email,
                "member": f"serviceAccount:{email}",
                "project": a["project"],
            }
        return super().call(args)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        typ, name = args.typ, args.name
        project = state.get("project", "ml-platform-dev")
        if typ == "gcp:storage/bucket:Bucket":
            bucket = state.get("name") or autoname(typ, name)
            state.update(
                name=bucket,
                url=f"gs://{bucket}",
                selfLink=f"https://www.googleapis.com/storage/v1/b/{bucket}",
            )
            return bucket, state
        if typ == "gcp:filestore/instance:Instance":
            instance = state.get("name") or autoname(typ, name)
            instance_id = f"projects/{project}/locations/{state['location']}/instances/{instance}"
            networks = [
                {**n, "ipAddresses": [FILESTORE_IP], "reservedIpRange": "10.87.0.0/29"}
                for n in state.get("networks", [])
            ]
            state.update(name=instance, networks=networks)
            return instance_id, state
        if typ == "gcp:kms/keyRing:KeyRing":
            ring = f"{name}-5b7c9d1"
            ring_id = f"projects/{project}/locations/{state['location']}/keyRings/{ring}"
            state.update(name=ring)
            return ring_id, state
        if typ == "gcp:kms/cryptoKey:CryptoKey":
            key = f"{name}-2a4c6e8"
            state.update(name=key)
            return f"{state['keyRing']}/cryptoKeys/{key}", state
        if typ.startswith("gcp:backupdisasterrecovery/"):
            # Backup and DR names: projects/P/locations/REGION/<collection>/<id>.
            kind, key = {
                "gcp:backupdisasterrecovery/backupVault:BackupVault": (
                    "backupVaults",
                    "backupVaultId",
                ),
                "gcp:backupdisasterrecovery/backupPlan:BackupPlan": (
                    "backupPlans",
                    "backupPlanId",
                ),
                "gcp:backupdisasterrecovery/backupPlanAssociation:BackupPlanAssociation": (
                    "backupPlanAssociations",
                    "backupPlanAssociationId",
                ),
            }[typ]
            full = f"projects/{project}/locations/{state['location']}/{kind}/{state[key]}"
            state.update(name=full)
            return full, state
        if typ == "gcp:artifactregistry/repository:Repository":
            repo, location = state["repositoryId"], state["location"]
            full = f"projects/{project}/locations/{location}/repositories/{repo}"
            state.update(name=repo, registryUri=f"{location}-docker.pkg.dev/{project}/{repo}")
            return full, state
        if typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            service = str(state["service"]).split(".")[0]
            number = PROJECT_NUMBERS.get(str(state["project"]), "000000000000")
            email = f"service-{number}@gcp-sa-{service}.iam.gserviceaccount.com"
            state.update(email=email, member=f"serviceAccount:{email}")
            return f"projects/{project}/services/{state['service']}", state
        if typ == "gcp:serviceaccount/account:Account":
            email = f"{state['accountId']}@{project}.iam.gserviceaccount.com"
            state.update(
                email=email,
                name=f"projects/{project}/serviceAccounts/{email}",
                member=f"serviceAccount:{email}",
                uniqueId="104857600000000000001",
            )
            return state["name"], state
        return super().new_resource(args)
