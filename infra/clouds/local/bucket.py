"""The artifact bucket on a local cluster: a bucket of an S3-compatible server the stack names
(`local.objectStore`), reached with the credentials in a Secret."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import pulumi_kubernetes as k8s

import contract.outputs as out
from components.kubernetes.labels import MANAGED_LABELS
from infra.clouds.adapter import KubernetesTarget, WiringPart
from infra.clouds.local.settings import ObjectStoreSettings
from infra.settings import Settings
from infra.settings.secrets import secret_setting

OBJECT_STORE_SECRET = "ray-object-store"
"""The Secret with the S3-compatible server's credentials, read by every Ray container."""
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def object_store_egress(store: ObjectStoreSettings) -> Mapping[str, object]:
    """The S3-compatible server is not on 443: with egress closed Ray must still reach it."""
    port = urlsplit(store.endpoint).port or (443 if store.endpoint.startswith("https") else 80)
    return {"ports": [{"protocol": "TCP", "port": port}]}


def object_store(
    settings: Settings, store: ObjectStoreSettings, target: KubernetesTarget
) -> WiringPart:
    """The credentials' Secret; Ray gets `s3://<bucket>/<prefix>` and the server's endpoint."""
    secret = k8s.core.v1.Secret(
        "object-store-credentials",
        metadata={
            "name": OBJECT_STORE_SECRET,
            "namespace": target.namespace,
            "labels": dict(MANAGED_LABELS),
        },
        string_data={
            "AWS_ACCESS_KEY_ID": store.access_key_id,
            # Read as Pulumi's config API marks it: a secret in state and output.
            "AWS_SECRET_ACCESS_KEY": secret_setting("local", "objectStore", "secretAccessKey"),
        },
        opts=target.resource_opts(),
    )
    bucket_uri = f"s3://{store.bucket}/{settings.bucket_prefix}"
    return WiringPart(
        wiring={
            "bucket_uri": bucket_uri,
            # boto3 (and so Ray's s3:// working_dir download) reads these.
            "env": (("AWS_ENDPOINT_URL_S3", store.endpoint), ("AWS_REGION", "us-east-1")),
            "secret_env": tuple((name, OBJECT_STORE_SECRET, name) for name in _CREDENTIALS),
        },
        dependencies=(secret,),
        outputs={
            out.BUCKET_URI: bucket_uri,
            out.OBJECT_STORE_ENDPOINT: store.endpoint,
            out.OBJECT_STORE_SECRET: OBJECT_STORE_SECRET,
        },
    )
