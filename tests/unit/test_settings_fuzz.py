"""Settings fuzz over the local stack as tools/up deploys it onto its node: Pulumi.local.yaml plus
tools/devcluster/stack.py's overrides (the node's package index and shared directory, the MinIO
bucket) and the secrets tools/up sets. Every leaf of that config is given junk of every shape; the
load must accept it or fail with one SettingsError line that names that key — never another
exception, never a secret's value echoed."""

from __future__ import annotations

import copy
import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.clouds import load_settings
from infra.settings import SettingsError
from tools.devcluster.localcluster.state import ObjectStore
from tools.devcluster.stack import (
    JUPYTER_TOKEN_KEY,
    SECRET_KEY_PATH,
    bucket_overrides,
    node_overrides,
)
from tools.testing.pulumi_mocks import flatten, stack_config

Path_ = tuple[str | int, ...]

# The two secrets tools/up sets (SECRET_KEY_PATH is `pulumi config set --path` spelling).
_STORE_SECRET = ("ray-platform:local", "objectStore", "secretAccessKey")
SECRET_LEAVES = {(JUPYTER_TOKEN_KEY,), _STORE_SECRET}
assert SECRET_KEY_PATH == "ray-platform:local.objectStore.secretAccessKey"

JUNK: list[Any] = [
    None,
    "",
    " ",
    "lots",
    "0",
    "-1",
    -1,
    0,
    1.5,
    10**12,
    True,
    [],
    {},
    ["x"],
    {"k": "v"},
    "x" * 300,
    "/tmp/x; rm -rf / #",
    "$(id)",
    "ünïcødé ✓",
    "line\nbreak",
    "http://user:pw@10.0.0.1:1/",
]


def deployed_local() -> dict[str, Any]:
    """The local stack's config as tools/up hands it to the engine."""
    config = copy.deepcopy(stack_config("local"))
    store = ObjectStore(
        endpoint="http://10.88.0.1:9000",
        bucket="ray",
        access_key="rpaccess0123",
        secret_key="minio-secret-0123456789abcdef",
    )
    config.update(bucket_overrides(config, store))
    config.update(
        node_overrides(config, "http://10.88.0.1:3141/index/", Path("/var/lib/rp-node/shared"))
    )
    config["ray-platform:local"]["objectStore"]["secretAccessKey"] = store.secret_key
    return config


def leaves(node: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list) and node:
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))
    else:
        yield path


def setting_key(path: Path_) -> str:
    """`("ray-platform:ray", "workerGroups", 0, "cpu")` → `ray-platform:ray.workerGroups[0].cpu`."""
    out = str(path[0])
    for part in path[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def names(text: str, path: Path_) -> bool:
    """Whether an error line names the key at `path`, or the list or mapping that holds it (a
    rule that checks a whole list names the list), with or without the `ray-platform:`."""
    for depth in range(len(path), max(len(path) - 2, 0), -1):
        key = setting_key(path[:depth])
        if key.removeprefix("ray-platform:") in text and (depth > 1 or key in text):
            return True
    return False


def _set(config: dict[str, Any], path: Path_, value: Any) -> None:
    node: Any = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _random_junk(rng: random.Random) -> list[Any]:
    alphabet = string.printable + "äß✓\u0000"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(3)]


BASE = deployed_local()
LEAVES = sorted(leaves(BASE), key=setting_key)


def test_the_deployed_local_stack_loads() -> None:
    settings = load_settings(flatten(BASE), project="ray-platform", stack="local")
    assert settings.ray.package_index == "http://10.88.0.1:3141/index/"
    assert settings.cloud_settings.host_path == "/var/lib/rp-node/shared"  # type: ignore[attr-defined]
    assert settings.storage.artifact_bucket.enabled
    # The fuzz covers the node's settings: those tools/devcluster/stack.py's overrides set, and
    # sizing.
    keys = {setting_key(p) for p in LEAVES}
    for expected in (
        "ray-platform:ray.packageIndex",
        "ray-platform:local.hostPath",
        "ray-platform:local.objectStore.endpoint",
        "ray-platform:local.objectStore.secretAccessKey",
        "ray-platform:storage.artifactBucket.enabled",
        "ray-platform:jupyterToken",
        "ray-platform:ray.head.cpu",
        "ray-platform:ray.head.rayStartParams.num-cpus",
        "ray-platform:ray.workerGroups[0].minReplicas",
        "ray-platform:ray.autoscaler.memory",
        "ray-platform:ray.jupyter.cpu",
    ):
        assert expected in keys


@pytest.mark.parametrize("path", LEAVES, ids=setting_key)
def test_junk_in_any_local_setting_is_one_line_naming_it(path: Path_) -> None:
    rng = random.Random(setting_key(path))  # the same junk on every run, per key
    secret = path in SECRET_LEAVES
    for value in [*JUNK, *_random_junk(rng)]:
        config = copy.deepcopy(BASE)
        _set(config, path, value)
        try:
            load_settings(flatten(config), project="ray-platform", stack="local")
        except SettingsError as e:
            text = str(e)
        else:
            continue
        shown = f"{setting_key(path)} <- {value!r}: {text}"
        assert "\n" not in text, shown
        assert names(text, path), shown
        needle = value if isinstance(value, str) else json.dumps(value)
        if secret and len(needle.strip()) >= 4:
            assert needle not in text, f"secret echoed: {shown}"
