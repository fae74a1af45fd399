"""The production path on the real node: `tools/up --stack local-prod` (mode prod, cloud local),
`ray-platform image build` of an application on the stack's base by digest into the node's
registry, `tools/up --stack local-prod --image <what the build printed>`, and a job that
imports a baked package, with pip refused and egress closed.

Real: everything of the node tier, skopeo and uv on the host, PyPI (for the one wheel the
application adds). Stand-in: the Ray base image (tools/image), as in the node tier.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mainjob import ROOT, job, ok, printed_outputs
from tests.e2e.node_cluster import (
    CLUSTER,
    NS,
    Deployment,
    assert_unchanged,
    deployed,
    in_head,
    kubectl,
    pods,
    running,
    submit,
    submit_command,
)
from tools.devcluster import localcluster

pytestmark = pytest.mark.e2e

STACK = "local-prod"
BAKED = "tabulate==0.9.0"
"""Not in the Ray image (nor in the stand-in): the job can import it only from the image."""


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert os.geteuid() == 0, "the node tier needs root (CI runs as root)"
    with deployed(tmp_path_factory.mktemp("local-prod"), "--stack", STACK) as d:
        yield d


def _raycluster_image(d: Deployment) -> str:
    rc = d.kube.get(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{CLUSTER}")
    assert rc is not None
    return str(rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"])


def _owner_jobs(d: Deployment) -> list[tuple[str, str]]:
    """(name, image) of the shared directory's owner Jobs not being deleted."""
    jobs = d.kube.get(f"/apis/batch/v1/namespaces/{NS}-prep/jobs")
    assert jobs is not None
    return [
        (j["metadata"]["name"], j["spec"]["template"]["spec"]["containers"][0]["image"])
        for j in jobs["items"]
        if not j["metadata"].get("deletionTimestamp")
    ]


def _app(tmp: Path) -> tuple[Path, Path]:
    app = tmp / "app"
    (app / "reports").mkdir(parents=True)
    (app / "reports" / "__init__.py").write_text("")
    (app / "reports" / "table.py").write_text(
        textwrap.dedent(
            """
            import ray
            import tabulate

            ray.init()

            @ray.remote(num_cpus=1)
            def row(i):
                import tabulate  # on a worker: the image has it too
                return [i, i * i, tabulate.__version__]

            rows = ray.get([row.remote(i) for i in range(3)])
            print(tabulate.tabulate(rows, headers=["n", "square", "tabulate"]))
            print("baked-job-done")
            """
        )
    )
    (app / ".gitignore").write_text("scratch/\n")
    (app / "scratch").mkdir()
    (app / "scratch" / "big.bin").write_bytes(b"\0" * 1024)
    lock = tmp / "requirements.lock"
    lock.write_text(f"{BAKED}\n")
    return app, lock


def _build(d: Deployment, tmp: Path, app: Path, lock: Path) -> subprocess.CompletedProcess[str]:
    outputs = tmp / "outputs.json"
    outputs.write_text(json.dumps(d.outputs))
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ray-platform"), "image", "build", "--outputs",
         str(outputs), "--context", str(app), "--requirements", str(lock)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip


def test_a_first_up_runs_the_base_by_digest_and_exports_what_the_build_reads(
    prod: Deployment,
) -> None:
    d = prod
    assert d.outputs["mode"] == "prod"
    base = d.outputs["baseImage"]
    registry = localcluster.status(d.cluster).registry
    # By the registry's address: the host's skopeo must find it there (no docker.io mirror).
    pattern = re.escape(f"{registry}/rayproject/ray:2.60.0-py311") + r"@sha256:[0-9a-f]{64}"
    assert re.fullmatch(pattern, base), base
    assert d.outputs["imageRepository"] == f"{registry}/ray-platform/app"
    assert _raycluster_image(d) == base
    assert running(d, "head") and running(d, "worker")


