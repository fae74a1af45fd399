"""The program under the plainest mocks (created resources echo their inputs, nothing else),
as Pulumi's own testing guide writes them: it must still run to the end for every stack file."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from tools.testing.pulumi_mocks import run_program
from tools.testing.pulumi_mocks.aws import PlatformMocks


class EchoMocks(PlatformMocks):
    """Data sources as realistic as before; resources return only `<name>_id` and their inputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}_id", dict(args.inputs)


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
@pytest.mark.parametrize("preview", [False, True])
def test_program_completes_under_echo_mocks(stack: str, preview: bool) -> None:
    run = run_program(stack, mocks=EchoMocks(), preview=preview)
    rc = run.one("kubernetes:ray.io/v1:RayCluster")
    assert rc.inputs["metadata"] == {
        "name": "ray",
        "namespace": "ray",
        "labels": {
            "app.kubernetes.io/managed-by": "pulumi",
            "ray-platform/stack": stack,
            "ray-platform/mode": "prod" if stack == "prod" else "dev",
        },
        # Known at preview too, so the provider's dry-run apply is forced as well.
        "annotations": {"pulumi.com/patchForce": "true"},
    }
    assert run.outputs["dashboardPortForward"].endswith("svc/ray-head-svc 8265:8265")


def test_first_aws_preview_knows_the_raycluster_spec_but_the_bucket_name() -> None:
    run = run_program("dev", mocks=EchoMocks(), preview=True)
    spec = run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    assert spec["rayVersion"] == "2.60.0"
    container = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "rayproject/ray:2.60.0-py311"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AWS_REGION"] == "us-west-2"
    # Only the bucket's name (assigned by AWS at creation) is unknown before the first up.
    assert not isinstance(env["RAY_PLATFORM_BUCKET_URI"], str)
