"""Local adapter: any kind/minikube cluster, or the project's own control plane (tools/). Its
concerns, composed into the StorageWiring: the ServiceAccounts (`identity.py`), the S3-compatible
object store (`bucket.py`), the hostPath shared directory (`shared_fs.py`), the node registry's
repository when the stack names one (`registry.py`)."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi_kubernetes as k8s

from infra.clouds.adapter import CloudAdapter, CloudStorage, KubernetesTarget, compose
from infra.clouds.local.bucket import object_store, object_store_egress
from infra.clouds.local.identity import service_accounts
from infra.clouds.local.registry import image_repository
from infra.clouds.local.settings import LocalSettings
from infra.clouds.local.shared_fs import host_path_volume
from infra.settings import Settings


class LocalAdapter(CloudAdapter):
    """No cloud: a hostPath-backed ReadWriteMany volume (single node) and the Ray ServiceAccount."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.local = self.block(LocalSettings)

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        # The API server's own port (local.apiServerPort): the Service says 443, but policies
        # match the port after the Service's translation.
        port = self.local.api_server_port
        rules: list[Mapping[str, object]] = [{"ports": [{"protocol": "TCP", "port": port}]}]
        store = self.local.object_store
        if store is not None and self.settings.storage.artifact_bucket.enabled:
            rules.append(object_store_egress(store))
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
        """The ServiceAccounts, the object store's credentials, the shared directory, the
        registry's repository: in this order (the stack's outputs and Ray's dependencies keep
        it)."""
        settings, store = self.settings, self.local.object_store
        parts = [service_accounts(target)]
        if settings.storage.artifact_bucket.enabled and store is not None:
            parts.append(object_store(settings, store, target))
        if settings.storage.shared_filesystem.enabled:
            parts.append(host_path_volume(settings, self.local, target))
        if self.local.image_repository is not None:
            parts.append(image_repository(self.local.image_repository))
        return compose(*parts)
