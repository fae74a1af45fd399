"""The cloud-adapter interface: what every cloud does for the composition (`infra/platform.py`).

An adapter is built from the settings; its constructor does every lookup the cloud needs and
raises `SettingsError` (one line) on a problem, before any resource is registered but its cloud
provider. Then the composition asks it, in this order, for the Kubernetes provider and for storage
and identity.

An adapter is a composition of concerns, one module each in its cloud's package (the shared file
system, the bucket, the identity Ray runs as, GCS FUSE): each builds its resources and returns its
`WiringPart`, and the adapter joins the parts (`compose`) into the one `StorageWiring` the
RayCluster builder gets. The checks of the looked-up cluster are a pure function in the cloud's
`checks.py` that lists every problem; the adapter raises them together, like the settings loader.

A cloud adapter builds its own provider (`pulumi_aws.Provider`, `pulumi_gcp.Provider`) from the
settings (region, project) and passes it to every resource and lookup it makes: the AWS and GCP
stack files disable the default providers (`pulumi:disable-default-providers`), so nothing falls
back to the ambient credentials' region or project. The provider is registered first, before the
lookups, because an invoke names its provider by reference; it is configuration only (no cloud
call), so a failed lookup leaves nothing in the cloud.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
import pulumi_kubernetes as k8s

from components.wiring import StorageWiring
from infra.settings import CloudSettings, Settings
from infra.settings.errors import fail

Block = TypeVar("Block", bound=CloudSettings)

SHARED_CLAIM = "ray-shared"
"""The PersistentVolumeClaim of the shared file system, whatever backs it."""
HEAD_SERVICE_ACCOUNT = "ray-head"
"""The head's ServiceAccount: KubeRay binds its autoscaler Role (patch pods and the RayCluster)
to it. Cloud identities (IRSA, Workload Identity) bind to it and to the workers' one."""
WORKER_SERVICE_ACCOUNT = "ray-worker"
"""The workers' ServiceAccount: the same cloud identity, none of the head's Kubernetes rights."""


@dataclass
class CloudStorage:
    """Storage + identity built by a cloud adapter (its concerns' parts, composed)."""

    wiring: StorageWiring
    """Handed to the RayCluster builder."""
    dependencies: list[pulumi.Resource] = field(default_factory=list)
    """What Ray pods need to exist first (claim, ServiceAccount)."""
    outputs: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """Stack outputs this adapter contributes (bucket URI, file system id, role ARN...)."""


_WIRING_FIELDS = frozenset(f.name for f in dataclasses.fields(StorageWiring))


@dataclass(frozen=True)
class WiringPart:
    """One concern's share of the storage and identity: its `StorageWiring` fields, the resources
    Ray pods wait for, the stack outputs it contributes.

    The fields are named as `StorageWiring` names them (checked here), so the wiring's fields are
    written once, in components/wiring.py; `compose` joins the parts.
    """

    wiring: Mapping[str, Any] = field(default_factory=dict)
    """`StorageWiring` fields by name, e.g. `{"shared_claim_name": ..., "volumes": (...)}`."""
    dependencies: tuple[pulumi.Resource, ...] = ()
    outputs: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.wiring) - _WIRING_FIELDS
        if unknown:
            raise TypeError(f"StorageWiring has no field {', '.join(sorted(unknown))}")


def _join(name: str, values: list[Any]) -> Any:
    """The values several parts give one field: sequences in part order, mappings merged, any
    other value from one part only (two concerns setting the same claim or ServiceAccount is a
    bug in the adapter, not something to settle by order)."""
    if all(isinstance(v, tuple) for v in values):
        return tuple(item for v in values for item in v)
    if all(isinstance(v, Mapping) for v in values):
        return _merged(name, values)
    if len(values) > 1:
        raise ValueError(f"two concerns set StorageWiring.{name}")
    return values[0]


def _merged(name: str, mappings: list[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mapping in mappings:
        for key, value in mapping.items():
            if key in out:
                raise ValueError(f"two concerns set {name}[{key!r}]")
            out[key] = value
    return out


def compose(*parts: WiringPart) -> CloudStorage:
    """The adapter's storage and identity from its concerns' parts (in the order given: it is
    the order of the dependencies, the outputs and each sequence field)."""
    by_field: dict[str, list[Any]] = {}
    for part in parts:
        for name, value in part.wiring.items():
            by_field.setdefault(name, []).append(value)
    wiring = StorageWiring(**{name: _join(name, values) for name, values in by_field.items()})
    return CloudStorage(
        wiring,
        [d for part in parts for d in part.dependencies],
        _merged("outputs", [part.outputs for part in parts]),
    )


def raise_problems(problems: list[str]) -> None:
    """Every problem a cloud's checks found, in one SettingsError, as the settings loader reports
    its own: the user fixes them in one round, not one per `pulumi up`."""
    if problems:
        raise fail(problems)


def with_provider(
    provider: pulumi.ProviderResource, opts: pulumi.ResourceOptions | None = None
) -> pulumi.ResourceOptions:
    """`opts` plus `provider` for a component's children (Pulumi passes a component's
    `providers` on to its children by package, beside the Kubernetes one)."""
    extra = pulumi.ResourceOptions(providers=[provider])
    return extra if opts is None else pulumi.ResourceOptions.merge(opts, extra)


@dataclass(frozen=True)
class KubernetesTarget:
    """Where the adapter's Kubernetes objects go: the provider, and what they wait for (the
    Ray namespace, when the program creates it)."""

    provider: k8s.Provider
    namespace: str
    wait_for: tuple[pulumi.Resource, ...] = ()

    def resource_opts(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options for a Kubernetes resource registered directly."""
        return pulumi.ResourceOptions(
            provider=self.provider, depends_on=[*self.wait_for, *depends_on] or None
        )

    def component_opts(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options for a component with Kubernetes children (provider through `providers`)."""
        return pulumi.ResourceOptions(
            providers=[self.provider], depends_on=[*self.wait_for, *depends_on] or None
        )


class CloudAdapter(abc.ABC):
    """One cloud. Subclasses live in `infra/clouds/<cloud>/adapter.py`."""

    def __init__(self, settings: Settings) -> None:
        """Look up and check the cluster; every problem is a SettingsError raised here."""
        self.settings = settings

    def block(self, model: type[Block]) -> Block:
        """The stack's cloud block, as this adapter's own model."""
        block = self.settings.cloud_settings
        if not isinstance(block, model):
            raise TypeError(f"{type(self).__name__} got a {type(block).__name__} block")
        return block

    @abc.abstractmethod
    def kubernetes_provider(self) -> k8s.Provider:
        """The provider every Kubernetes object of the stack uses."""

    @abc.abstractmethod
    def storage_and_identity(self, target: KubernetesTarget) -> CloudStorage:
        """The shared file system, the bucket, the identity Ray runs as, and how pods reach them."""

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        """NetworkPolicy egress rules Ray pods need beyond DNS, HTTPS and each other when
        `kubernetes.networkPolicy.restrictEgress` is on (a cloud's metadata or identity
        endpoint, an API server on another port)."""
        return ()

    def tags(self) -> Mapping[str, str]:
        """Tags (or labels) for the cloud's own resources; clouds with stricter key rules (GCP
        label keys cannot contain `/`) override this."""
        s = self.settings
        return {
            "ray-platform/project": s.project,
            "ray-platform/stack": s.stack,
            "ray-platform/mode": s.mode,
            "managed-by": "pulumi",
        }
