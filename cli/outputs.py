"""The stack outputs `submit` needs, read from Pulumi or from a JSON file of the same shape.

Their names and meaning are the output contract's (contract/outputs.py), which the program
exports by; this module adds how much of them to trust.

The `local` stack lives where `tools/up` keeps it: a file backend under the project's cache
(`<cache>/state/`, the engine's working copy of the project in `<cache>/state/project/`). With no
`PULUMI_BACKEND_URL` of the user's, `--stack local` reads it there, so it needs no Pulumi login.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contract.outputs as out
from cli.errors import CliError, Exit
from contract.outputs import MODES

LOCAL_STACKS = ("local", "local-prod")
"""The stacks `tools/up` deploys (`--stack`), into its own file backend."""
LOCAL_PASSPHRASE = "ray-platform-local"
"""The passphrase `tools/up` gives that backend unless PULUMI_CONFIG_PASSPHRASE is set (the
same value as tools/devcluster/engine.py's LOCAL_PASSPHRASE: the CLI ships without tools/)."""


@dataclass(frozen=True)
class StackOutputs:
    """What one stack tells `submit` about its cluster (contract/outputs.py names each)."""

    source: str
    """Where the values came from (`stack dev`, `outputs.json`), for error messages."""
    mode: str
    """`dev` or `prod`: prod refuses package installs in the runtime_env."""
    bucket_uri: str | None
    """`s3://bucket/prefix` or `gs://bucket/prefix`; zips go under `<prefix>/working_dirs/`.
    None: the stack has no bucket (e.g. kind); the zip goes through the dashboard instead."""
    runtime_env: dict[str, Any]
    """The stack's default runtime_env, extended per submit."""
    namespace: str | None
    """Namespace of the RayCluster; needed only for the port-forward and the token Secret."""
    cluster_name: str | None
    """Name of the RayCluster (and of its token Secret)."""
    ray_address: str | None
    """The address the stack's own port-forward command serves (informational)."""
    token_auth: bool
    """True when the cluster wants a token: `rayAuthMode` is `token` (a stack from before that
    output: it exports `authTokenCommand`)."""
    port_forward_command: str | None
    """The stack's `dashboardPortForward`, quoted in "how to follow the job" hints."""
    object_store_endpoint: str | None = None
    """An S3-compatible store's URL (the local stack's `objectStoreEndpoint`), used for the
    bucket unless AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL say otherwise."""
    object_store_secret: str | None = None
    """The Secret (in `namespace`) with that store's credentials (`objectStoreSecret`), read
    when the environment names none; only for `--stack` (never from an `--outputs` file)."""
    shared_packages: tuple[str, ...] = ()
    """Requirements the cluster installs onto the shared file system (on PYTHONPATH, ahead of a
    job's pip/uv environment); empty for stacks that predate the output."""


def cache_root() -> Path:
    """The project's cache: the rule of infra/cache.py (not imported: cli/ ships alone)."""
    root = os.environ.get("RAY_PLATFORM_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ray-platform"
    )
    return Path(root).expanduser()


def pulumi_binary() -> str:
    found = shutil.which("pulumi")
    if found:
        return found
    # The project builds its own CLI into the cache (tools/build.py); data scientists may have
    # only that one.
    built = cache_root() / "bin" / "current" / "pulumi"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    raise CliError(
        Exit.OUTPUTS,
        "the Pulumi CLI is not on PATH (install it, or pass --outputs FILE.json from "
        "`pulumi stack output --json --show-secrets`)",
    )


def local_backend(stack: str) -> tuple[dict[str, str], Path] | None:
    """For `local` with no backend of the user's: the environment and directory that read the
    file backend `tools/up` keeps (as tools/devcluster/engine.py sets them for the engine). None
    otherwise: the user's own Pulumi login or PULUMI_BACKEND_URL decides."""
    if stack not in LOCAL_STACKS or os.environ.get("PULUMI_BACKEND_URL"):
        return None
    state = cache_root() / "state"
    project = state / "project"
    if not (state / ".pulumi").is_dir() or not (project / "Pulumi.yaml").exists():
        raise CliError(
            Exit.OUTPUTS,
            f"stack {stack} has no state in {state}, where tools/up keeps it: run tools/up first "
            "(or set PULUMI_BACKEND_URL to the backend you deployed it to)",
        )
    env = {
        **os.environ,
        # As tools/devcluster/engine.py's backend_url: no `.attrs` sidecars (a test checks).
        "PULUMI_BACKEND_URL": f"{state.resolve().as_uri()}?metadata=skip",
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", LOCAL_PASSPHRASE),
        "PULUMI_HOME": str(state.resolve() / ".pulumi-home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    return env, project


def _from_pulumi(stack: str) -> dict[str, Any]:
    cmd = [pulumi_binary(), "stack", "output", "--json", "--show-secrets", "--stack", stack]
    # The engine's working copy holds Pulumi.yaml and the stack file (its secrets' salt).
    env, cwd = local_backend(stack) or (None, None)
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            env=env,
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(
            Exit.OUTPUTS, f"cannot run `pulumi stack output` for stack {stack}: {e}"
        ) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        if any("no stack named" in ln for ln in lines):
            # The usual cause (a typo, or another backend): say so, not the engine's wording.
            backend = (env or os.environ).get("PULUMI_BACKEND_URL") or "your Pulumi login"
            raise CliError(
                Exit.OUTPUTS,
                f"stack {stack} does not exist in {backend} (`pulumi stack ls` lists the "
                "stacks there; check --stack, or PULUMI_BACKEND_URL)",
            )
        why = lines[-1] if lines else f"exit {proc.returncode}"
        raise CliError(Exit.OUTPUTS, f"cannot read the outputs of stack {stack}: {why}")
    return _parse(proc.stdout, f"stack {stack}")


def _from_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(Exit.OUTPUTS, f"cannot read outputs file {path}: {e.strerror}") from None
    return _parse(text, str(path))


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CliError(Exit.OUTPUTS, f"outputs of {source} are not JSON: {e}") from None
    if not isinstance(data, dict):
        raise CliError(Exit.OUTPUTS, f"outputs of {source} are not a JSON object")
    return data


def read_raw(*, stack: str | None, outputs_file: Path | None) -> tuple[dict[str, Any], str]:
    """(outputs as Pulumi prints them, where they came from): for a command that reads only a
    few of them (`image build`) and checks those itself."""
    if outputs_file is not None:
        return _from_file(outputs_file), str(outputs_file)
    if stack is not None:
        return _from_pulumi(stack), f"stack {stack}"
    raise CliError(Exit.OUTPUTS, "say which stack: --stack NAME or --outputs FILE.json")


def text(raw: dict[str, Any], key: str, source: str, *, required: bool) -> str | None:
    """One output, which must be a string when present (the program exports only strings)."""
    return _text(raw, key, source, required=required)


def _text(raw: dict[str, Any], key: str, source: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise CliError(Exit.OUTPUTS, f"{source} has no output {key!r}")
        return None
    if not isinstance(value, str):
        raise CliError(Exit.OUTPUTS, f"output {key!r} of {source} is not a string")
    return value


_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}/?$")
SCHEMES = {"aws": "s3", "local": "s3", "gcp": "gs"}
"""The bucket scheme of each cloud (infra/clouds/<cloud>/adapter.py's bucketUri)."""
DASHBOARD_PORT = 8265
READ = out.READ


def _untrusted(source: str, key: str, value: object, why: str) -> CliError:
    return CliError(
        Exit.OUTPUTS,
        f"output {key!r} of {source} ({json.dumps(value)[:120]}) {why}: the outputs look edited "
        "by hand, so they are not used (redeploy the stack, or fix the outputs file)",
    )


def port_forward_command(namespace: str, cluster: str) -> str:
    """The `dashboardPortForward` the program exports (components/kuberay/raycluster_spec.py
    kubectl_commands): rebuilt here from the outputs, to refuse any other command."""
    return (
        f"kubectl -n {namespace} port-forward svc/{cluster}-head-svc "
        f"{DASHBOARD_PORT}:{DASHBOARD_PORT}"
    )


def check_trusted(raw: dict[str, Any], source: str, *, bucket_given: bool) -> None:
    """Refuse outputs the program would not have written: each is used to reach something (the
    API, the bucket, a port) or is quoted to the user as a command to run, so a hand-edited one
    could send the user's code, credentials or token elsewhere. Every check is against what the
    program exports (infra/platform.py, the clouds' adapters), read from the outputs alone.
    `raw`'s values read here are strings (checked before); an empty one counts as absent."""
    raw = {k: v for k, v in raw.items() if v not in (None, "")}
    cloud = raw.get(out.CLOUD)
    if cloud is not None and cloud not in SCHEMES:
        raise _untrusted(source, out.CLOUD, cloud, f"is not one of {', '.join(sorted(SCHEMES))}")
    auth = raw.get(out.RAY_AUTH_MODE)
    if auth is not None and auth not in out.AUTH_MODES:
        raise _untrusted(
            source, out.RAY_AUTH_MODE, auth, f"is not one of {', '.join(out.AUTH_MODES)}"
        )
    namespace, cluster = raw.get(out.NAMESPACE), raw.get(out.RAY_CLUSTER_NAME)
    if namespace is not None and not (len(namespace) <= 63 and _DNS1123.match(namespace)):
        raise _untrusted(source, out.NAMESPACE, namespace, "is not a Kubernetes namespace name")
    if cluster is not None and not (len(cluster) <= 50 and _DNS1035.match(cluster)):
        raise _untrusted(source, out.RAY_CLUSTER_NAME, cluster, "is not a RayCluster name")
    address = raw.get(out.RAY_ADDRESS)
    if address is not None and not _LOOPBACK.match(address):
        raise _untrusted(
            source, out.RAY_ADDRESS, address, "is not a loopback address (the port-forward's)"
        )
    forward = raw.get(out.DASHBOARD_PORT_FORWARD)
    if forward is not None and (
        namespace is None or cluster is None or forward != port_forward_command(namespace, cluster)
    ):
        raise _untrusted(
            source,
            out.DASHBOARD_PORT_FORWARD,
            forward,
            "is not the port-forward to the cluster's dashboard Service "
            f"({port_forward_command(namespace or '<namespace>', cluster or '<cluster>')})",
        )
    endpoint = raw.get(out.OBJECT_STORE_ENDPOINT)
    if endpoint is not None:
        if cloud is not None and cloud != "local":
            raise _untrusted(
                source,
                out.OBJECT_STORE_ENDPOINT,
                endpoint,
                f"is set on a stack of cloud {cloud} (only cloud local has one)",
            )
        if not _ENDPOINT.match(endpoint):
            raise _untrusted(
                source, out.OBJECT_STORE_ENDPOINT, endpoint, "is not an http(s)://host[:port] URL"
            )
    secret = raw.get(out.OBJECT_STORE_SECRET)
    if secret is not None:
        if cloud != "local":
            raise _untrusted(
                source, out.OBJECT_STORE_SECRET, secret, "is set on a stack not of cloud local"
            )
        if endpoint is None or namespace is None:
            raise _untrusted(
                source,
                out.OBJECT_STORE_SECRET,
                secret,
                f"is set without {out.OBJECT_STORE_ENDPOINT} and {out.NAMESPACE}",
            )
        if not (len(secret) <= 253 and _DNS1123.match(secret)):
            raise _untrusted(source, out.OBJECT_STORE_SECRET, secret, "is not a Secret's name")
    uri = raw.get(out.BUCKET_URI)
    if uri is None or bucket_given:
        return  # --bucket is the user's own choice
    scheme, _, rest = uri.partition("://")
    name, _, prefix = rest.partition("/")
    if cloud is not None and scheme != SCHEMES[cloud]:
        raise _untrusted(
            source,
            out.BUCKET_URI,
            uri,
            f"is not an {SCHEMES[cloud]}:// bucket, which cloud {cloud} uses",
        )
    if not _BUCKET.match(name):
        raise _untrusted(source, out.BUCKET_URI, uri, "does not name a bucket")
    if not all(_PREFIX_SEGMENT.match(part) for part in prefix.split("/")):
        raise _untrusted(
            source,
            out.BUCKET_URI,
            uri,
            "has a prefix that is not the stack's key prefix (segments of letters, digits, "
            "'.', '_', '-'; no '..', no empty segment)",
        )


def _token_auth(raw: dict[str, Any], source: str) -> bool:
    """Whether the cluster wants a Ray auth token, as the stack says (`rayAuthMode`, checked in
    check_trusted). A stack deployed before that output says it only by exporting
    `authTokenCommand` (a command for people, exported with token auth alone), so without the
    mode that output's presence decides, as it did before the mode existed."""
    mode = _text(raw, out.RAY_AUTH_MODE, source, required=False)
    if mode is not None:
        return mode == out.AUTH_TOKEN
    return _text(raw, out.AUTH_TOKEN_COMMAND, source, required=False) is not None


def load(
    *, stack: str | None, outputs_file: Path | None, bucket: str | None, address: str | None
) -> StackOutputs:
    """Read and check the outputs; `bucket`/`address` override (or stand in for) theirs.

    With an address given, the port-forward is not needed, so neither are `namespace` and
    `rayClusterName` (unless token auth asks for the Secret, which is checked where it is read).
    """
    raw, source = read_raw(stack=stack, outputs_file=outputs_file)

    for key in READ:
        # The program exports strings only (JSON inside a string where structured).
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise _untrusted(source, key, raw[key], "is not a string")
    check_trusted(raw, source, bucket_given=bucket is not None)
    mode = _text(raw, out.MODE, source, required=True)
    if mode not in MODES:
        raise CliError(
            Exit.OUTPUTS, f"output {out.MODE!r} of {source} is {mode!r}, not dev or prod"
        )
    bucket_uri = bucket or _text(raw, out.BUCKET_URI, source, required=False)
    env_text = _text(raw, out.RUNTIME_ENV, source, required=True)
    assert env_text is not None
    try:
        runtime_env = json.loads(env_text)
    except ValueError as e:
        raise CliError(
            Exit.OUTPUTS, f"output {out.RUNTIME_ENV!r} of {source} is not JSON: {e}"
        ) from None
    if not isinstance(runtime_env, dict):
        raise CliError(Exit.OUTPUTS, f"output {out.RUNTIME_ENV!r} of {source} is not a JSON object")
    need_cluster = address is None
    shared_text = _text(raw, out.SHARED_PACKAGES, source, required=False) or "[]"
    try:
        shared = json.loads(shared_text)
    except ValueError:
        shared = None
    if not isinstance(shared, list) or not all(isinstance(p, str) for p in shared):
        raise CliError(
            Exit.OUTPUTS, f"output {out.SHARED_PACKAGES!r} of {source} is not a JSON list"
        )
    return StackOutputs(
        source=source,
        mode=mode,
        bucket_uri=bucket_uri,
        runtime_env=runtime_env,
        namespace=_text(raw, out.NAMESPACE, source, required=need_cluster),
        cluster_name=_text(raw, out.RAY_CLUSTER_NAME, source, required=need_cluster),
        ray_address=_text(raw, out.RAY_ADDRESS, source, required=False),
        token_auth=_token_auth(raw, source),
        port_forward_command=_text(raw, out.DASHBOARD_PORT_FORWARD, source, required=False),
        object_store_endpoint=_text(raw, out.OBJECT_STORE_ENDPOINT, source, required=False),
        # Only from the stack's own state: a file given with --outputs could pair any Secret the
        # user's kubeconfig reaches with any endpoint (its keys would sign requests sent there).
        object_store_secret=(
            _text(raw, out.OBJECT_STORE_SECRET, source, required=False) if stack else None
        ),
        shared_packages=tuple(shared),
    )
