"""`ray-platform submit` against a real Ray head (token auth on) and real buckets.

The zip goes to MinIO (`s3://`) or fake-gcs-server (`gs://`); Ray's runtime_env agent downloads
it from there and the job runs it. One Ray head and one pair of stores serve the whole session
(tests/cli/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import RayHead, Stores, Submit, objects, write_outputs

pytestmark = pytest.mark.e2e

MAIN = """\
import os
print("code says", open("message.txt").read().strip())
print("stack says", os.environ.get("GREETING"))
print("shipped", sorted(os.listdir(".")))
"""


def _project(root: Path, message: str) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text(MAIN)
    (root / "message.txt").write_text(message + "\n")
    (root / ".gitignore").write_text("secret.env\n")
    (root / "secret.env").write_text("TOKEN=do-not-ship\n")
    return root


def _env(stores: Stores, head: RayHead, **extra: str) -> dict[str, str]:
    return {**stores.env(), "RAY_ADDRESS": head.address, "RAY_AUTH_TOKEN": head.token, **extra}


def _uploaded(err: str) -> str:
    line = next(ln for ln in err.splitlines() if "working_dirs/" in ln)
    return line.split("working_dirs/", 1)[1].split()[0]


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_submit_ships_the_zip_through_the_bucket(
    tmp_path: Path, stores: Stores, ray_head: RayHead, run_submit: Submit, scheme: str
) -> None:
    prefix = f"ray/{scheme}-test"
    outputs = write_outputs(tmp_path / "o.json", bucketUri=f"{scheme}://ray/{prefix}")
    root = _project(tmp_path / "proj", "v1")
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python", "main.py"]
    env = _env(stores, ray_head)
    store = stores.s3 if scheme == "s3" else stores.gcs

    first = run_submit(argv, env)
    assert first.code == 0, first.err
    assert "code says v1" in first.out
    assert "stack says hello from the stack" in first.out
    assert "shipped ['.gitignore', 'main.py', 'message.txt']" in first.out  # no secret.env
    name = _uploaded(first.err)
    shipped = objects(store, f"{prefix}/working_dirs/")
    assert list(shipped) == [f"{prefix}/working_dirs/{name}"]

    again = run_submit(argv, env)
    assert again.code == 0, again.err
    assert "already in the bucket" in again.err
    assert not [ln for ln in again.err.splitlines() if ln.startswith("uploading")]
    assert "code says v1" in again.out
    assert objects(store, f"{prefix}/working_dirs/") == shipped  # not rewritten

    (root / "message.txt").write_text("v2\n")
    changed = run_submit(argv, env)
    assert changed.code == 0, changed.err
    assert _uploaded(changed.err) != name
    assert "code says v2" in changed.out
    assert len(objects(store, f"{prefix}/working_dirs/")) == 2


def test_without_a_bucket_the_zip_goes_through_the_dashboard(
    tmp_path: Path, stores: Stores, ray_head: RayHead, run_submit: Submit
) -> None:
    """A stack without a bucket (kind): Ray's own package upload through the dashboard; the job
    sees the files at its working directory's top (a gcs:// zip is unpacked as it is)."""
    outputs = write_outputs(tmp_path / "o.json", bucketUri=None)
    root = _project(tmp_path / "proj", "through the dashboard")
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python", "main.py"]
    r = run_submit(argv, _env(stores, ray_head))
    assert r.code == 0, r.err
    assert "code says through the dashboard" in r.out
    assert "shipped ['.gitignore', 'main.py', 'message.txt']" in r.out  # no secret.env
    assert len([ln for ln in r.err.splitlines() if "has no bucket" in ln]) == 1


def test_a_job_quiet_for_a_while_is_followed_without_losing_contact(
    tmp_path: Path, stores: Stores, ray_head: RayHead, run_submit: Submit
) -> None:
    """Ray's log stream answers no websocket ping (it never reads its socket): a heartbeat
    called every job quiet for 1.5 x the limit lost and opened a new stream. The limit is short
    here, the job quiet for several of them."""
    outputs = write_outputs(tmp_path / "o.json")
    root = _project(tmp_path / "proj", "quiet")
    quiet = "import time; print('before', flush=True); time.sleep(20); print('after')"
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python", "-c", quiet]
    r = run_submit(argv, _env(stores, ray_head, RAY_PLATFORM_DASHBOARD_TIMEOUT="8"))
    assert r.code == 0, r.err
    assert r.out.splitlines().count("before") == 1 and "after" in r.out.splitlines(), r.out
    assert "lost contact" not in r.err, r.err


