"""Local adapter: any kind/minikube cluster, or the project's own control plane (tools/)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components.kuberay.image import RAY_GID, RAY_UID
from components.kubernetes.labels import MANAGED_LABELS
from components.kubernetes.shared_dir_owner import (
    SharedDirOwner,
    SharedDirOwnerArgs,
    wait_for_shared_dir,
)
from components.kubernetes.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import SHARED_VOLUME, StorageWiring
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    SHARED_CLAIM,
    WORKER_SERVICE_ACCOUNT,
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
)
from infra.clouds.local.settings import LocalSettings
from infra.settings import Settings
from infra.settings.secrets import secret_setting

OBJECT_STORE_SECRET = "ray-object-store"
"""The Secret with the S3-compatible server's credentials, read by every Ray container."""


class LocalAdapter(CloudAdapter):
    """No cloud: a hostPath-backed ReadWriteMany volume (single node) and the Ray ServiceAccount."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.local = self.block(LocalSettings)

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        # kind, kubeadm and minikube API servers listen on 6443 (the Service says 443, but
        # policies match the port after the Service's translation).
        rules: list[Mapping[str, object]] = [{"ports": [{"protocol": "TCP", "port": 6443}]}]
        store = self.local.object_store
        if store is not None and self.settings.storage.artifact_bucket.enabled:
            # The S3-compatible server is not on 443: Ray must still reach the bucket.
            port = urlsplit(store.endpoint).port or (
                443 if store.endpoint.startswith("https") else 80
            )
            rules.append({"ports": [{"protocol": "TCP", "port": port}]})
        return tuple(rules)

    def kubernetes_provider(self) -> k8s.Provider:
        """The ambient kubeconfig, resolved by the provider when it runs, unless the stack
        names one.

        Left unset, the Kubernetes SDK would copy `$KUBECONFIG` into the provider's inputs (and
        so into the state): after `tools/up down` that path names no file, and every later
        refresh fails on it ("failed to parse kubeconfig data"). An empty string is what the
        provider (pulumi-kubernetes `Configure`, v4.25 and later) takes as "not set": it then
        loads `$KUBECONFIG` / ~/.kube/config of the run itself, and nothing cluster-specific
        is stored. A `local.kubeconfig` path is the stack's own choice and is stored as is.
        """
        return k8s.Provider(
            "local", kubeconfig=self.local.kubeconfig or "", context=self.local.context
        )

    def storage_and_identity(self, target: KubernetesTarget) -> CloudStorage:
        settings = self.settings
        fs = settings.storage.shared_filesystem
        accounts = [
            k8s.core.v1.ServiceAccount(
                f"ray-sa-{account}",
                metadata={
                    "name": account,
                    "namespace": target.namespace,
                    "labels": dict(MANAGED_LABELS),
                },
                # Only the head's autoscaler calls the Kubernetes API.
                automount_service_account_token=account == HEAD_SERVICE_ACCOUNT,
                opts=target.resource_opts(),
            )
            for account in (HEAD_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT)
        ]
        dependencies: list[pulumi.Resource] = list(accounts)
        outputs: dict[str, pulumi.Input[str]] = {}
        wiring = StorageWiring(
            service_account_name=HEAD_SERVICE_ACCOUNT,
            worker_service_account_name=WORKER_SERVICE_ACCOUNT,
        )
        store = self.local.object_store
        if settings.storage.artifact_bucket.enabled and store is not None:
            secret = k8s.core.v1.Secret(
                "object-store-credentials",
                metadata={
                    "name": OBJECT_STORE_SECRET,
                    "namespace": target.namespace,
                    "labels": dict(MANAGED_LABELS),
                },
                string_data={
                    "AWS_ACCESS_KEY_ID": store.access_key_id,
                    # Read as Pulumi's config API marks it: a secret in state and output.
                    "AWS_SECRET_ACCESS_KEY": secret_setting(
                        "local", "objectStore", "secretAccessKey"
                    ),
                },
                opts=target.resource_opts(),
            )
            dependencies.append(secret)
            bucket_uri = f"s3://{store.bucket}/{settings.bucket_prefix}"
            wiring = dataclasses.replace(
                wiring,
                bucket_uri=bucket_uri,
                # boto3 (and so Ray's s3:// working_dir download) reads these.
                env=(("AWS_ENDPOINT_URL_S3", store.endpoint), ("AWS_REGION", "us-east-1")),
                secret_env=tuple(
                    (name, OBJECT_STORE_SECRET, name)
                    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                ),
            )
            outputs["bucketUri"] = bucket_uri
            outputs["objectStoreEndpoint"] = store.endpoint
        if not fs.enabled:
            return CloudStorage(wiring, dependencies, outputs)
        host_dir = {"hostPath": {"path": self.local.host_path, "type": "DirectoryOrCreate"}}
        volume = SharedVolume(
            SHARED_VOLUME,
            SharedVolumeArgs(
                namespace=target.namespace,
                claim_name=SHARED_CLAIM,
                source=host_dir,
                capacity=fs.size,
            ),
            opts=target.component_opts(),
        )
        SharedDirOwner(
            "shared-owner",
            SharedDirOwnerArgs(
                namespace=f"{target.namespace}-prep",
                # hostPath volumes need `privileged`; only this one-shot Job runs there.
                pod_security="privileged",
                image=settings.ray.image,
                source=host_dir,
                uid=RAY_UID,
                gid=RAY_GID,
            ),
            opts=pulumi.ResourceOptions(providers=[target.provider]),
        )
        wiring = dataclasses.replace(
            wiring,
            shared_claim_name=SHARED_CLAIM,
            shared_mount_path=fs.mount_path,
            init_containers=(wait_for_shared_dir(settings.ray.image, fs.mount_path),),
        )
        outputs["sharedMountPath"] = fs.mount_path
        outputs["sharedHostPath"] = self.local.host_path
        return CloudStorage(wiring, [*dependencies, volume], outputs)
