"""Shared fixtures: run the real `__main__.py` for a stack file under Pulumi mocks.

The mocks stand in for the AWS and Kubernetes providers (which cannot run here): data sources
return realistic EKS shapes (camelCase, as the provider sends them); created resources echo their
inputs plus the ids/ARNs AWS would assign. A recording monitor keeps every registration with its
options (parent, protect, retain_on_delete, dependencies, provider) for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import runpy
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

from tools.engine import stack_file_config

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
        if typ.startswith("kubernetes:") and args.custom:
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault("name", f"{name}-5f4e3d2c")
            state["metadata"] = metadata
            ns = metadata.get("namespace")
            return (f"{ns}/{metadata['name']}" if ns else metadata["name"]), state
        return f"{name}-id", state


@dataclass
class Registration:
    """One RegisterResource request, as the engine would see it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str
    inputs: dict[str, Any]
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    """Each alias as text (the old type or name a resource was known by)."""


class RecordingMonitor(pmocks.MockMonitor):
    """A mock monitor that also keeps the options of every registration."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=request.custom,
                    parent=request.parent,
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    inputs=rpc.deserialize_properties(request.object),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    replace_on_changes=list(request.replaceOnChanges),
                    aliases=[str(a).replace("\n", " ") for a in request.aliases],
                )
            )
        return response


@dataclass
class ProgramRun:
    """The outcome of running `__main__.py` once under mocks."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]


TEST_SECRETS = {"ray-platform:jupyterToken": "test-jupyter-token-0123456789abcdef"}
"""What `pulumi config set --secret` adds beside a stack file (never committed to one)."""


def stack_config(stack: str) -> dict[str, Any]:
    """A stack file's `config:` section as written (one reader for the mock and e2e tiers),
    plus the secrets a user sets with `pulumi config set --secret`."""
    return {**TEST_SECRETS, **stack_file_config(stack)}


def flatten(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to the program: strings, structured values as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return _sync_await(value.future())
    return value


def run_program(
    stack: str,
    config: Mapping[str, Any] | None = None,
    *,
    preview: bool = False,
    mocks: PlatformMocks | None = None,
    monitor: RecordingMonitor | None = None,
) -> ProgramRun:
    """Run the real `__main__.py` with `config` (default: the stack file's) under mocks.

    Pass a `monitor` to inspect what was registered even when the program raises.
    """
    # Pulumi's mocks need a current event loop; code run earlier in the process (asyncio.run)
    # may have left none.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = mocks or PlatformMocks()
    monitor = monitor or RecordingMonitor(mocks)
    monitor.mocks = mocks
    pulumi.runtime.set_all_config(flatten(stack_config(stack) if config is None else config))
    pulumi.runtime.set_mocks(
        mocks, project="ray-platform", stack=stack, preview=preview, monitor=monitor
    )
    exported: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(name: str, value: Any) -> None:
        exported[name] = value
        original_export(name, value)

    pulumi.export = capture
    try:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        outputs = {k: _resolve(v) for k, v in exported.items()}
        _sync_await(pulumi.runtime.stack.wait_for_rpcs())
    except BaseException:
        # Registrations are asynchronous: let those already started reach the monitor, so a
        # test can see whether anything was registered before the failure.
        with contextlib.suppress(BaseException):
            _sync_await(pulumi.runtime.stack.wait_for_rpcs())
        raise
    finally:
        pulumi.export = original_export
    return ProgramRun(monitor.registrations, outputs, mocks.calls)


def fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new Python from the project root: what a module loads at import time is
    seen only there, not in this test process where everything is loaded already."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


_CACHE: dict[str, ProgramRun] = {}


def cached_run(stack: str) -> ProgramRun:
    """The stack file's run, once per session (the program is deterministic)."""
    if stack not in _CACHE:
        _CACHE[stack] = run_program(stack)
    return _CACHE[stack]


@pytest.fixture(params=["dev", "prod"])
def aws_run(request: pytest.FixtureRequest) -> Iterator[ProgramRun]:
    yield cached_run(request.param)
