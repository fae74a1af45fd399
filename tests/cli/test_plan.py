"""`submit`'s plan is decided from the stack's outputs and the built zip's name alone: nothing
read (the zip here does not exist), nothing uploaded, nothing submitted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cli import buckets, outputs, package, plan
from cli.errors import CliError, Exit

ZIP = f"{'ab' * 16}.zip"


def _stack(mode: str = "dev") -> outputs.StackOutputs:
    return outputs.StackOutputs(
        source="stack dev",
        mode=mode,
        bucket_uri="s3://ray/team",
        runtime_env={"excludes": ["*.log"], "pip": ["x"]},
        namespace="ray",
        cluster_name="ray",
        ray_address=None,
        token_auth=True,
        port_forward_command=None,
    )


def test_a_bucket_plan_names_the_upload_and_the_runtime_env(tmp_path: Path) -> None:
    pkg = package.Package(path=tmp_path / "absent.zip", digest="ab" * 32, size=2048, files=3)
    wanted = plan.Wanted(("python", "main.py"), tmp_path, pip=("rich",))
    stack = _stack()
    planned = plan.via_bucket(stack, pkg, buckets.parse("s3://ray/team"), wanted)
    uri = f"s3://ray/team/working_dirs/{ZIP}"
    assert planned.upload_to == plan.Destination(
        buckets.BucketUri("s3", "ray", "team"), f"team/working_dirs/{ZIP}"
    )
    # The stack's excludes were for the zip; the job gets the rest, plus its own packages.
    assert planned.runtime_env == {"pip": ["x", "rich"], "working_dir": uri}
    assert planned.describe() == (
        f"{json.dumps(planned.runtime_env, indent=2, sort_keys=True)}\n"
        f"would upload 3 files (2.0 KiB) from {tmp_path.resolve()} to {uri} (skipped if already "
        "there), then run: python main.py"
    )
    assert plan.excludes(stack, ["data/"]) == ["*.log", "data/"]


def test_without_a_bucket_the_job_gets_the_local_zip_and_people_see_its_cluster_uri(
    tmp_path: Path,
) -> None:
    pkg = package.Package(path=tmp_path / "absent.zip", digest="ab" * 32, size=10, files=1)
    wanted = plan.Wanted(("python", "main.py"), tmp_path)
    planned = plan.via_dashboard(_stack(), pkg, "gcs://_ray_pkg_0123.zip", wanted)
    assert planned.upload_to is None
    assert planned.runtime_env["working_dir"] == str(pkg.path)
    assert '"working_dir": "gcs://_ray_pkg_0123.zip"' in planned.describe()
    assert "through the Ray dashboard as gcs://_ray_pkg_0123.zip" in planned.describe()


def test_the_refusals_come_before_any_zip() -> None:
    with pytest.raises(CliError) as prod:
        plan.refuse(_stack("prod"), ("rich",), ())
    assert prod.value.code == Exit.POLICY
    shared = dataclasses.replace(_stack(), shared_packages=("pandas==2.2.3",))
    with pytest.raises(CliError) as again:
        plan.refuse(shared, ("Pandas>=2",), ())
    assert again.value.code == Exit.USAGE
