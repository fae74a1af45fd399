"""The settings models: frozen, closed (an unknown key is an error), cloud-neutral.

Each cloud's own keys live in its block (`ray-platform:aws`, `ray-platform:local`, ...), a model
that the cloud's package defines (`infra/clouds/<cloud>/settings.py`) on `CloudSettings`.

The docstring under each field is its documentation for users too: `use_attribute_docstrings`
makes it the field's description, which the JSON Schema of the stack files carries
(`schema/ray-platform.schema.json`, `python -m infra.clouds.schema --write`), so an editor shows
it beside the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    SecretStr,
    field_validator,
    model_validator,
)

from infra.kuberay_release import PINNED_VERSION
from infra.settings.errors import KeyedError
from infra.settings.values import (
    DNS1035_LABEL,
    Count,
    CpuQuantity,
    Days,
    GpuCount,
    ImageRef,
    KeyPrefix,
    LabelMap,
    MemoryQuantity,
    MountPath,
    NamespaceName,
    PackageIndexUrl,
    SemVer,
    VolumeSize,
)

Mode = Literal["dev", "prod"]


class Model(BaseModel):
    """Frozen, closed: an unknown key is an error, never ignored."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=False, use_attribute_docstrings=True
    )


class CloudSettings(Model):
    """A cloud's own block, `ray-platform:<cloud>`.

    `PROVIDER_KEYS` maps fields to the cloud provider's own config keys they are read from (e.g.
    the AWS region from `aws:region`), so one value serves the provider and the program.
    """

    PROVIDER_KEYS: ClassVar[dict[str, str]] = {}
    MANAGED_OPERATOR: ClassVar[str] = ""
    """The cloud's own KubeRay that `operator.install: managed` uses, named for messages; empty
    when the cloud has none (a neutral rule asks this instead of knowing clouds by name)."""

    def rules(self, settings: Settings) -> list[str]:
        """Cross-field problems between this block and the cloud-neutral settings."""
        return []


class NetworkPolicySettings(Model):
    """Who may reach Ray pods: ingress is admitted only from pods of the same RayCluster and
    from the namespaces named here (the operator calls into no pod of a plain RayCluster)."""

    allow_from_namespaces: tuple[NamespaceName, ...] = Field((), alias="allowFromNamespaces")
    """Namespaces whose pods may reach every Ray port (e.g. a notebook namespace)."""
    restrict_egress: bool = Field(False, alias="restrictEgress")
    """true: Ray pods may reach only each other, the cluster DNS, and HTTPS (443) anywhere."""


class KubernetesSettings(Model):
    """The namespace Ray runs in (the cluster itself is named in the cloud's block)."""

    namespace: NamespaceName = "ray"
    """The namespace of the RayCluster, its ServiceAccounts and the shared volume's claim."""
    create_namespace: bool = Field(True, alias="createNamespace")
    """false: the namespace exists already (e.g. on a shared cluster) and is not managed here;
    it must then enforce Pod Security `restricted` itself."""
    network_policy: NetworkPolicySettings = Field(
        default_factory=lambda: NetworkPolicySettings.model_validate({}), alias="networkPolicy"
    )
    """The NetworkPolicy in front of Ray pods."""


class SharedFilesystemSettings(Model):
    """The shared POSIX file system mounted on every Ray pod (EFS, Filestore or a hostPath)."""

    enabled: bool = True
    """false: no shared file system (then no shared packages and no Jupyter)."""
    mount_path: MountPath = Field("/mnt/shared", alias="mountPath")
    """Where every Ray container sees it."""
    size: VolumeSize = "100Gi"
    """The PersistentVolume's nominal capacity (EFS is elastic; hostPath ignores it)."""


class ArtifactBucketSettings(Model):
    """The object-store bucket for artifacts and working_dir zips."""

    enabled: bool = True
    """false: no bucket; `ray-platform submit` ships working directories through the dashboard."""
    prefix: KeyPrefix | None = None
    """Key prefix this stack may use; default: the stack name."""
    noncurrent_version_days: Days = Field(30, alias="noncurrentVersionDays")
    """The bucket is versioned; overwritten or deleted objects are kept this long."""
    working_dir_expiry_days: Days = Field(30, alias="workingDirExpiryDays")
    """`ray-platform submit` uploads each working directory as `<prefix>/working_dirs/<hash>.zip`
    and reuses it while it exists; these expire this long after upload (then, versioned, after
    noncurrentVersionDays more). A job (and a node it adds) must start within it: a later
    submit uploads the zip again."""


class StorageSettings(Model):
    """Where Ray pods keep data: a shared file system and a bucket."""

    shared_filesystem: SharedFilesystemSettings = Field(
        default_factory=lambda: SharedFilesystemSettings.model_validate({}),
        alias="sharedFilesystem",
    )
    """Mounted on every Ray pod: datasets, checkpoints, notebooks, the shared packages."""
    artifact_bucket: ArtifactBucketSettings = Field(
        default_factory=lambda: ArtifactBucketSettings.model_validate({}), alias="artifactBucket"
    )
    """What must outlive the cluster, and `ray-platform submit`'s working-directory zips."""