def test_job_failure_exits_1_with_one_line(
    tmp_path: Path, stores: Stores, ray_head: RayHead
) -> None:
    # Through the installed console script: the process exit code is what CI sees.
    outputs = write_outputs(tmp_path / "o.json")
    root = _project(tmp_path / "proj", "doomed")
    script = Path(sys.executable).parent / "ray-platform"
    assert script.exists(), f"{script} missing: `uv sync` installs the console script"
    env = {**os.environ, **_env(stores, ray_head)}
    proc = subprocess.run(
        [str(script), "submit", "--outputs", str(outputs), "--working-dir", str(root), "--",
         "python", "-c", "import sys; print('about to fail'); sys.exit(3)"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "about to fail" in proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ray-platform submit:")]
    assert len(errors) == 1, proc.stderr
    assert re.fullmatch(
        r"ray-platform submit: job raysubmit_\w+ FAILED: .*exit code 3.*", errors[0]
    )


def test_wrong_token_exits_7(tmp_path: Path, stores: Stores, ray_head: RayHead,
                             run_submit: Submit) -> None:  # fmt: skip
    outputs = write_outputs(tmp_path / "o.json")
    root = _project(tmp_path / "proj", "nope")
    env = _env(stores, ray_head, RAY_AUTH_TOKEN="0" * 64)
    r = run_submit(["--outputs", str(outputs), "--working-dir", str(root), "--", "python"], env)
    assert r.code == 7, r.err
    assert len(r.error_lines) == 1
    assert "refused the Ray auth token" in r.error_lines[0]


def test_missing_token_exits_7(tmp_path: Path, stores: Stores, ray_head: RayHead,
                               run_submit: Submit) -> None:  # fmt: skip
    # A stack that says it has no token auth, against a cluster that wants it.
    outputs = write_outputs(tmp_path / "o.json", rayAuthMode="disabled", authTokenCommand=None)
    root = _project(tmp_path / "proj", "nope")
    env = _env(stores, ray_head)
    del env["RAY_AUTH_TOKEN"]
    r = run_submit(["--outputs", str(outputs), "--working-dir", str(root), "--", "python"], env)
    assert r.code == 7, r.err
    assert r.error_lines == [
        "ray-platform submit: the cluster wants a Ray auth token and none was sent: "
        "set RAY_AUTH_TOKEN"
    ]


def test_dry_run_uploads_nothing(tmp_path: Path, stores: Stores, run_submit: Submit) -> None:
    outputs = write_outputs(tmp_path / "o.json", bucketUri="s3://ray/ray/dry-run")
    root = _project(tmp_path / "proj", "dry")
    r = run_submit(
        ["--outputs", str(outputs), "--working-dir", str(root), "--dry-run", "--", "python"],
        {**stores.env(), "RAY_ADDRESS": "http://127.0.0.1:1"},
    )
    assert r.code == 0, r.err
    assert json.loads(r.out.rsplit("}\n", 1)[0] + "}")["working_dir"].startswith(
        "s3://ray/ray/dry-run/working_dirs/"
    )
    assert objects(stores.s3, "ray/dry-run/") == {}


def test_ctrl_c_detaches_and_says_how_to_follow(
    tmp_path: Path, stores: Stores, ray_head: RayHead
) -> None:
    from ray.job_submission import JobSubmissionClient

    outputs = write_outputs(tmp_path / "o.json")
    root = _project(tmp_path / "proj", "long")
    script = Path(sys.executable).parent / "ray-platform"
    # A hang is then shown where it is: SIGABRT makes the CLI print every thread's stack.
    env = {**os.environ, **_env(stores, ray_head), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [str(script), "submit", "--outputs", str(outputs), "--working-dir", str(root), "--",
         "python", "-c", "import time; print('working', flush=True); time.sleep(120)"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal: a run started in the background (CI) passes SIGINT on
        # ignored, and Python then never raises KeyboardInterrupt (the command would not stop).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:  # the job's own line: it runs and we follow its logs
        if "working" in line:
            break
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(timeout=30)
        finally:
            proc.kill()
        pytest.fail(f"still running 60 s after Ctrl-C:\n{proc.stderr.read()[-6000:]}")
    err = proc.stderr.read()
    assert code == 130, err
    # The log stream is closed before exit, not by the garbage collector during shutdown (it
    # printed "Exception ignored in: <coroutine object Follower._tail ...>" on every Ctrl-C).
    assert "Exception ignored" not in err and "Traceback" not in err, err
    job_id = re.search(r"submitted (raysubmit_\w+)", err)
    assert job_id, err
    assert f"ray job logs -f {job_id[1]} --address {ray_head.address}" in err
    assert f"ray job stop {job_id[1]} --address {ray_head.address}" in err
    client = JobSubmissionClient(
        ray_head.address, headers={"Authorization": f"Bearer {ray_head.token}"}
    )
    info = client.get_job_info(job_id[1])
    assert str(info.status) == "RUNNING", info.message  # detached, not stopped
    client.stop_job(job_id[1])
    deadline = time.monotonic() + 60
    while str(client.get_job_status(job_id[1])) != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.5)


def test_no_kubernetes_credentials_exits_6(
    tmp_path: Path, stores: Stores, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither RAY_ADDRESS nor a kubeconfig: the port-forward cannot be opened.
    monkeypatch.setenv("HOME", str(tmp_path))
    outputs = write_outputs(tmp_path / "o.json", bucketUri="s3://ray/ray/no-kube")
    root = _project(tmp_path / "proj", "x")
    env = {**stores.env(), "RAY_AUTH_TOKEN": "t", "KUBECONFIG": str(tmp_path / "none")}
    r = run_submit(["--outputs", str(outputs), "--working-dir", str(root), "--", "python"], env)
    assert r.code == 6, r.err
    assert len(r.error_lines) == 1
    assert "no Kubernetes credentials" in r.error_lines[0]
