"""EFS: encryption, TLS-only access, scoped access points, private NFS, prod backups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policy.common import (
    PROD,
    as_list,
    linked,
    mode,
    of_type,
    path,
    policy_statements,
    resource_rule,
    stack_rule,
    tls_only,
)

FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
FILE_SYSTEM_POLICY = "aws:efs/fileSystemPolicy:FileSystemPolicy"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
BACKUP_POLICY = "aws:efs/backupPolicy:BackupPolicy"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
NFS_PORT = 2049
OPEN = ("0.0.0.0/0", "::/0")


def _encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.props.get("encrypted") is not True:
        report("the file system is not encrypted at rest (encrypted is not true)", None)


def _tls_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    policies = of_type(args.resources, FILE_SYSTEM_POLICY)
    for fs in of_type(args.resources, FILE_SYSTEM):
        mine = [p for p in policies if linked(p, fs, "fileSystemId")]
        if not mine:
            report(
                f"file system {fs.name} has no file-system policy refusing non-TLS clients", fs.urn
            )
        for p in mine:
            if not tls_only(policy_statements(p.props.get("policy"), f"{p.name} policy")):
                report(f"{p.name} does not deny aws:SecureTransport = false", p.urn)


def _access_point(args: ResourceValidationArgs, report: ReportViolation) -> None:
    root = path(args.props, "rootDirectory", "path") or "/"
    if str(root).rstrip("/") == "":
        report("the access point is rooted at / (the whole file system)", None)
    user = args.props.get("posixUser")
    if not isinstance(user, Mapping) or user.get("uid") is None:
        report("the access point sets no posixUser, so clients keep their own uid", None)


def _covers_nfs(rule: Mapping[str, Any]) -> bool:
    proto = str(rule.get("ipProtocol", rule.get("protocol", "tcp"))).lower()
    if proto in ("-1", "all"):
        return True
    low, high = rule.get("fromPort"), rule.get("toPort")
    if low is None or high is None:
        return False
    return proto in ("tcp", "6") and float(low) <= NFS_PORT <= float(high)


def _open_cidrs(rule: Mapping[str, Any]) -> list[str]:
    cidrs = [
        *as_list(rule.get("cidrIpv4")),
        *as_list(rule.get("cidrIpv6")),
        *as_list(rule.get("cidrBlocks")),
        *as_list(rule.get("ipv6CidrBlocks")),
    ]
    return [str(c) for c in cidrs if c in OPEN]


def _nfs_private(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == SECURITY_GROUP:
        rules = [r for r in as_list(args.props.get("ingress")) if isinstance(r, Mapping)]
    elif args.resource_type == SG_RULE and args.props.get("type") != "ingress":
        return
    else:
        rules = [args.props]
    for rule in rules:
        if _covers_nfs(rule) and _open_cidrs(rule):
            report(f"NFS (TCP {NFS_PORT}) is open to {', '.join(_open_cidrs(rule))}", None)


def _backups(args: StackValidationArgs, report: ReportViolation) -> None:
    if mode(args) != PROD:
        return
    backups = of_type(args.resources, BACKUP_POLICY)
    for fs in of_type(args.resources, FILE_SYSTEM):
        mine = [b for b in backups if linked(b, fs, "fileSystemId")]
        if not any(path(b.props, "backupPolicy", "status") == "ENABLED" for b in mine):
            report(f"prod file system {fs.name} has no EFS backup policy ENABLED", fs.urn)


POLICIES: list[Policy] = [
    resource_rule(
        "efs-encrypted",
        "EFS file systems are encrypted at rest.",
        "Set encrypted=True on the aws.efs.FileSystem (optionally with a KMS key).",
        _encrypted,
        types=[FILE_SYSTEM],
    ),
    stack_rule(
        "efs-tls-only-policy",
        "Every EFS file system has a file-system policy that denies non-TLS clients.",
        "Attach an aws.efs.FileSystemPolicy with a Deny on aws:SecureTransport = false.",
        _tls_policy,
    ),
    resource_rule(
        "efs-access-point-scoped",
        "EFS access points are not rooted at / and enforce a POSIX user.",
        "Give the access point rootDirectory.path (e.g. /ray) and posixUser uid/gid (1000).",
        _access_point,
        types=[ACCESS_POINT],
    ),
    resource_rule(
        "efs-nfs-not-public",
        "NFS (TCP 2049) is never open to 0.0.0.0/0 or ::/0.",
        "Allow NFS only from the cluster security group (referencedSecurityGroupId).",
        _nfs_private,
        types=[INGRESS_RULE, SG_RULE, SECURITY_GROUP],
    ),
    stack_rule(
        "efs-backups-prod",
        "Prod EFS file systems have AWS Backup enabled.",
        "Add an aws.efs.BackupPolicy with backupPolicy.status ENABLED for the file system.",
        _backups,
        moded=True,
    ),
]
