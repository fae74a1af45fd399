"""`ray-platform submit` without a cluster: packaging, outputs, policy and failure messages."""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from cli import dashboard, package
from cli.commands.submit import _size
from cli.errors import CliError, Exit
from tests.cli.conftest import Submit, closed_port, write_outputs
from tools.build import bin_dir


def _project(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "model.py").write_text("W = 1\n")
    (root / ".gitignore").write_text("*.ckpt\nscratch/\n")
    (root / "weights.ckpt").write_bytes(b"x" * 100)
    (root / "scratch").mkdir()
    (root / "scratch" / "notes.txt").write_text("n")
    (root / "pkg" / ".gitignore").write_text("generated.py\n")
    (root / "pkg" / "generated.py").write_text("G = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def test_zip_honours_gitignore_excludes_and_wraps_one_top_level_dir(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    pkg = package.build(root, ["pkg/model.py"], package.DEFAULT_MAX_SIZE, tmp_path)
    names = zipfile.ZipFile(pkg.path).namelist()
    assert names == sorted(names)
    assert names == [
        "working_dir/.gitignore",
        "working_dir/main.py",
        "working_dir/pkg/.gitignore",
        "working_dir/pkg/__init__.py",
    ]


def test_zip_name_depends_on_content_only(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    first = package.build(root, [], package.DEFAULT_MAX_SIZE, tmp_path)
    os.utime(root / "main.py", (1, 1))  # a new mtime (a fresh checkout) changes nothing
    (root / "main.py").chmod(0o600)
    again = package.build(root, [], package.DEFAULT_MAX_SIZE, tmp_path)
    assert again.name == first.name
    assert again.path.read_bytes() == first.path.read_bytes()
    (root / "main.py").write_text("print('changed')\n")
    changed = package.build(root, [], package.DEFAULT_MAX_SIZE, tmp_path)
    assert changed.name != first.name
    info = zipfile.ZipFile(changed.path).getinfo("working_dir/main.py")
    assert info.date_time == (1980, 1, 1, 0, 0, 0)
    assert info.external_attr >> 16 == 0o100644


def test_over_the_limit_names_the_biggest_entries(tmp_path: Path, run_submit: Submit) -> None:
    root = _project(tmp_path / "proj")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 300_000)
    (root / "also.bin").write_bytes(b"\0" * 100_000)
    outputs = write_outputs(tmp_path / "o.json")
    r = run_submit(
        [
            "--outputs",
            str(outputs),
            "--working-dir",
            str(root),
            "--max-size",
            "200KiB",
            "--",
            "python",
            "main.py",
        ]
    )
    assert r.code == 4  # Exit.TOO_BIG
    assert len(r.error_lines) == 1, r.err
    line = r.error_lines[0]
    assert "over the 200.0 KiB limit" in line
    assert "data/ (293.0 KiB)" in line and "also.bin (97.7 KiB)" in line
    assert "--exclude" in line


def test_missing_output_is_named(tmp_path: Path, run_submit: Submit) -> None:
    outputs = write_outputs(tmp_path / "o.json", runtimeEnv=None)
    r = run_submit(["--outputs", str(outputs), "--", "python", "x.py"])
    assert r.code == 3  # Exit.OUTPUTS
    assert r.error_lines == [f"ray-platform submit: {outputs} has no output 'runtimeEnv'"]


def test_without_a_bucket_the_zip_goes_through_the_dashboard(
    tmp_path: Path, run_submit: Submit
) -> None:
    """A cluster without a bucket (kind): Ray's own package upload through the dashboard, said
    in one line. Its gcs:// zip is unpacked as it is, so it has no top-level directory; the
    URI is Ray's content-addressed name for it."""
    outputs = write_outputs(tmp_path / "o.json", bucketUri=None)
    root = _project(tmp_path / "proj")
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{closed_port()}"}
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--dry-run"]
    r = run_submit([*argv, "--", "python", "main.py"], env)
    assert r.code == Exit.SUCCEEDED, r.err
    pkg = package.build(root, [], package.DEFAULT_MAX_SIZE, tmp_path, wrap=False)
    assert zipfile.ZipFile(pkg.path).namelist() == [
        ".gitignore",
        "main.py",
        "pkg/.gitignore",
        "pkg/__init__.py",
        "pkg/model.py",
    ]
    from ray._private.runtime_env.packaging import get_uri_for_package

    uri = get_uri_for_package(pkg.path)  # what Ray's client will upload it as
    notes = [ln for ln in r.err.splitlines() if "no bucket" in ln]
    assert notes == [
        f"{outputs} has no bucket (no bucketUri): shipping the working directory through the "
        f"Ray dashboard instead, as {uri}"
    ]
    printed, plan = r.out.rsplit("}\n", 1)
    assert json.loads(printed + "}")["working_dir"] == uri
    assert f"through the Ray dashboard as {uri}" in plan and "python main.py" in plan


def test_missing_outputs_file_is_named(tmp_path: Path, run_submit: Submit) -> None:
    r = run_submit(["--outputs", str(tmp_path / "nope.json"), "--", "python", "x.py"])
    assert r.code == Exit.OUTPUTS
    assert len(r.error_lines) == 1 and "nope.json" in r.error_lines[0]


@pytest.mark.e2e  # needs the Pulumi CLI, which the e2e tier builds
def test_missing_stack_is_named(tmp_path: Path, run_submit: Submit) -> None:
    pulumi = bin_dir() / "pulumi"
    assert pulumi.exists(), f"{pulumi} missing: run `python -m tools.build --only pulumi`"
    backend = tmp_path / "state"
    backend.mkdir()
    env = {
        "PATH": f"{bin_dir()}{os.pathsep}{os.environ['PATH']}",
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_CONFIG_PASSPHRASE": "x",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    r = run_submit(["--stack", "no-such-stack", "--", "python", "x.py"], env)
    assert r.code == Exit.OUTPUTS
    assert len(r.error_lines) == 1, r.err
    assert "stack no-such-stack" in r.error_lines[0]


@pytest.mark.e2e  # needs the Pulumi CLI, which the e2e tier builds
def test_stack_local_works_from_a_shell_without_a_pulumi_login(
    tmp_path: Path, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real CLI against a file backend laid out as tools/up leaves it (state and the
    engine's working copy under the cache), from a shell with no login, no backend variable,
    no passphrase and a HOME Pulumi never saw: the outputs are read, nothing is written home."""
    import subprocess

    from tools.devcluster.engine import LOCAL_PASSPHRASE

    # Taken before HOME moves below: the built CLI lives in the real cache.
    built_bin = bin_dir()

    pulumi = bin_dir() / "pulumi"
    assert pulumi.exists(), f"{pulumi} missing: run `python -m tools.build --only pulumi`"
    state = tmp_path / "cache" / "state"
    project = state / "project"
    project.mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: ray-platform\nruntime: python\n")
    engine_env = {
        **os.environ,
        "PULUMI_BACKEND_URL": state.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE,
        "PULUMI_HOME": str(state / ".pulumi-home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }

    def engine(*argv: str) -> str:
        done = subprocess.run(
            [str(pulumi), *argv], cwd=project, env=engine_env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    engine("stack", "init", "local")
    deployment = json.loads(engine("stack", "export"))
    deployment["deployment"]["resources"] = [
        {
            "urn": "urn:pulumi:local::ray-platform::pulumi:pulumi:Stack::ray-platform-local",
            "custom": False,
            "type": "pulumi:pulumi:Stack",
            "outputs": {
                "mode": "dev",
                "runtimeEnv": json.dumps({"env_vars": {"RAY_PLATFORM_ENV": "local"}}),
                "namespace": "ray",
                "rayClusterName": "ray",
                "sharedPackages": json.dumps(["tabulate==0.9.0"]),
            },
        }
    ]
    (tmp_path / "deployment.json").write_text(json.dumps(deployment))
    engine("stack", "import", "--file", str(tmp_path / "deployment.json"))

    for var in (
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_HOME",
        "PULUMI_ACCESS_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    env = {
        "PATH": f"{built_bin}{os.pathsep}{os.environ['PATH']}",
        "RAY_PLATFORM_CACHE": str(tmp_path / "cache"),
        "RAY_ADDRESS": "http://127.0.0.1:1",
    }
    root = _project(tmp_path / "proj")
    r = run_submit(
        ["--stack", "local", "--working-dir", str(root), "--dry-run", "--", "python"], env
    )
    assert r.code == Exit.SUCCEEDED, r.err
    assert json.loads(r.out.rsplit("}\n", 1)[0] + "}")["env_vars"] == {"RAY_PLATFORM_ENV": "local"}
    refused = run_submit(["--stack", "local", "--pip", "tabulate", "--", "python"], env)
    assert refused.code == Exit.USAGE and "tabulate is a shared package" in refused.err
    assert not home.exists()


def test_address_makes_namespace_and_cluster_optional(tmp_path: Path, run_submit: Submit) -> None:
    outputs = write_outputs(tmp_path / "o.json", namespace=None, rayClusterName=None)
    root = _project(tmp_path / "proj")
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--dry-run", "--", "python"]
    assert run_submit(argv).code == Exit.OUTPUTS  # without an address they are needed
    r = run_submit(argv, {"RAY_ADDRESS": "http://127.0.0.1:1"})
    assert r.code == Exit.SUCCEEDED, r.err


@pytest.mark.parametrize("flag", ["--pip", "--uv"])
def test_package_install_in_prod_is_refused(tmp_path: Path, run_submit: Submit, flag: str) -> None:
    outputs = write_outputs(tmp_path / "o.json", mode="prod")
    root = _project(tmp_path / "proj")
    r = run_submit(
        [
            "--outputs",
            str(outputs),
            "--working-dir",
            str(root),
            flag,
            "requests",
            "--",
            "python",
            "main.py",
        ]
    )
    assert r.code == 8  # Exit.POLICY
    assert len(r.error_lines) == 1
    assert f"{flag} refused" in r.error_lines[0] and "bake them into" in r.error_lines[0]


def test_prod_takes_a_code_zip(tmp_path: Path, run_submit: Submit) -> None:
    outputs = write_outputs(tmp_path / "o.json", mode="prod")
    root = _project(tmp_path / "proj")
    r = run_submit(["--outputs", str(outputs), "--working-dir", str(root), "--dry-run", "--", "x"])
    assert r.code == Exit.SUCCEEDED, r.err


def test_dry_run_prints_the_plan_and_touches_no_bucket(tmp_path: Path, run_submit: Submit) -> None:
    # The endpoint is a closed port: any bucket call would fail with exit code 5.
    outputs = write_outputs(
        tmp_path / "o.json",
        runtimeEnv=json.dumps({"pip": ["numpy"], "excludes": ["*.log"], "env_vars": {"A": "1"}}),
    )
    root = _project(tmp_path / "proj")
    (root / "run.log").write_text("noise")
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{closed_port()}"}
    r = run_submit(
        [
            "--outputs",
            str(outputs),
            "--working-dir",
            str(root),
            "--pip",
            "rich==13.9.4",
            "--dry-run",
            "--",
            "python",
            "main.py",
            "--lr",
            "0.1",
        ],
        env,
    )
    assert r.code == Exit.SUCCEEDED, r.err
    pkg = package.build(root, ["*.log"], package.DEFAULT_MAX_SIZE, tmp_path)
    uri = f"s3://ray/ray/test/working_dirs/{pkg.name}"
    printed, plan = r.out.rsplit("}\n", 1)
    assert json.loads(printed + "}") == {
        "env_vars": {"A": "1"},
        "pip": ["numpy", "rich==13.9.4"],
        "working_dir": uri,
    }
    assert f"to {uri}" in plan and "python main.py --lr 0.1" in plan


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_unreachable_bucket_is_one_line(tmp_path: Path, run_submit: Submit, scheme: str) -> None:
    outputs = write_outputs(tmp_path / "o.json", bucketUri=f"{scheme}://ray/ray/test")
    root = _project(tmp_path / "proj")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
        "STORAGE_EMULATOR_HOST": endpoint,
        "RAY_ADDRESS": "http://127.0.0.1:1",
    }
    r = run_submit(["--outputs", str(outputs), "--working-dir", str(root), "--", "x"], env)
    assert r.code == 5, r.err  # Exit.BUCKET
    assert len(r.error_lines) == 1, r.err
    assert f"bucket {scheme}://ray is unreachable" in r.error_lines[0]


def test_bad_bucket_uri_is_refused(tmp_path: Path, run_submit: Submit) -> None:
    outputs = write_outputs(tmp_path / "o.json", bucketUri="https://example.invalid/x")
    r = run_submit(["--outputs", str(outputs), "--", "x"])
    assert r.code == Exit.OUTPUTS
    assert "is not s3://bucket/prefix or gs://bucket/prefix" in r.error_lines[0]


def test_no_entrypoint_is_a_usage_error(run_submit: Submit) -> None:
    with pytest.raises(SystemExit) as e:
        run_submit(["--outputs", "o.json"])
    assert e.value.code == Exit.USAGE


def test_sizes_parse() -> None:
    assert _size("100MiB") == 100 * 1024**2
    assert _size("2G") == 2 * 1024**3
    assert _size("1500") == 1500
    assert _size("0.5 KiB") == 512


def test_relay_forwards_each_connection(tmp_path: Path) -> None:
    # The port-forward's local half: every accepted connection gets its own upstream stream.
    (tmp_path / "index.html").write_text("through the relay")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(tmp_path), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opened = []

    def connect() -> dashboard._Conn:
        import socket

        s = socket.create_connection(("127.0.0.1", server.server_address[1]))
        opened.append(s)
        return s

    relay = dashboard.LocalRelay(connect)
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"{relay.address}/index.html", timeout=5) as r:
                assert r.read() == b"through the relay"
        assert len(opened) == 3
    finally:
        relay.close()
        server.shutdown()


class _Obj:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


class _FakeCore:
    """The two CoreV1Api reads `_head_pod` makes, shaped like the client's models."""

    def __init__(self, target_port: object, pods: list[_Obj]) -> None:
        self.target_port = target_port
        self.pods = pods
        self.selector: str | None = None

    def read_namespaced_service(self, name: str, namespace: str) -> _Obj:
        assert (name, namespace) == ("ray-head-svc", "ray")
        port = _Obj(port=8265, target_port=self.target_port)
        return _Obj(spec=_Obj(selector={"ray.io/node-type": "head", "ray.io/cluster": "ray"},
                              ports=[_Obj(port=6379, target_port=6379), port]))  # fmt: skip

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> _Obj:
        self.selector = label_selector
        return _Obj(items=self.pods)


def _pod(name: str, phase: str, port_name: str = "dashboard", port: int = 8265) -> _Obj:
    container = _Obj(ports=[_Obj(name=port_name, container_port=port)])
    return _Obj(
        metadata=_Obj(name=name, deletion_timestamp=None),
        status=_Obj(phase=phase),
        spec=_Obj(containers=[container]),
    )


def test_port_forward_targets_the_running_head_behind_the_service() -> None:
    core = _FakeCore("dashboard", [_pod("old", "Pending"), _pod("head-1", "Running", port=8266)])
    assert dashboard._head_pod(core, "ray", "ray") == ("head-1", 8266)
    assert core.selector == "ray.io/cluster=ray,ray.io/node-type=head"
    assert dashboard._head_pod(_FakeCore(8265, [_pod("h", "Running")]), "ray", "ray") == ("h", 8265)


def test_no_running_head_is_one_line() -> None:
    with pytest.raises(CliError) as e:
        dashboard._head_pod(_FakeCore(8265, [_pod("h", "Pending")]), "ray", "ray")
    assert e.value.code == Exit.CLUSTER
    assert e.value.message == (
        "no running head pod behind Service ray/ray-head-svc (check `kubectl -n ray get pods`)"
    )


def test_links_inside_the_directory_are_packed_as_their_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link to a file inside is packed as that file; one to a directory inside is not
    followed (its target ships under its own name), and says so."""
    work = tmp_path / "work"
    (work / "lib").mkdir(parents=True)
    (work / "train.py").write_text("print('hi')")
    (work / "lib" / "util.py").write_text("U = 1")
    (work / "alias.py").symlink_to(work / "train.py")
    (work / "lib-link").symlink_to(work / "lib")
    packed = [rel for rel, _, _ in package.collect(work, [])]
    assert packed == ["alias.py", "lib/util.py", "train.py"]
    assert "not following lib-link: a link to a directory inside" in capsys.readouterr().err


def test_relay_keeps_why_a_connection_could_not_be_opened() -> None:
    """A refused port-forward (e.g. no RBAC on pods/portforward) must not surface as a bare
    'dashboard unreachable': the relay keeps the cause for the error line."""

    def connect() -> dashboard._Conn:
        raise RuntimeError('pods "ray-head-x" is forbidden: cannot create pods/portforward')

    relay = dashboard.LocalRelay(connect)
    try:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{relay.address}/", timeout=5)
        assert relay.last_error is not None and "pods/portforward" in relay.last_error
    finally:
        relay.close()


@pytest.mark.parametrize("flag", ["--pip", "--uv"])
def test_a_shared_package_cannot_be_overridden_per_job(
    tmp_path: Path, run_submit: Submit, flag: str
) -> None:
    """A shared package is on PYTHONPATH, ahead of the job's environment: the job would run the
    shared version, silently. Refused before anything is packed or uploaded."""
    outputs = write_outputs(
        tmp_path / "o.json", sharedPackages=json.dumps(["scikit-learn==1.5.2", "tabulate"])
    )
    root = _project(tmp_path / "proj")
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{closed_port()}"}
    argv = ["--outputs", str(outputs), "--working-dir", str(root), flag, "Scikit_Learn==1.6.1"]
    r = run_submit([*argv, "--", "python", "main.py"], env)
    assert r.code == Exit.USAGE
    assert r.error_lines == [
        f"ray-platform submit: {flag} Scikit_Learn==1.6.1 refused: scikit-learn is a shared "
        f"package of {outputs} (scikit-learn==1.5.2, on PYTHONPATH ahead of the job's "
        "environment, so it would load instead); ask for the version in ray.sharedPackages, "
        "or drop the flag"
    ]
    assert "uploading" not in r.err
    other = run_submit(
        ["--outputs", str(outputs), "--working-dir", str(root), flag, "scikit-image==0.24.0",
         "--dry-run", "--", "python", "main.py"], env,
    )  # fmt: skip
    assert other.code == Exit.SUCCEEDED, other.err


def test_a_stack_without_the_shared_packages_output_is_not_checked(
    tmp_path: Path, run_submit: Submit
) -> None:
    outputs = write_outputs(tmp_path / "o.json")  # a stack deployed before the output existed
    root = _project(tmp_path / "proj")
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--pip", "scikit-learn"]
    assert run_submit([*argv, "--dry-run", "--", "python"]).code == Exit.SUCCEEDED


@pytest.mark.parametrize(
    "req",
    ["Scikit_Learn==1.5", "scikit.learn[tests]>=1", "  rich ", "torch==2.5.1+cu121",
     "mylib @ git+https://github.com/acme/mylib@v1", "https://x/y.whl", "./wheels/a.whl", "-e ."],
)  # fmt: skip
def test_the_cli_names_requirements_as_the_settings_do(req: str) -> None:
    """Two copies (the CLI ships without infra/): they must agree on every spelling."""
    from cli.plan import requirement_name as cli_name
    from infra.settings.values import requirement_name

    assert cli_name(req) == requirement_name(req)


FAKE_PULUMI = """#!{python}
import json, os, sys
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}, f)
if {error!r}:
    sys.exit({error!r})  # to stderr, exit 1
print(json.dumps({outputs}))
"""


def _fake_pulumi(tmp_path: Path, outputs: dict[str, str], error: str = "") -> tuple[Path, Path]:
    """A `pulumi` on PATH that records how it was run and prints `outputs` (or fails with
    `error` on stderr, as the CLI does)."""
    import sys

    bin_dir, record = tmp_path / "bin", tmp_path / "pulumi-run.json"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(
        FAKE_PULUMI.format(python=sys.executable, record=str(record), outputs=outputs, error=error)
    )
    script.chmod(0o755)
    return bin_dir, record


def _local_outputs() -> dict[str, str]:
    return {
        "mode": "dev",
        "runtimeEnv": json.dumps({"env_vars": {"RAY_PLATFORM_ENV": "local"}}),
        "namespace": "ray",
        "rayClusterName": "ray",
    }


def test_stack_local_reads_the_file_backend_tools_up_keeps(
    tmp_path: Path, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a user's shell (no Pulumi login, no PULUMI_BACKEND_URL) `--stack local` reads the
    stack where tools/up deployed it: the file backend under the project's cache, from the
    engine's working copy of the project, with the passphrase tools/up uses."""
    from cli.outputs import LOCAL_PASSPHRASE
    from tools.devcluster.engine import LOCAL_PASSPHRASE as ENGINE_PASSPHRASE
    from tools.devcluster.engine import backend_url

    assert LOCAL_PASSPHRASE == ENGINE_PASSPHRASE
    cache = tmp_path / "cache"
    (cache / "state" / ".pulumi").mkdir(parents=True)
    (cache / "state" / "project").mkdir()
    (cache / "state" / "project" / "Pulumi.yaml").write_text("name: ray-platform\n")
    bin_dir, record = _fake_pulumi(tmp_path, _local_outputs())
    for var in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_HOME"):
        monkeypatch.delenv(var, raising=False)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RAY_PLATFORM_CACHE": str(cache),
        "RAY_ADDRESS": "http://127.0.0.1:1",
    }
    root = _project(tmp_path / "proj")
    argv = ["--stack", "local", "--working-dir", str(root), "--dry-run", "--", "python"]
    r = run_submit(argv, env)
    assert r.code == Exit.SUCCEEDED, r.err
    ran = json.loads(record.read_text())
    assert ran["argv"] == ["stack", "output", "--json", "--show-secrets", "--stack", "local"]
    assert Path(ran["cwd"]) == (cache / "state" / "project").resolve()
    assert ran["env"]["PULUMI_BACKEND_URL"] == backend_url(cache / "state")
    assert ran["env"]["PULUMI_CONFIG_PASSPHRASE"] == ENGINE_PASSPHRASE
    assert ran["env"]["PULUMI_HOME"] == str((cache / "state").resolve() / ".pulumi-home")
    # The local stack (no bucket on kind) ships through the dashboard.
    assert "has no bucket" in r.err

    # Other stacks are left to the user's login; a backend of the user's own wins for local.
    dev = ["--stack", "dev", "--working-dir", str(root), "--dry-run", "--", "python"]
    assert run_submit(dev, env).code == Exit.SUCCEEDED
    ran = json.loads(record.read_text())
    assert "PULUMI_BACKEND_URL" not in ran["env"] and ran["cwd"] == os.getcwd()
    mine = {**env, "PULUMI_BACKEND_URL": "file:///elsewhere", "PULUMI_CONFIG_PASSPHRASE": "mine"}
    assert run_submit(argv, mine).code == Exit.SUCCEEDED
    ran = json.loads(record.read_text())
    assert ran["env"]["PULUMI_BACKEND_URL"] == "file:///elsewhere"
    assert ran["env"]["PULUMI_CONFIG_PASSPHRASE"] == "mine"
    assert ran["cwd"] == os.getcwd()


def test_stack_local_without_a_deployment_says_to_run_tools_up(
    tmp_path: Path, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    bin_dir, record = _fake_pulumi(tmp_path, _local_outputs())
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RAY_PLATFORM_CACHE": str(tmp_path / "empty-cache"),
    }
    r = run_submit(["--stack", "local", "--", "python"], env)
    assert r.code == Exit.OUTPUTS
    assert r.error_lines == [
        f"ray-platform submit: stack local has no state in {tmp_path / 'empty-cache' / 'state'}, "
        "where tools/up keeps it: run tools/up first (or set PULUMI_BACKEND_URL to the backend "
        "you deployed it to)"
    ]
    assert not record.exists()


def test_the_stacks_object_store_endpoint_is_the_buckets(
    tmp_path: Path, run_submit: Submit
) -> None:
    """The local stack's S3-compatible store (MinIO) is where its bucket is: without an
    endpoint in the environment, the upload goes there, not to AWS."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    outputs = write_outputs(
        tmp_path / "o.json", bucketUri="s3://ray/local", objectStoreEndpoint=endpoint
    )
    root = _project(tmp_path / "proj")
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python"]
    r = run_submit(argv, env)
    assert r.code == Exit.BUCKET
    assert len(r.error_lines) == 1 and endpoint in r.error_lines[0], r.err


def test_a_stack_that_does_not_exist_is_one_line(
    tmp_path: Path, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Pulumi CLI (v3.274) prints for a stack its backend does not have, warnings
    first: one line naming the stack and where it was looked for, exit 3."""
    noise = "warning: A new version of Pulumi is available.\n"
    bin_dir, record = _fake_pulumi(
        tmp_path, _local_outputs(), error=noise + "error: no stack named 'nope' found"
    )
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///srv/pulumi-state")
    root = _project(tmp_path / "proj")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = run_submit(["--stack", "nope", "--working-dir", str(root), "--", "python", "main.py"], env)
    assert r.code == Exit.OUTPUTS
    assert r.error_lines == [
        "ray-platform submit: stack nope does not exist in file:///srv/pulumi-state "
        "(`pulumi stack ls` lists the stacks there; check --stack, or PULUMI_BACKEND_URL)"
    ], r.err
    assert json.loads(record.read_text())["argv"][-2:] == ["--stack", "nope"]


def test_a_proxy_thread_dying_with_the_head_leaves_no_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kubernetes client's port-forward thread raises when the head pod goes away under a
    stream (SSLEOFError): the command must still end with its own single line, so the error is
    kept as the relay's last error; other threads' errors still reach the hook before it."""
    reported: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.thread.name))
    before = threading.excepthook
    relay = dashboard.LocalRelay(lambda: (_ for _ in ()).throw(OSError("unused")))

    def die() -> None:
        raise ConnectionResetError("EOF occurred in violation of protocol")

    try:
        with dashboard.quiet_proxy_threads(relay):
            for name in (f"{dashboard.PROXY_THREAD}: 8265", "someone else"):
                t = threading.Thread(target=die, name=name)
                t.start()
                t.join()
    finally:
        relay.close()
    assert reported == ["someone else"]
    assert relay.last_error == "ConnectionResetError: EOF occurred in violation of protocol"
    assert threading.excepthook is before