class OperatorSettings(Model):
    """The KubeRay operator and its CRDs."""

    version: SemVer = PINNED_VERSION
    """The KubeRay release: its CRDs (fetched and checked against their Go checksum) and the
    chart's version. Default: the release this program pins (`infra/kuberay_release.py`), the
    one the local control plane runs (`tools/versions.json`)."""
    namespace: NamespaceName = "kuberay-system"
    """Where the chart installs the operator (install: helm)."""
    install: Literal["helm", "external", "managed"] = "helm"
    """helm: the program installs the kuberay-operator chart. external: an operator already runs
    (e.g. the local control plane's); the program still manages the CRDs. managed: the cluster's
    provider runs KubeRay and its CRDs (the GKE Ray operator add-on); the program touches
    neither."""
    chart_repo: str = Field("https://ray-project.github.io/kuberay-helm/", alias="chartRepo")
    """The Helm repository of the kuberay-operator chart (an https:// URL; a mirror)."""
    cpu: CpuQuantity = "100m"
    """The operator's CPU request and limit (install: helm)."""
    memory: MemoryQuantity = "512Mi"
    """The operator's memory request and limit (install: helm)."""

    @field_validator("chart_repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not v.startswith("https://") or any(c.isspace() for c in v):
            raise ValueError("must be an https:// Helm chart repository URL")
        return v


class GroupSettings(Model):
    """A Ray pod's resources, given once: used as both request and limit."""

    cpu: CpuQuantity
    """The Ray container's CPU (KubeRay rounds it up to Ray's logical CPUs)."""
    memory: MemoryQuantity
    """Given once: used as both request and limit (Ray sizes its object store from it)."""
    gpu: GpuCount = 0
    """nvidia.com/gpu for the Ray container."""
    ray_start_params: dict[str, str] = Field(default_factory=dict, alias="rayStartParams")
    """Options of `ray start` (Ray 2.60's, with values it takes), e.g. num-cpus: "0"."""


class HeadSettings(GroupSettings):
    """The head pod's resources. It runs the driver, the dashboard and (dev) Jupyter."""


class WorkerGroupSettings(GroupSettings):
    """One autoscaled worker group."""

    name: str
    """The group's name (a DNS-1035 label, at most 40), unique in the cluster."""
    min_replicas: Count = Field(0, alias="minReplicas")
    """Workers kept running even when idle."""
    max_replicas: Count = Field(alias="maxReplicas")
    """The most workers the autoscaler adds."""
    node_selector: LabelMap = Field(default_factory=dict, alias="nodeSelector")
    """Node labels the group's pods are scheduled by (e.g. a GPU node pool)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > 40 or not DNS1035_LABEL.match(v):
            raise ValueError(
                "is not valid as a worker group name (lowercase letter first, then "
                "letters, digits, '-'; at most 40)"
            )
        return v


class JupyterSettings(Model):
    """JupyterLab on the dev head (never in prod), reachable through `kubectl port-forward`."""

    enabled: bool = False
    """true (dev only): JupyterLab beside Ray on the head; needs ray-platform:jupyterToken."""
    port: int = Field(8888, ge=1024, le=65535)
    """The port it listens on, on the pod's loopback only (reached by a port-forward)."""
    cpu: CpuQuantity = "500m"
    """The JupyterLab container's CPU (request = limit), on top of the head's."""
    memory: MemoryQuantity = "1Gi"
    """The JupyterLab container's memory (request = limit), on top of the head's."""
    version: SemVer = "4.6.6"
    """The JupyterLab release installed onto the shared file system beside the shared packages,
    when the image lacks it (rayproject/ray images do)."""


class AutoscalerSettings(Model):
    """The in-tree autoscaler sidecar KubeRay adds to the head pod (request = limit)."""

    cpu: CpuQuantity = "500m"
    """The sidecar's CPU; the default is KubeRay's own."""
    memory: MemoryQuantity = "512Mi"
    """KubeRay's own defaults; the sidecar counts against the head pod's requests."""


class RaySettings(Model):
    """The RayCluster and how code and dependencies reach it."""

    version: SemVer
    """The Ray version; the image's tag must carry the same."""
    image: ImageRef
    """The Ray image; prod: pinned by @sha256: digest."""
    base_image: ImageRef | None = Field(None, alias="baseImage")
    """The image the app image is built on (`ray-platform image build`): pinned by @sha256:
    digest, its tag carrying ray.version as ray.image's does. Prod stacks should set it; the
    stack exports it as `baseImage`."""
    cluster_name: str = Field("ray", alias="clusterName")
    """The RayCluster's name (a DNS-1035 label, at most 50)."""
    head: HeadSettings
    worker_groups: tuple[WorkerGroupSettings, ...] = Field((), alias="workerGroups")
    """Autoscaled worker groups."""
    runtime_env: dict[str, Any] = Field(default_factory=dict, alias="runtimeEnv")
    """The stack's default runtime_env for jobs (prod: no pip, conda or uv)."""
    shared_packages: tuple[str, ...] = Field((), alias="sharedPackages")
    """dev: pip requirement strings installed onto the shared file system (on PYTHONPATH)."""
    package_index: PackageIndexUrl | None = Field(None, alias="packageIndex")
    """A PEP 503 simple index (a private index or PyPI mirror) for clusters without egress to
    PyPI: the shared-packages installer, JupyterLab's install and runtime_env pip/uv use it."""
    idle_timeout_seconds: int = Field(60, alias="idleTimeoutSeconds", ge=10, le=86_400)
    """The autoscaler removes a worker idle this long."""
    auth: Literal["token", "disabled"] = "token"
    """token: the dashboard / Jobs API need the token KubeRay stores in a Secret (Ray ≥ 2.52)."""
    jupyter: JupyterSettings = Field(default_factory=lambda: JupyterSettings.model_validate({}))
    """JupyterLab on the dev head."""
    autoscaler: AutoscalerSettings = Field(
        default_factory=lambda: AutoscalerSettings.model_validate({})
    )
    """The autoscaler sidecar's resources."""

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, v: str) -> str:
        # KubeRay truncates longer names (utils.CheckName) and wants a DNS-1035 label.
        if len(v) > 50 or not DNS1035_LABEL.match(v):
            raise ValueError("is not a valid RayCluster name (DNS-1035 label, at most 50)")
        return v

    @model_validator(mode="after")
    def _unique_groups(self) -> RaySettings:
        seen: set[str] = set()
        for i, group in enumerate(self.worker_groups):
            if group.name in seen:
                raise KeyedError(f"workerGroups[{i}].name", group.name, "is used by two groups")
            seen.add(group.name)
        return self


