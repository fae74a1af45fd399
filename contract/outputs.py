"""The stack outputs `ray-platform` reads: their names and the values it relies on.

infra/platform.py exports them under these names and cli/outputs.py reads them under the same
ones. Every value is a string (JSON inside a string where structured), because the command reads
`pulumi stack output --json` and refuses anything else as edited by hand. The clouds' adapters
export `bucketUri`, `objectStoreEndpoint` and `imageRepository` themselves;
tests/cli/test_outputs_contract.py feeds every stack's outputs, as the program writes them, to the
command's loader, which holds the adapters to these names too.
"""

from __future__ import annotations

from typing import Final

MODE: Final = "mode"
"""`dev` or `prod` (MODES): prod refuses package installs in a job's runtime_env."""
CLOUD: Final = "cloud"
"""The stack's cloud (`aws`, `gcp`, `local`): it decides the bucket's scheme."""
BUCKET_URI: Final = "bucketUri"
"""`s3://bucket/prefix` or `gs://bucket/prefix`; absent on a stack without a bucket."""
OBJECT_STORE_ENDPOINT: Final = "objectStoreEndpoint"
"""An S3-compatible store's URL (cloud `local` only)."""
OBJECT_STORE_SECRET: Final = "objectStoreSecret"
"""The Secret in NAMESPACE with that store's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (cloud
`local` only): the command uploads with them when the environment names no credentials."""
RUNTIME_ENV: Final = "runtimeEnv"
"""The stack's default runtime_env, as JSON."""
SHARED_PACKAGES: Final = "sharedPackages"
"""The requirements installed onto the shared file system, as a JSON list of strings."""
NAMESPACE: Final = "namespace"
RAY_CLUSTER_NAME: Final = "rayClusterName"
"""The RayCluster's name, which is also its auth token Secret's."""
RAY_ADDRESS: Final = "rayAddress"
"""The loopback address the dashboard port-forward serves."""
DASHBOARD_PORT_FORWARD: Final = "dashboardPortForward"
"""The `kubectl port-forward` command to the dashboard Service (quoted to the user)."""
RAY_AUTH_MODE: Final = "rayAuthMode"
"""`token` or `disabled` (AUTH_MODES): whether the cluster wants a Ray auth token. Stacks
deployed before this output have none; the command then infers token auth from the presence of
AUTH_TOKEN_COMMAND, the only sign those stacks give."""
AUTH_TOKEN_COMMAND: Final = "authTokenCommand"
"""The kubectl command that prints the Ray auth token (for people; token auth only)."""

IMAGE_REPOSITORY: Final = "imageRepository"
"""Where `ray-platform image build` pushes the application image: `host[:port]/path`, no tag or
digest (the stack's ECR repository URL, `REGION-docker.pkg.dev/PROJECT/REPO/ray-app`, or the local
node's `local.imageRepository`); absent on a stack without a registry (dev)."""
BASE_IMAGE: Final = "baseImage"
"""The image the application image is built on, `name:tag@sha256:…` (`ray.baseImage`); absent when
unset."""

HEAD_SHELL_COMMAND: Final = "headShellCommand"
JUPYTER_PORT_FORWARD: Final = "jupyterPortForward"
JUPYTER_URL: Final = "jupyterUrl"
IMAGE: Final = "image"
"""Outputs for people, not read by the command: named here so the program spells them once."""

READ: Final = (
    MODE,
    CLOUD,
    BUCKET_URI,
    RUNTIME_ENV,
    NAMESPACE,
    RAY_CLUSTER_NAME,
    RAY_ADDRESS,
    RAY_AUTH_MODE,
    AUTH_TOKEN_COMMAND,
    DASHBOARD_PORT_FORWARD,
    OBJECT_STORE_ENDPOINT,
    OBJECT_STORE_SECRET,
    SHARED_PACKAGES,
    IMAGE_REPOSITORY,
    BASE_IMAGE,
)
"""The outputs the command reads; each must be a string when present."""

MODES: Final = ("dev", "prod")
AUTH_TOKEN: Final = "token"
AUTH_DISABLED: Final = "disabled"
AUTH_MODES: Final = (AUTH_TOKEN, AUTH_DISABLED)
"""The values of RAY_AUTH_MODE: those of the `ray.auth` setting."""

WORKING_DIRS: Final = "working_dirs"
"""Under BUCKET_URI's prefix: where the command puts working-directory zips, and what the stack's
bucket expires (storage.artifactBucket.workingDirExpiryDays)."""
