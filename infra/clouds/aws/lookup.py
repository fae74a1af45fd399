"""EKS lookups: what the program needs to know about an existing cluster, from its name."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.clouds.lookup import exec_kubeconfig, provider_reason
from infra.settings import setting_error

# Region-letter zones (us-west-2a, us-gov-west-1a, us-iso-east-1a, eusc-de-east-1a); Local
# Zones (us-west-2-lax-1a) and Wavelength zones carry a location suffix and never match.
_STANDARD_ZONE = re.compile(r"^[a-z]+(-[a-z]+)+-\d[a-z]$")


@dataclass(frozen=True)
class Subnet:
    id: str
    availability_zone: str
    map_public_ip_on_launch: bool
    tags: Mapping[str, str]

    @property
    def tagged_private(self) -> bool:
        """EKS's convention: private subnets carry kubernetes.io/role/internal-elb."""
        return "kubernetes.io/role/internal-elb" in self.tags


@dataclass(frozen=True)
class EksCluster:
    """What the program needs to know about an existing EKS cluster, looked up by name."""

    name: str
    arn: str
    endpoint: str
    certificate_authority: str
    vpc_id: str
    vpc_cidrs: tuple[str, ...]
    """Every IPv4 CIDR block of the VPC (primary and associated)."""
    cluster_security_group_id: str
    subnets: tuple[Subnet, ...]
    """Every subnet of the VPC, not only those the cluster was created with: nodes (Karpenter,
    other node groups) may run in any of them."""
    oidc_issuer: str
    """Issuer without https://."""
    oidc_provider_arn: str | None
    """None when the account has no IAM OIDC provider for the issuer (`eks_problems` refuses)."""
    partition: str

    @property
    def irsa_provider_arn(self) -> str:
        """The IAM OIDC provider IRSA roles trust: there is one once `eks_problems` passed."""
        if self.oidc_provider_arn is None:
            raise ValueError(f"cluster {self.name} has no IAM OIDC provider")
        return self.oidc_provider_arn


def one_private_subnet_per_zone(subnets: Iterable[Subnet]) -> dict[str, str]:
    """EFS allows one mount target per zone, and every zone with nodes needs one: zone → the
    best subnet there. Preferred: tagged kubernetes.io/role/internal-elb (EKS's private), then
    one that maps no public IPs and is not tagged for public load balancers, then any (a mount
    target only needs to be in the zone and the VPC; its security group does the guarding).
    """
    chosen: dict[str, str] = {}
    by_zone: dict[str, list[Subnet]] = {}
    for subnet in sorted(subnets, key=lambda s: s.id):
        by_zone.setdefault(subnet.availability_zone, []).append(subnet)
    for zone, candidates in by_zone.items():
        tagged = [s for s in candidates if s.tagged_private]
        quiet = [
            s
            for s in candidates
            if not s.map_public_ip_on_launch and "kubernetes.io/role/elb" not in s.tags
        ]
        chosen[zone] = (tagged or quiet or candidates)[0].id
    return dict(sorted(chosen.items()))


def lookup_cluster(name: str, provider: aws.Provider) -> EksCluster:
    """Data-source lookups from the cluster's name: VPC, subnets, security group, OIDC issuer,
    each through the stack's own provider (its region, never the ambient one)."""
    opts = pulumi.InvokeOptions(provider=provider)
    try:
        cluster = aws.eks.get_cluster(name=name, opts=opts)
    except Exception as err:
        raise setting_error(
            "aws.clusterName", name, f"could not be looked up: {provider_reason(err)}"
        ) from None
    vpc = cluster.vpc_config
    issuer_url = cluster.identities[0].oidcs[0].issuer
    issuer = issuer_url.removeprefix("https://")
    oidc_provider_arn: str | None = None
    try:
        oidc_provider_arn = aws.iam.get_open_id_connect_provider(url=issuer_url, opts=opts).arn
    except Exception as err:
        reason = provider_reason(err)
        # A missing provider is a fact about the cluster, for the checks to report beside the
        # others; any other failure leaves nothing to check.
        if "not found" not in reason.lower() and "nosuchentity" not in reason.lower():
            raise setting_error(
                "aws.clusterName",
                name,
                f"has an IAM OIDC provider for {issuer} that could not be looked up: {reason}",
            ) from None
    network = aws.ec2.get_vpc(id=vpc.vpc_id, opts=opts)
    cidrs = [network.cidr_block] + [
        a.cidr_block for a in network.cidr_block_associations or [] if a.state == "associated"
    ]
    vpc_subnet_ids = aws.ec2.get_subnets(
        filters=[{"name": "vpc-id", "values": [vpc.vpc_id]}], opts=opts
    ).ids
    subnets = tuple(
        Subnet(
            id=s.id,
            availability_zone=s.availability_zone,
            map_public_ip_on_launch=s.map_public_ip_on_launch,
            tags=dict(s.tags or {}),
        )
        for s in (
            aws.ec2.get_subnet(id=subnet_id, opts=opts) for subnet_id in sorted(set(vpc_subnet_ids))
        )
        # EFS mount targets exist only in Availability Zones, on IPv4: not in Local Zones or
        # Wavelength (zone names with a location suffix), on Outposts, or in IPv6-only subnets.
        if _STANDARD_ZONE.match(s.availability_zone) and not s.outpost_arn and not s.ipv6_native
    )
    return EksCluster(
        name=name,
        arn=cluster.arn,
        endpoint=cluster.endpoint,
        certificate_authority=cluster.certificate_authorities[0].data,
        vpc_id=vpc.vpc_id,
        vpc_cidrs=tuple(dict.fromkeys(c for c in cidrs if c)),
        cluster_security_group_id=vpc.cluster_security_group_id,
        subnets=subnets,
        oidc_issuer=issuer,
        oidc_provider_arn=oidc_provider_arn,
        partition=aws.get_partition(opts=opts).partition,
    )


def kubeconfig(cluster: EksCluster, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials)."""
    return exec_kubeconfig(
        name=cluster.name,
        server=cluster.endpoint,
        certificate_authority=cluster.certificate_authority,
        exec_={
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster.name, "--region", region],
        },
    )


def alias_target(alias_arn: str, provider: aws.Provider) -> str | None:
    """The key ARN a KMS alias ARN names now, or None when it cannot be resolved."""
    name = "alias/" + alias_arn.split(":alias/", 1)[1]
    try:
        target: str = aws.kms.get_alias(
            name=name, opts=pulumi.InvokeOptions(provider=provider)
        ).target_key_arn
    except Exception:
        return None
    return target
