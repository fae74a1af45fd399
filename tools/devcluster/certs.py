"""Throwaway PKI for the local control plane (see tools/devcluster/localcluster/).

Everything here is generated fresh for each cluster and never leaves the machine: a CA, serving
certificates for kube-apiserver and kube-controller-manager, client certificates for the admin and
the controller manager, and the service-account signing key pair.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)
# Tolerates small clock differences between the generating process and the verifiers.
_BACKDATE = datetime.timedelta(minutes=5)

ADMIN_USER = "localcluster-admin"
"""Common name of the admin client certificate (its group, system:masters, grants cluster-admin)."""

CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
"""The user that Kubernetes' bootstrap RBAC policy grants the controller manager's permissions."""


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its certificate and private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pki:
    """Paths of the files written by `write_pki`; all PEM."""

    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    controller_manager_serving_cert: Path
    controller_manager_serving_key: Path
    admin_cert: Path
    admin_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    service_account_key: Path
    """Private half, for signing tokens (kube-apiserver and the token controller)."""
    service_account_pub: Path
    """Public half, for verifying tokens."""

    @classmethod
    def of(cls, directory: Path) -> Pki:
        """The paths `write_pki` wrote into `directory` (to restart a component later)."""

        def pair(stem: str) -> tuple[Path, Path]:
            return directory / f"{stem}.crt", directory / f"{stem}.key"

        return cls(
            directory / "ca.crt",
            directory / "ca.key",
            *pair("apiserver"),
            *pair("controller-manager-serving"),
            *pair("admin"),
            *pair("controller-manager"),
            directory / "sa.key",
            directory / "sa.pub",
        )


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What every certificate here shares: validity, serial, basic constraints, key usage."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def new_authority(common_name: str) -> Authority:
    """A self-signed CA valid for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        _base(name, name, key.public_key(), now, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert=cert, key=key)


def issue(
    ca: Authority,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by `ca`, for TLS serving and/or client authentication.

    Kubernetes maps a client certificate's CN to the user name and each O to a group.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        _base(x509.Name(attributes), ca.cert.subject, key.public_key(), now, ca=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if dns_names or ip_addresses:
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM encoding of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pki(directory: Path, *, service_ip: str, node_ip: str | None = None) -> Pki:
    """Generate a complete, fresh PKI for one local control plane into `directory`.

    `service_ip` is the first address of the service cluster IP range: in-cluster clients reach
    the API server as https://<service_ip>, so the serving certificate must name it. With a node,
    the API server also serves on `node_ip` (the pod network's bridge address).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = new_authority("localcluster-ca")
    apiserver = issue(
        ca,
        "kube-apiserver",
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ip_addresses=("127.0.0.1", service_ip, *([node_ip] if node_ip else [])),
        server=True,
    )
    kcm_serving = issue(
        ca,
        "kube-controller-manager",
        dns_names=("localhost",),
        ip_addresses=("127.0.0.1",),
        server=True,
    )
    admin = issue(ca, ADMIN_USER, organizations=("system:masters",), client=True)
    kcm_client = issue(ca, CONTROLLER_MANAGER_USER, client=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def write(name: str, data: bytes, *, private: bool = False) -> Path:
        return _write(directory, name, data, private=private)

    def write_pair(
        stem: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> tuple[Path, Path]:
        return _write_pair(directory, stem, pair)

    if node_ip is not None:
        write_node_pki(directory, ca, node_ip)
    apiserver_cert, apiserver_key = write_pair("apiserver", apiserver)
    kcm_serving_cert, kcm_serving_key = write_pair("controller-manager-serving", kcm_serving)
    admin_cert, admin_key = write_pair("admin", admin)
    kcm_cert, kcm_key = write_pair("controller-manager", kcm_client)
    return Pki(
        ca_cert=write("ca.crt", cert_pem(ca.cert)),
        ca_key=write("ca.key", key_pem(ca.key), private=True),
        apiserver_cert=apiserver_cert,
        apiserver_key=apiserver_key,
        controller_manager_serving_cert=kcm_serving_cert,
        controller_manager_serving_key=kcm_serving_key,
        admin_cert=admin_cert,
        admin_key=admin_key,
        controller_manager_cert=kcm_cert,
        controller_manager_key=kcm_key,
        service_account_key=write("sa.key", key_pem(sa_key), private=True),
        service_account_pub=write("sa.pub", sa_pub),
    )


def _write(directory: Path, name: str, data: bytes, *, private: bool = False) -> Path:
    path = directory / name
    # Create with the final mode so a private key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _write_pair(
    directory: Path, stem: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> tuple[Path, Path]:
    cert_path = _write(directory, f"{stem}.crt", cert_pem(pair[0]))
    return cert_path, _write(directory, f"{stem}.key", key_pem(pair[1]), private=True)


NODE_NAME = "ray-platform-node"
NODE_CLIENTS = {
    # stem: (user, groups). The users are the ones Kubernetes' bootstrap RBAC policy (and the
    # Node authorizer, for the kubelet) grants each component's permissions.
    "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
    "scheduler": ("system:kube-scheduler", ()),
    "kube-proxy": ("system:kube-proxy", ()),
    # The API server calling kubelets (logs, exec, port-forward): kubelet authorizes it through a
    # SubjectAccessReview, which system:masters passes.
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
    # CoreDNS reads Services, EndpointSlices, Namespaces and Pods: the ClusterRole
    # `ray-platform:coredns` created when the node starts is bound to this user.
    "coredns": ("ray-platform:coredns", ()),
    # kube-router (the NetworkPolicy engine): the ClusterRole `ray-platform:kube-router`.
    "kube-router": ("ray-platform:kube-router", ()),
}
NODE_SERVERS = {
    # stem: (common name, IP addresses)
    "kubelet-serving": (NODE_NAME, ("127.0.0.1",)),
    "scheduler-serving": ("kube-scheduler", ("127.0.0.1",)),
}


def write_node_pki(directory: Path, ca: Authority, node_ip: str) -> None:
    """The node's certificates, signed by the cluster's CA: one client certificate per component
    (`<stem>.crt`/`.key` for each of NODE_CLIENTS) and the serving ones (NODE_SERVERS; kubelet's
    also names `node_ip`, where the API server reaches it)."""
    for stem, (user, groups) in NODE_CLIENTS.items():
        _write_pair(directory, stem, issue(ca, user, organizations=groups, client=True))
    for stem, (name, ips) in NODE_SERVERS.items():
        extra = (node_ip,) if stem == "kubelet-serving" else ()
        pair = issue(ca, name, dns_names=("localhost",), ip_addresses=(*ips, *extra), server=True)
        _write_pair(directory, stem, pair)