def test_build_push_up_and_a_job_imports_the_baked_package(
    prod: Deployment, tmp_path: Path
) -> None:
    d = prod
    app, lock = _app(tmp_path)
    first = _build(d, tmp_path, app, lock)
    assert first.returncode == 0, first.stderr[-3000:]
    reference = first.stdout.strip().splitlines()[-1]
    repository = d.outputs["imageRepository"]
    assert re.fullmatch(
        re.escape(repository) + r":2\.60\.0-py311-[0-9a-f]{12}@sha256:[0-9a-f]{64}", reference
    ), reference
    # Deterministic: the same inputs again give the same reference (and push nothing new).
    again = _build(d, tmp_path, app, lock)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == reference

    before = _owner_jobs(d)
    assert [image for _, image in before] == [d.outputs["image"]], before
    run = ok(job("up", d.state, d.cluster, "--stack", STACK, "--image", reference))
    outputs = printed_outputs(run.stdout)
    assert _raycluster_image(d) == reference
    digest = reference.split("@", 1)[1]
    heads = [p for p in pods(d, "head") if not p["metadata"].get("deletionTimestamp")]
    assert heads and all(
        c.get("imageID", "").endswith(digest)
        for p in heads
        for c in p["status"].get("containerStatuses", [])
        if c["name"] == "ray-head"
    ), [p["status"].get("containerStatuses") for p in heads]

    # The shared directory's owner Job runs that image too: a new image replaces it, the new Job
    # under a new name (one fixed name made this `up` fail on a server-side apply conflict with
    # the old Job still terminating), and the old one deleted.
    after = _owner_jobs(d)
    assert [image for _, image in after] == [reference], after
    assert after[0][0] != before[0][0] and after[0][0].startswith("own-shared-dir-"), after

    d2 = Deployment(d.state, d.cluster, outputs, d.kube, d.kubeconfig, d.before)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "NOTE.txt").write_text("the code is in the image\n")
    done = submit(d2, job_dir, "python", "-m", "reports.table")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "baked-job-done" in done.stdout
    assert "0.9.0" in done.stdout  # tabulate's version, from the workers' rows

    # pip at run time is refused in prod (exit 8), before anything is uploaded or submitted.
    command, env = submit_command(d2, job_dir, "python", "-c", "print(1)")
    command.insert(command.index("--"), "--pip")
    command.insert(command.index("--"), "requests==2.32.3")
    refused = subprocess.run(
        command, cwd=job_dir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert refused.returncode == 8, refused.stdout + refused.stderr
    assert "prod" in refused.stderr


def test_prod_pods_have_no_egress_but_the_bucket(prod: Deployment) -> None:
    """restrictEgress: the package mirror a dev stack installs from is closed to prod pods; the
    bucket (MinIO on the node network) stays open (positive control), so jobs still work."""
    d = prod
    status = localcluster.status(d.cluster)
    assert status.package_index and status.object_store
    mirror = re.match(r"http://([^:/]+):(\d+)", status.package_index)
    store = re.match(r"http://([^:/]+):(\d+)", status.object_store.endpoint)
    assert mirror and store
    script = textwrap.dedent(
        f"""
        import socket
        for name, host, port in (("mirror", {mirror[1]!r}, {mirror[2]}),
                                 ("bucket", {store[1]!r}, {store[2]})):
            try:
                socket.create_connection((host, port), timeout=5).close()
                print(name, "open")
            except OSError as e:
                print(name, "closed", type(e).__name__)
        """
    )
    out = in_head(d, script)
    assert "bucket open" in out, out
    assert "mirror closed" in out, out
    # The RayCluster has no package index and its runtime_env installs nothing.
    assert "packageIndex" not in json.dumps(d.outputs)
    assert not {"pip", "uv", "conda"} & set(json.loads(d.outputs["runtimeEnv"]))


def test_zz_the_dev_stack_is_refused_beside_it_destroy_and_down_leave_the_machine_as_it_was(
    prod: Deployment,
) -> None:
    d = prod
    # The dev stack beside it would adopt its objects: refused, in one line, before any change.
    clash = job("up", d.state, d.cluster)
    assert clash.returncode == 1, clash.stdout[-2000:] + clash.stderr[-2000:]
    assert clash.stderr.strip().splitlines()[-1] == (
        "error: stack local-prod is deployed on this cluster (same namespace, RayCluster and "
        "CRDs as local): run `tools/up destroy --stack local-prod` first"
    )
    assert _raycluster_image(d).startswith(d.outputs["imageRepository"])
    ok(job("destroy", d.state, d.cluster, "--stack", STACK))
    gone = kubectl(d, "get", "raycluster", "-n", NS, CLUSTER)
    assert gone.returncode != 0
    ok(job("down", d.state, d.cluster))
    assert_unchanged(d.before, d.state.parent)
