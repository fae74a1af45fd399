"""Every rule, with a passing case (the good prod stack) and a failing one (one weakening)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policy.pack import POLICIES, config_for
from tests.policy import stacks
from tests.policy.harness import Resource, run
from tests.policy.stacks import good_stack, inputs_of, replace

PROD = config_for("prod")
DEV = config_for("dev")
Stack = list[Resource]


def ray(edit: Callable[[dict[str, Any]], None]) -> Callable[[Stack], Stack]:
    def mutate(stack: Stack) -> Stack:
        rc = inputs_of(stack, "ray")
        edit(rc["spec"])
        return replace(stack, "ray", rc)

    return mutate


def head(spec: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = spec["headGroupSpec"]["template"]["spec"]
    return pod


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = spec["workerGroupSpecs"][0]["template"]["spec"]
    return pod


def edit(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Stack], Stack]:
    def mutate(stack: Stack) -> Stack:
        inputs = inputs_of(stack, name)
        change(inputs)
        return replace(stack, name, inputs)

    return mutate


def drop(name: str) -> Callable[[Stack], Stack]:
    return lambda stack: [r for r in stack if r.name != name]


def add(r: Resource) -> Callable[[Stack], Stack]:
    return lambda stack: [*stack, r]


def jupyter(token: bool) -> Callable[[dict[str, Any]], None]:
    def put(spec: dict[str, Any]) -> None:
        c = stacks.container("jupyter")
        if token:
            # As the program renders it: the Secret mounted, its file in JUPYTER_TOKEN_FILE.
            c["env"].append({"name": "JUPYTER_TOKEN_FILE", "value": "/etc/jupyter-token/token"})
            c.setdefault("volumeMounts", []).append(
                {"name": "jupyter-token", "mountPath": "/etc/jupyter-token", "readOnly": True}
            )
            head(spec).setdefault("volumes", []).append(
                {"name": "jupyter-token", "secret": {"secretName": "ray-jupyter"}}
            )
        else:
            c["env"].append({"name": "JUPYTER_TOKEN", "value": "hunter2"})
        # As the program renders it: a native sidecar.
        head(spec).setdefault("initContainers", []).append({**c, "restartPolicy": "Always"})

    return put


def _sc(where: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Any:
    return ray(lambda s: where(s)["containers"][0]["securityContext"].__setitem__(key, value))


IRSA_STRINGLIKE = json.dumps(
    {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Principal": {"Federated": "arn"},
                "Condition": {
                    "StringLike": {f"{stacks.ISSUER}:sub": "system:serviceaccount:ray:*"},
                    "StringEquals": {f"{stacks.ISSUER}:aud": "sts.amazonaws.com"},
                },
            }
        ]
    }
)

# rule id -> (weakening, other rule ids the same weakening trips by design)
FAILING: dict[str, tuple[Callable[[Stack], Stack], set[str]]] = {
    "efs-encrypted": (edit("fs", lambda i: i.__setitem__("encrypted", False)), set()),
    "efs-tls-only-policy": (drop("fs-policy"), set()),
    "efs-access-point-scoped": (
        edit("fs-ap", lambda i: i.__setitem__("rootDirectory", {"path": "/"})),
        set(),
    ),
    "efs-nfs-not-public": (
        edit("nfs", lambda i: i.update(cidrIpv4="0.0.0.0/0", referencedSecurityGroupId=None)),
        set(),
    ),
    "efs-backups-prod": (
        edit("fs-backup", lambda i: i.__setitem__("backupPolicy", {"status": "DISABLED"})),
        set(),
    ),
    "s3-public-access-blocked": (
        edit("pab", lambda i: i.__setitem__("restrictPublicBuckets", False)),
        set(),
    ),
    "s3-encrypted": (drop("sse"), {"s3-prod-sse-kms"}),
    "s3-prod-sse-kms": (
        edit(
            "sse",
            lambda i: i.__setitem__(
                "rules", [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
            ),
        ),
        set(),
    ),
    "s3-versioning": (
        edit("ver", lambda i: i.__setitem__("versioningConfiguration", {"status": "Suspended"})),
        set(),
    ),
    "s3-ownership-enforced": (
        edit("own", lambda i: i.__setitem__("rule", {"objectOwnership": "ObjectWriter"})),
        set(),
    ),
    "s3-tls-only-policy": (
        edit(
            "tls",
            lambda i: i.__setitem__(
                "policy",
                stacks.policy_doc(
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Principal": {"AWS": "arn"},
                        "Resource": "arn",
                    }
                ),
            ),
        ),
        set(),
    ),
    "s3-no-force-destroy-prod": (
        edit("bucket", lambda i: i.__setitem__("forceDestroy", True)),
        set(),
    ),
    "gcs-uniform-access": (
        edit("gcs", lambda i: i.__setitem__("uniformBucketLevelAccess", False)),
        set(),
    ),
    "gcs-public-access-prevention": (
        edit("gcs", lambda i: i.__setitem__("publicAccessPrevention", "inherited")),
        set(),
    ),
    "gcs-versioning": (edit("gcs", lambda i: i.pop("versioning")), set()),
    "gcs-soft-delete-kept": (
        edit("gcs", lambda i: i.__setitem__("softDeletePolicy", {"retentionDurationSeconds": 0.0})),
        set(),
    ),
    "gcs-no-public-members": (
        edit("gcs-member", lambda i: i.__setitem__("member", "allUsers")),
        set(),
    ),
    "gcs-no-force-destroy-prod": (
        edit("gcs", lambda i: i.__setitem__("forceDestroy", True)),
        set(),
    ),
    "filestore-deletion-protection-prod": (
        edit("filestore", lambda i: i.pop("deletionProtectionEnabled")),
        set(),
    ),
    "filestore-backups-prod": (drop("filestore-backup"), set()),
    "ecr-immutable-tags": (
        edit("ecr", lambda i: i.__setitem__("imageTagMutability", "MUTABLE")),
        set(),
    ),
    "ecr-scan-on-push": (edit("ecr", lambda i: i.pop("imageScanningConfiguration")), set()),
    "ecr-kms-encrypted": (
        edit("ecr", lambda i: i.__setitem__("encryptionConfigurations", [])),
        set(),
    ),
    "ecr-lifecycle-untagged": (drop("ecr-lifecycle"), set()),
    "artifact-registry-docker": (edit("ar", lambda i: i.__setitem__("format", "MAVEN")), set()),
    "artifact-registry-cmk-prod": (edit("ar", lambda i: i.pop("kmsKeyName")), set()),
    "artifact-registry-cleanup": (
        edit("ar", lambda i: i.__setitem__("cleanupPolicies", stacks.AR_CLEANUP[1:])),
        set(),
    ),
    "iam-no-wildcard-actions": (
        edit(
            "irsa-policy",
            lambda i: i.__setitem__(
                "policy", stacks.policy_doc({"Effect": "Allow", "Action": "kms:*", "Resource": "k"})
            ),
        ),
        set(),
    ),
    "iam-no-wildcard-s3-object-resource": (
        edit(
            "irsa-policy",
            lambda i: i.__setitem__(
                "policy",
                stacks.policy_doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}),
            ),
        ),
        set(),
    ),
    "iam-irsa-trust-pinned": (
        edit("irsa", lambda i: i.__setitem__("assumeRolePolicy", IRSA_STRINGLIKE)),
        set(),
    ),
    "gcp-no-project-workload-identity-user": (
        edit("logs", lambda i: i.__setitem__("role", "roles/iam.workloadIdentityUser")),
        set(),
    ),
    "gcp-no-project-storage-roles": (
        edit("logs", lambda i: i.__setitem__("role", "roles/storage.admin")),
        set(),
    ),
    "ray-image-tag-pinned": (
        ray(lambda s: head(s)["containers"][0].__setitem__("image", "rayproject/ray:latest")),
        {"ray-prod-image-digest", "ray-image-matches-ray-version"},
    ),
    "ray-prod-image-digest": (
        ray(
            lambda s: worker(s)["containers"][0].__setitem__("image", "rayproject/ray:2.52.0-py311")
        ),
        set(),
    ),
    "ray-image-matches-ray-version": (ray(lambda s: s.__setitem__("rayVersion", "2.51.0")), set()),
    "ray-memory-request-equals-limit": (
        ray(
            lambda s: worker(s)["containers"][0]["resources"]["limits"].__setitem__(
                "memory", "16Gi"
            )
        ),
        set(),
    ),
    "ray-no-privileged": (_sc(head, "privileged", True), set()),
    "ray-no-host-namespaces": (ray(lambda s: worker(s).__setitem__("hostNetwork", True)), set()),
    "ray-no-host-path": (
        ray(
            lambda s: worker(s).__setitem__(
                "volumes", [{"name": "h", "hostPath": {"path": "/var"}}]
            )
        ),
        set(),
    ),
    "ray-restricted-security-context": (
        ray(lambda s: worker(s)["containers"][0]["securityContext"].pop("capabilities")),
        set(),
    ),
    "ray-service-account-for-bucket": (ray(lambda s: worker(s).pop("serviceAccountName")), set()),
    "ray-workers-own-service-account": (
        ray(lambda s: worker(s).__setitem__("serviceAccountName", "ray-head")),
        set(),
    ),
    "ray-dashboard-not-exposed": (
        ray(lambda s: s["headGroupSpec"].__setitem__("serviceType", "LoadBalancer")),
        set(),
    ),
    "ray-prod-runtime-env-no-installs": (
        edit(
            "runtime-env",
            lambda i: i["data"].__setitem__(
                "runtime_env.json", json.dumps({"pip": ["pandas==2.2.3"]})
            ),
        ),
        set(),
    ),
    "ray-jupyter-not-in-prod": (ray(jupyter(token=True)), set()),
    "ray-jupyter-token": (ray(jupyter(token=False)), {"ray-jupyter-not-in-prod"}),
    "k8s-ray-namespace-restricted": (
        edit(
            "ns",
            lambda i: i["metadata"].__setitem__(
                "labels", {"pod-security.kubernetes.io/enforce": "baseline"}
            ),
        ),
        set(),
    ),
    "k8s-ray-network-policy": (
        edit(
            "netpol",
            lambda i: i["spec"].__setitem__("podSelector", {"matchLabels": {"app": "other"}}),
        ),
        set(),
    ),
    "prod-stateful-protected": (lambda s: replace(s, "key", protect=False), set()),
    "prod-stateful-retained": (lambda s: replace(s, "filestore", retain_on_delete=False), set()),
}


def test_the_pack_has_at_least_30_rules_each_documented() -> None:
    ids = [p.name for p in POLICIES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    for p in POLICIES:
        assert p.description and p.remediation_steps, p.name


def test_every_rule_has_a_failing_case() -> None:
    assert set(FAILING) == {p.name for p in POLICIES}


def test_the_good_prod_stack_passes_every_rule() -> None:
    report = run(good_stack(), PROD)
    assert report.findings == []


@pytest.mark.parametrize("rule_id", sorted(FAILING))
def test_weakening_trips_the_rule_as_mandatory_in_prod(rule_id: str) -> None:
    weaken, also = FAILING[rule_id]
    report = run(weaken(good_stack()), PROD)
    assert report.mandatory == {rule_id} | also, report.findings


@pytest.mark.parametrize("rule_id", sorted(FAILING))
def test_dev_config_makes_findings_advisory(rule_id: str) -> None:
    weaken, _ = FAILING[rule_id]
    report = run(weaken(good_stack()), DEV)
    assert report.mandatory == set()


def test_prod_only_rules_are_quiet_for_dev_stacks() -> None:
    dev = replace(good_stack(), "bucket", {"forceDestroy": True}, protect=False)
    dev = ray(
        lambda s: worker(s)["containers"][0].__setitem__("image", "rayproject/ray:2.52.0-py311")
    )(dev)
    for r in dev:
        if r.name == "ray":
            for pod in (head(dict(r.inputs["spec"])), worker(dict(r.inputs["spec"]))):
                for c in pod["containers"]:
                    for e in c["env"]:
                        if e["name"] == "RAY_PLATFORM_MODE":
                            e["value"] = "dev"
    assert run(dev, DEV).ids() == set()


def test_a_cluster_that_says_prod_is_held_to_prod_even_with_dev_config() -> None:
    stack = ray(
        lambda s: head(s)["containers"][0].__setitem__("image", "rayproject/ray:2.52.0-py311")
    )(good_stack())
    assert "ray-prod-image-digest" in run(stack, DEV).ids("advisory")


def test_an_unknown_value_is_reported_as_unchecked_not_passed() -> None:
    stack = edit("fs", lambda i: i.__setitem__("encrypted", UNKNOWN_STRING_VALUE))(good_stack())
    report = run(stack, PROD)
    (finding,) = [f for f in report.findings if f.policy == "efs-encrypted"]
    assert finding.unchecked and finding.level == "advisory"
    assert "encrypted" in finding.message


def test_an_unknown_bucket_policy_is_unchecked() -> None:
    stack = edit("tls", lambda i: i.__setitem__("policy", UNKNOWN_STRING_VALUE))(good_stack())
    assert "s3-tls-only-policy" in run(stack, PROD).unchecked


def test_retain_on_delete_the_engine_does_not_send_is_unchecked() -> None:
    stack = [Resource(**{**r.__dict__, "retain_on_delete": None}) for r in good_stack()]
    report = run(stack, PROD)
    assert report.unchecked == {"prod-stateful-retained"}
    assert report.mandatory == set()


def test_a_namespace_outside_the_stack_is_unchecked() -> None:
    assert "k8s-ray-namespace-restricted" in run(drop("ns")(good_stack()), PROD).unchecked


def test_a_bucket_without_companions_trips_each_companion_rule() -> None:
    stack = [
        r for r in good_stack() if not r.type.startswith("aws:s3/bucket") or r.name == "bucket"
    ]
    ids = run(stack, PROD).mandatory
    assert {
        "s3-public-access-blocked",
        "s3-encrypted",
        "s3-versioning",
        "s3-ownership-enforced",
        "s3-tls-only-policy",
    } <= ids


def test_committed_config_files_match_the_rules() -> None:
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "policy" / "config"
    for mode in ("dev", "prod"):
        assert json.loads((configs / f"{mode}.json").read_text()) == config_for(mode)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        # Partial wildcards are wildcards.
        (
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/p/*"},
            {"iam-no-wildcard-actions"},
        ),
        # Every bucket's objects, spelled as a glob.
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*/*"},
            {"iam-no-wildcard-s3-object-resource"},
        ),
        (
            {"Effect": "Allow", "Action": "s3:Put*", "Resource": "*"},
            {"iam-no-wildcard-actions", "iam-no-wildcard-s3-object-resource"},
        ),
        # What the program writes passes.
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/ray/dev/*"},
            set(),
        ),
    ],
)
def test_iam_wildcards_in_any_spelling(statement: dict[str, Any], expected: set[str]) -> None:
    stack = edit("irsa-policy", lambda i: i.__setitem__("policy", stacks.policy_doc(statement)))(
        good_stack()
    )
    report = run(stack, config_for("prod"))
    iam = {rule for rule in report.mandatory if rule.startswith("iam-")}
    assert iam == expected


def test_a_filestore_backup_plan_without_a_schedule_does_not_count() -> None:
    def unscheduled(stack: list[Resource]) -> list[Resource]:
        plan = inputs_of(stack, "filestore-plan")
        plan["backupRules"] = []
        return replace(stack, "filestore-plan", plan)

    report = run(unscheduled(good_stack()), PROD)
    assert report.mandatory == {"filestore-backups-prod"}, report.findings
    assert any("no backup plan that has a scheduled rule" in f.message for f in report.findings)


def test_an_ecr_lifecycle_that_keeps_untagged_images_does_not_count() -> None:
    stack = edit(
        "ecr-lifecycle", lambda i: i.__setitem__("policy", stacks.ecr_lifecycle("tagged"))
    )(good_stack())
    report = run(stack, PROD)
    assert report.mandatory == {"ecr-lifecycle-untagged"}, report.findings
    assert any("no lifecycle rule expires untagged" in f.message for f in report.findings)


def test_an_ecr_lifecycle_is_matched_by_the_repository_name_too() -> None:
    """At preview the policy may name its repository without a recorded dependency."""
    stack = replace(good_stack(), "ecr-lifecycle", dependencies=())
    assert run(stack, PROD).mandatory == set()
    renamed = edit("ecr-lifecycle", lambda i: i.__setitem__("repository", "other"))(stack)
    assert run(renamed, PROD).mandatory == {"ecr-lifecycle-untagged"}


def test_a_dry_run_cleanup_deletes_nothing() -> None:
    stack = edit("ar", lambda i: i.__setitem__("cleanupPolicyDryRun", True))(good_stack())
    report = run(stack, PROD)
    assert report.mandatory == {"artifact-registry-cleanup"}, report.findings
    assert any("dry" in f.message.lower() for f in report.findings)


@pytest.mark.parametrize("name", ["ecr", "ar"])
def test_an_unprotected_prod_image_repository_trips_the_protection_rule(name: str) -> None:
    stack = replace(good_stack(), name, protect=False)
    assert run(stack, PROD).mandatory == {"prod-stateful-protected"}