@dataclass(frozen=True)
class StatefulPolicy:
    """What `mode` means for stateful resources, decided here once; every adapter reads it."""

    protect: bool
    """`protect` and `retain_on_delete` on file systems, buckets, keys and their guards."""
    force_destroy: bool
    """A bucket may be emptied by `pulumi destroy`."""
    backups: bool
    """File-system backups on."""
    customer_managed_keys: bool
    """Buckets (and the image repository) encrypted with a dedicated, rotating customer-managed
    key."""
    image_repository: bool
    """A registry repository for the app image (ECR, Artifact Registry): prod runs an image built
    and pushed by the pipeline; dev runs the generic Ray image and builds none."""

    @classmethod
    def for_mode(cls, mode: Mode) -> StatefulPolicy:
        prod = mode == "prod"
        return cls(
            protect=prod,
            force_destroy=not prod,
            backups=prod,
            customer_managed_keys=prod,
            image_repository=prod,
        )


class Settings(Model):
    """Everything the program needs, validated."""

    project: str
    stack: str
    mode: Mode
    """dev (generic Ray image, packages on the shared file system, Jupyter) or prod (image pinned
    by digest, no pip at run time; stateful resources protected). Independent of the stack name."""
    cloud: str
    """A key of the cloud table (`infra/clouds/__init__.py`): the block `ray-platform:<cloud>`
    holds the cloud's own settings."""
    kubernetes: KubernetesSettings = Field(
        default_factory=lambda: KubernetesSettings.model_validate({})
    )
    storage: StorageSettings = Field(default_factory=lambda: StorageSettings.model_validate({}))
    operator: OperatorSettings = Field(default_factory=lambda: OperatorSettings.model_validate({}))
    ray: RaySettings
    jupyter_token: SecretStr | None = Field(None, alias="jupyterToken")
    """JupyterLab's token, a Pulumi secret (`pulumi config set --secret ray-platform:jupyterToken
    …`, 16 or more characters); never shown. The program hands it to resources as Pulumi's config
    API reads it (`infra.settings.secrets`), so it stays a secret."""
    cloud_settings: InstanceOf[CloudSettings]
    """The cloud's own block, as its model (e.g. `AwsSettings`)."""

    LOADER_FIELDS: ClassVar[tuple[str, ...]] = ("project", "stack", "cloud_settings")
    """Filled in by the loader, not read from a cloud-neutral key of the stack file."""

    @classmethod
    def stack_file_keys(cls) -> tuple[str, ...]:
        """The cloud-neutral keys a stack file sets under `ray-platform:` (the fields' aliases)."""
        return tuple(
            f.alias or name for name, f in cls.model_fields.items() if name not in cls.LOADER_FIELDS
        )

    @property
    def bucket_prefix(self) -> str:
        return self.storage.artifact_bucket.prefix or self.stack

    @property
    def stateful(self) -> StatefulPolicy:
        return StatefulPolicy.for_mode(self.mode)
