"""Provider answers for AWS stacks (and the Kubernetes resources every stack registers).

Data sources return realistic EKS shapes (camelCase, as the provider sends them); created
resources echo their inputs plus the ids/ARNs AWS would assign.
"""

from __future__ import annotations

from typing import Any

import pulumi

ACCOUNT = "123456789012"
REGION = "us-west-2"
ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/5C8E0A9B1D2F3E4A5B6C7D8E9F0A1B2C"
CLUSTER_SG = "sg-0c1a2b3c4d5e6f708"
VPC = "vpc-0a1b2c3d4e5f60718"
# Three zones, each with a private and a public subnet, plus a second private subnet in 2a.
SUBNETS = {
    "subnet-0priv2a0000000001": ("us-west-2a", False, {"kubernetes.io/role/internal-elb": "1"}),
    "subnet-0priv2a0000000002": ("us-west-2a", False, {"kubernetes.io/role/internal-elb": "1"}),
    "subnet-0priv2b0000000003": ("us-west-2b", False, {"kubernetes.io/role/internal-elb": "1"}),
    "subnet-0priv2c0000000004": ("us-west-2c", False, {"kubernetes.io/role/internal-elb": "1"}),
    # 2d: only an untagged subnet; it still gets the zone's mount target.
    "subnet-0untagged000000008": ("us-west-2d", False, {}),
    "subnet-0pub2a00000000005": ("us-west-2a", True, {"kubernetes.io/role/elb": "1"}),
    "subnet-0pub2b00000000006": ("us-west-2b", True, {"kubernetes.io/role/elb": "1"}),
    "subnet-0pub2c00000000007": ("us-west-2c", True, {"kubernetes.io/role/elb": "1"}),
}
# Subnets of the VPC the cluster was not created with (e.g. added later for Karpenter nodes):
# nodes may run there, so their zone needs a mount target too.
VPC_ONLY_SUBNETS = {
    "subnet-0karp2e0000000009": ("us-west-2e", False, {"kubernetes.io/role/internal-elb": "1"}),
}
VPC_CIDRS = ("10.0.0.0/16", "100.64.0.0/16")


