"""Synthetic resources shaped like the provider inputs the program sends (camelCase)."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.policy.harness import Resource, urn

FS = "aws:efs/fileSystem:FileSystem"
BUCKET = "aws:s3/bucket:Bucket"
RAY = "kubernetes:ray.io/v1:RayCluster"
ECR = "aws:ecr/repository:Repository"
AR = "gcp:artifactregistry/repository:Repository"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/ray-app:2.52.0-py311@{DIGEST}"
ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE"
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def dep(typ: str, name: str) -> tuple[str]:
    return (urn(typ, name),)


def container(name: str, *, bucket: bool = True, mode: str = "prod") -> dict[str, Any]:
    env = [{"name": "RAY_PLATFORM_MODE", "value": mode}]
    if bucket:
        env.append({"name": "RAY_PLATFORM_BUCKET_URI", "value": "s3://b/ray/prod"})
    return {
        "name": name,
        "image": IMAGE,
        "env": env,
        "resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "8Gi"}},
        "securityContext": copy.deepcopy(RESTRICTED),
    }


def raycluster() -> dict[str, Any]:
    pod_sc = {
        "runAsNonRoot": True,
        "runAsUser": 1000.0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "ray", "namespace": "ray"},
        "spec": {
            "rayVersion": "2.52.0",
            "headGroupSpec": {
                "serviceType": "ClusterIP",
                "template": {
                    "spec": {
                        "serviceAccountName": "ray-head",
                        "securityContext": dict(pod_sc),
                        "containers": [container("ray-head")],
                        "volumes": [
                            {"name": "shared", "persistentVolumeClaim": {"claimName": "s"}}
                        ],
                    }
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "cpu",
                    "minReplicas": 0.0,
                    "maxReplicas": 2.0,
                    "template": {
                        "spec": {
                            "serviceAccountName": "ray-worker",
                            "securityContext": dict(pod_sc),
                            "containers": [container("ray-worker")],
                        }
                    },
                }
            ],
        },
    }


def policy_doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


DENY_NON_TLS = {
    "Sid": "DenyNonTls",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


def ecr_lifecycle(tag_status: str = "untagged") -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1.0,
                    "selection": {
                        "tagStatus": tag_status,
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 14.0,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


AR_CLEANUP = [
    {
        "id": "delete-untagged",
        "action": "DELETE",
        "condition": {"tagState": "UNTAGGED", "olderThan": "1209600s"},
    },
    {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 10.0}},
]


def good_stack() -> list[Resource]:
    """A prod stack that every rule accepts."""
    stateful: dict[str, Any] = {"protect": True, "retain_on_delete": True}
    fs_dep = dep(FS, "fs")
    b_dep = dep(BUCKET, "bucket")
    return [
        Resource(FS, "fs", {"encrypted": True, "throughputMode": "elastic"}, **stateful),
        Resource(
            "aws:efs/backupPolicy:BackupPolicy",
            "fs-backup",
            {"backupPolicy": {"status": "ENABLED"}},
            dependencies=fs_dep,
        ),
        Resource(
            "aws:efs/fileSystemPolicy:FileSystemPolicy",
            "fs-policy",
            {"policy": policy_doc({**DENY_NON_TLS, "Action": "*"})},
            dependencies=fs_dep,
        ),
        Resource(
            "aws:efs/accessPoint:AccessPoint",
            "fs-ap",
            {"rootDirectory": {"path": "/ray"}, "posixUser": {"uid": 1000.0, "gid": 1000.0}},
            dependencies=fs_dep,
        ),
        Resource(
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "nfs",
            {
                "fromPort": 2049.0,
                "toPort": 2049.0,
                "ipProtocol": "tcp",
                "referencedSecurityGroupId": "sg-1",
            },
        ),
        Resource(BUCKET, "bucket", {"forceDestroy": False}, **stateful),
        Resource("aws:kms/key:Key", "key", {"enableKeyRotation": True}, **stateful),
        Resource(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "pab",
            {
                "bucket": "b",
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
            dependencies=b_dep,
        ),
        Resource(
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "own",
            {"bucket": "b", "rule": {"objectOwnership": "BucketOwnerEnforced"}},
            dependencies=b_dep,
        ),
        Resource(
            "aws:s3/bucketServerSideEncryptionConfiguration:"
            "BucketServerSideEncryptionConfiguration",
            "sse",
            {
                "bucket": "b",
                "rules": [
                    {
                        "applyServerSideEncryptionByDefault": {
                            "sseAlgorithm": "aws:kms",
                            "kmsMasterKeyId": "arn:aws:kms:k",
                        }
                    }
                ],
            },
            dependencies=b_dep,
        ),
        Resource(
            "aws:s3/bucketVersioning:BucketVersioning",
            "ver",
            {"bucket": "b", "versioningConfiguration": {"status": "Enabled"}},
            dependencies=b_dep,
        ),
        Resource(
            "aws:s3/bucketPolicy:BucketPolicy",
            "tls",
            {"bucket": "b", "policy": policy_doc(DENY_NON_TLS)},
            dependencies=b_dep,
        ),
        Resource(
            "aws:iam/role:Role",
            "irsa",
            {
                "assumeRolePolicy": policy_doc(
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Principal": {"Federated": f"arn:aws:iam::1:oidc-provider/{ISSUER}"},
                        "Condition": {
                            "StringEquals": {
                                f"{ISSUER}:sub": "system:serviceaccount:ray:ray",
                                f"{ISSUER}:aud": "sts.amazonaws.com",
                            }
                        },
                    }
                )
            },
        ),
        Resource(
            "aws:iam/rolePolicy:RolePolicy",
            "irsa-policy",
            {
                "policy": policy_doc(
                    {
                        "Sid": "Objects",
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject"],
                        "Resource": "arn:aws:s3:::b/ray/prod/*",
                    }
                )
            },
        ),
        Resource(
            "gcp:storage/bucket:Bucket",
            "gcs",
            {
                "uniformBucketLevelAccess": True,
                "publicAccessPrevention": "enforced",
                "versioning": {"enabled": True},
                "forceDestroy": False,
            },
            **stateful,
        ),
        Resource(
            "gcp:storage/bucketIAMMember:BucketIAMMember",
            "gcs-member",
            {
                "bucket": "gcs",
                "role": "roles/storage.objectUser",
                "member": "principal://iam.googleapis.com/projects/1/locations/global/"
                "workloadIdentityPools/p.svc.id.goog/subject/ns/ray/sa/ray",
            },
        ),
        Resource(
            "gcp:projects/iAMMember:IAMMember",
            "logs",
            {"project": "p", "role": "roles/logging.logWriter", "member": "serviceAccount:x"},
        ),
        Resource(
            "gcp:filestore/instance:Instance",
            "filestore",
            {"deletionProtectionEnabled": True, "tier": "BASIC_HDD"},
            **stateful,
        ),
        Resource(
            "gcp:backupdisasterrecovery/backupVault:BackupVault",
            "filestore-vault",
            {"backupMinimumEnforcedRetentionDuration": "3024000s", "location": "us-central1"},
            **stateful,
        ),
        Resource(
            "gcp:backupdisasterrecovery/backupPlan:BackupPlan",
            "filestore-plan",
            {
                "resourceType": "file.googleapis.com/Instance",
                "backupRules": [
                    {
                        "ruleId": "daily",
                        "backupRetentionDays": 35.0,
                        "standardSchedule": {"recurrenceType": "DAILY", "timeZone": "UTC"},
                    }
                ],
            },
            dependencies=dep(
                "gcp:backupdisasterrecovery/backupVault:BackupVault", "filestore-vault"
            ),
            **stateful,
        ),
        Resource(
            "gcp:backupdisasterrecovery/backupPlanAssociation:BackupPlanAssociation",
            "filestore-backup",
            {"resourceType": "file.googleapis.com/Instance"},
            dependencies=(
                *dep("gcp:filestore/instance:Instance", "filestore"),
                *dep("gcp:backupdisasterrecovery/backupPlan:BackupPlan", "filestore-plan"),
            ),
            **stateful,
        ),
        Resource("gcp:kms/cryptoKey:CryptoKey", "gkey", {"rotationPeriod": "7776000s"}, **stateful),
        Resource(
            ECR,
            "ecr",
            {
                "name": "ray-platform-prod",
                "imageTagMutability": "IMMUTABLE",
                "imageScanningConfiguration": {"scanOnPush": True},
                "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": "arn:aws:kms:k"}],
            },
            **stateful,
        ),
        Resource(
            "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            "ecr-lifecycle",
            {"repository": "ray-platform-prod", "policy": ecr_lifecycle()},
            dependencies=dep(ECR, "ecr"),
            **stateful,
        ),
        Resource(
            AR,
            "ar",
            {
                "format": "DOCKER",
                "repositoryId": "ray-platform-prod",
                "kmsKeyName": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
                "dockerConfig": {"immutableTags": True},
                "cleanupPolicies": copy.deepcopy(AR_CLEANUP),
                "cleanupPolicyDryRun": False,
            },
            **stateful,
        ),
        Resource(
            "kubernetes:core/v1:Namespace",
            "ns",
            {
                "metadata": {
                    "name": "ray",
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                }
            },
        ),
        Resource(
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "netpol",
            {
                "metadata": {"name": "ray", "namespace": "ray"},
                "spec": {"podSelector": {"matchLabels": {"ray.io/cluster": "ray"}}},
            },
        ),
        Resource(
            "kubernetes:core/v1:ConfigMap",
            "runtime-env",
            {
                "metadata": {"name": "ray-runtime-env", "namespace": "ray"},
                "data": {"runtime_env.json": json.dumps({"env_vars": {"A": "b"}})},
            },
        ),
        Resource(RAY, "ray", raycluster()),
    ]


def replace(
    stack: list[Resource], name: str, inputs: dict[str, Any] | None = None, **changes: Any
) -> list[Resource]:
    """`stack` with resource `name` given new inputs/options."""
    out = []
    for r in stack:
        if r.name == name:
            fields = {**r.__dict__, **changes}
            if inputs is not None:
                fields["inputs"] = inputs
            r = Resource(**fields)
        out.append(r)
    return out


def inputs_of(stack: list[Resource], name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(next(r for r in stack if r.name == name).inputs))
