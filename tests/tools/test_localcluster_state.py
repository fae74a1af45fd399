"""state.json and the kubeconfigs of the local control plane: what `down` relies on."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import yaml

from tools.devcluster.localcluster import state as st


def test_state_round_trips_and_is_written_atomically(tmp_path: Path) -> None:
    layout = st.Layout(tmp_path)
    record = st.ProcessRecord("etcd", 42, ["/bin/etcd", "--name=x"], ["/bin/etcd"])
    st.save_state(layout, st.State({"etcd-client": 1234}, "/k", [record]))
    assert not layout.state_file.with_suffix(".tmp").exists()
    loaded = st.load_state(layout)
    assert loaded is not None
    assert loaded.ports == {"etcd-client": 1234}
    assert loaded.processes == [record]
    assert loaded.kubeconfig == "/k"


def test_no_state_file_means_no_cluster(tmp_path: Path) -> None:
    assert st.load_state(st.Layout(tmp_path)) is None


def test_a_state_file_of_another_format_is_refused_with_advice(tmp_path: Path) -> None:
    layout = st.Layout(tmp_path)
    layout.state_file.write_text(json.dumps({"version": 99, "ports": {}, "processes": []}))
    with pytest.raises(st.LocalClusterError, match="stop its processes by hand"):
        st.load_state(layout)
    layout.state_file.write_text("{not json")
    with pytest.raises(st.LocalClusterError, match="unreadable"):
        st.load_state(layout)


def test_kubeconfig_embeds_credentials_and_is_private(tmp_path: Path) -> None:
    for name, data in {"ca": b"CA", "crt": b"CERT", "key": b"KEY"}.items():
        (tmp_path / name).write_bytes(data)
    text = st.render_kubeconfig(
        "https://127.0.0.1:1", tmp_path / "ca", tmp_path / "crt", tmp_path / "key", "me"
    )
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    assert cluster["server"] == "https://127.0.0.1:1"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert config["contexts"][0]["context"] == {"cluster": "localcluster", "user": "me"}
    path = tmp_path / "kubeconfig"
    st.write_private(path, text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_layout_is_absolute_and_defaults_under_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_PLATFORM_CACHE", str(tmp_path / "cache"))
    assert st.layout(None).root == (tmp_path / "cache" / "localcluster").resolve()
    monkeypatch.chdir(tmp_path)
    assert st.layout(Path("rel")).root == tmp_path.resolve() / "rel"


def test_object_store_record_is_private_and_round_trips(tmp_path: Path) -> None:
    layout = st.Layout(tmp_path)
    assert st.load_object_store(layout) is None
    store = st.ObjectStore("http://127.0.0.1:9000", "ray", "rp-user", "rp-secret-0123456789")
    layout.object_store.write_text("{}")
    layout.object_store.chmod(0o644)  # even an existing file ends up private
    st.save_object_store(layout, store)
    assert stat.S_IMODE(layout.object_store.stat().st_mode) == 0o600
    assert layout.object_store.parent == layout.root
    assert st.load_object_store(layout) == store
    assert store.env()["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9000"
    assert store.env()["AWS_SECRET_ACCESS_KEY"] == "rp-secret-0123456789"
    layout.object_store.write_text("{damaged")
    with pytest.raises(st.LocalClusterError, match="unreadable"):
        st.load_object_store(layout)