def eks_cluster(name: str) -> dict[str, Any]:
    """aws:eks/getCluster as the provider returns it for a standard managed cluster."""
    return {
        "id": name,
        "name": name,
        "arn": f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{name}",
        "endpoint": "https://5C8E0A9B1D2F3E4A5B6C7D8E9F0A1B2C.gr7.us-west-2.eks.amazonaws.com",
        "certificateAuthorities": [{"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}],
        "identities": [{"oidcs": [{"issuer": f"https://{ISSUER}"}]}],
        "vpcConfig": {
            "vpcId": VPC,
            "subnetIds": list(SUBNETS),
            "clusterSecurityGroupId": CLUSTER_SG,
            "securityGroupIds": [],
            "endpointPrivateAccess": True,
            "endpointPublicAccess": True,
            "publicAccessCidrs": ["0.0.0.0/0"],
        },
        "version": "1.34",
        "platformVersion": "eks.9",
        "status": "ACTIVE",
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{name}-cluster",
        "createdAt": "2026-01-01T00:00:00Z",
        "tags": {},
        "accessConfigs": [],
        "computeConfigs": [],
        "enabledClusterLogTypes": [],
        "kubernetesNetworkConfigs": [],
        "outpostConfigs": [],
        "remoteNetworkConfigs": [],
        "storageConfigs": [],
        "upgradePolicies": [],
        "zonalShiftConfigs": [],
        "clusterId": "",
        "deletionProtection": False,
        "region": REGION,
    }


def subnet(subnet_id: str) -> dict[str, Any]:
    zone, public, tags = {**SUBNETS, **VPC_ONLY_SUBNETS}[subnet_id]
    return {
        "id": subnet_id,
        "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/{subnet_id}",
        "availabilityZone": zone,
        "availabilityZoneId": zone.replace("us-west-", "usw2-az"),
        "mapPublicIpOnLaunch": public,
        "tags": tags,
        "vpcId": VPC,
        "cidrBlock": "10.0.0.0/19",
        "state": "available",
        "ownerId": ACCOUNT,
    }


class PlatformMocks(pulumi.runtime.Mocks):
    """Provider stand-ins with realistic ids and ARNs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        self.calls.append((args.token, dict(args.args)))
        token = args.token
        if token == "aws:eks/getCluster:getCluster":
            return eks_cluster(args.args["name"])
        if token == "aws:ec2/getSubnet:getSubnet":
            return subnet(args.args["id"])
        if token == "aws:ec2/getSubnets:getSubnets":
            (vpc_filter,) = args.args["filters"]
            assert vpc_filter == {"name": "vpc-id", "values": [VPC]}, vpc_filter
            return {"id": REGION, "ids": [*SUBNETS, *VPC_ONLY_SUBNETS], "filters": [vpc_filter]}
        if token == "aws:ec2/getVpc:getVpc":
            return {
                "id": args.args["id"],
                "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{args.args['id']}",
                "cidrBlock": VPC_CIDRS[0],
                "cidrBlockAssociations": [
                    {"associationId": f"vpc-cidr-assoc-{i}", "cidrBlock": c, "state": "associated"}
                    for i, c in enumerate(VPC_CIDRS)
                ],
                "ipv6CidrBlock": "",
                "default": False,
                "state": "available",
                "ownerId": ACCOUNT,
                "tags": {},
            }
        if token == "aws:kms/getAlias:getAlias":
            name = args.args["name"]
            if name == "alias/missing":
                raise Exception("reading KMS Alias (alias/missing): couldn't find resource")
            key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/5c1d0000-aaaa-bbbb-cccc-000000000000"
            return {
                "id": f"arn:aws:kms:{REGION}:{ACCOUNT}:{name}",
                "arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:{name}",
                "name": name,
                "targetKeyArn": key,
                "targetKeyId": key.rsplit("/", 1)[1],
            }
        if token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
            url = args.args["url"]
            return {
                "id": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}",
                "arn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{url.removeprefix('https://')}",
                "url": url.removeprefix("https://"),
                "clientIdLists": ["sts.amazonaws.com"],
                "thumbprintLists": ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
                "tags": {},
            }
        if token == "aws:index/getPartition:getPartition":
            return {
                "id": "aws",
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }
        raise AssertionError(f"unexpected data source {token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        typ, name = args.typ, args.name
        if typ.startswith("pulumi:providers:"):
            # An explicit provider (the cloud adapters build their own): the engine gives it an
            # id and keeps its inputs as its configuration.
            return f"{name}-provider-id", state
        if typ == "aws:s3/bucket:Bucket":
            bucket = f"{name}-a1b2c3d"
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            return bucket, state
        if typ == "aws:efs/fileSystem:FileSystem":
            fs_id = "fs-0f1e2d3c4b5a69788"
            state.update(arn=f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{fs_id}")
            return fs_id, state
        if typ == "aws:efs/accessPoint:AccessPoint":
            ap_id = "fsap-0a9b8c7d6e5f40312"
            state.update(arn=f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/{ap_id}")
            return ap_id, state
        if typ == "aws:iam/role:Role":
            state.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{name}-7e6d5c4", name=f"{name}-7e6d5c4")
            return f"{name}-7e6d5c4", state
        if typ == "aws:kms/key:Key":
            key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
            state.update(arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}", keyId=key_id)
            return key_id, state
        if typ == "aws:ec2/securityGroup:SecurityGroup":
            return "sg-0efs000000000001", state
        if typ == "aws:ecr/repository:Repository":
            repo = state["name"]
            state.update(
                arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo}",
                registryId=ACCOUNT,
                repositoryUrl=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}",
            )
            return repo, state
        if typ.startswith("kubernetes:") and args.custom:
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault("name", f"{name}-5f4e3d2c")
            state["metadata"] = metadata
            ns = metadata.get("namespace")
            return (f"{ns}/{metadata['name']}" if ns else metadata["name"]), state
        return f"{name}-id", state
