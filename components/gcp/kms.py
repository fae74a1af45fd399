"""A customer-managed Cloud KMS key for one stateful resource, usable by the Google service
agent that encrypts with it (GCS, Artifact Registry): key ring, rotating key, the agent's grant.
The resource waits for the grant (`depends_on` in the returned options): without it the service
cannot create the resource with the key."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

KEY_ROTATION_PERIOD = "7776000s"  # 90 days
SECONDS_PER_DAY = 86_400


def agent_key(
    name: str,
    *,
    project: str,
    location: str,
    labels: Mapping[str, str],
    service_agent: pulumi.Input[str],
    grant_suffix: str,
    opts: pulumi.ResourceOptions,
) -> tuple[gcp.kms.CryptoKey, pulumi.ResourceOptions]:
    """(the key, `opts` for the resource it encrypts). Everything takes `opts` (the caller's
    protect/retain: a retained resource whose agent lost the key could not be written)."""
    ring = gcp.kms.KeyRing(f"{name}-keyring", project=project, location=location, opts=opts)
    key = gcp.kms.CryptoKey(
        f"{name}-key",
        key_ring=ring.id,
        purpose="ENCRYPT_DECRYPT",
        rotation_period=KEY_ROTATION_PERIOD,
        destroy_scheduled_duration=f"{30 * SECONDS_PER_DAY}s",
        labels=dict(labels),
        opts=opts,
    )
    grant = gcp.kms.CryptoKeyIAMMember(
        f"{name}-key-{grant_suffix}",
        crypto_key_id=key.id,
        role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
        member=pulumi.Output.concat("serviceAccount:", service_agent),
        opts=opts,
    )
    return key, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[grant]))
