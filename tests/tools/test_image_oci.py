"""tools/image/oci.py: deterministic layer tars and OCI layouts from small temporary trees.

Same tree in → same manifest digest out, whatever the files' mtimes (and, with a fixed owner
policy, their owners on disk); tar entries normalised; config, manifest and index as containerd
and skopeo read them. No root, no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from cli.image import oci

LONG_NAME = "d/" + "x" * 120 + ".py"  # beyond ustar's 100-byte name field


def make_tree(root: Path) -> Path:
    """A small rootfs: directories, files (one executable, one setuid), a symlink, a hard link,
    a long and a non-ASCII name, a FIFO (never packed) and /dev with a file (contents excluded)."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "d").mkdir()
    (root / "tmp").mkdir()
    (root / "dev").mkdir()
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/su").write_bytes(b"setuid")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "etc/config").write_text("a=1\n")
    (root / "etc/config").chmod(0o644)
    (root / "usr/bin/alias").symlink_to("tool")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-again")
    (root / LONG_NAME).write_text("long\n")
    (root / "d/café.txt").write_text("accent\n")
    (root / "tmp").chmod(0o1777)
    (root / "dev/null-ish").write_text("not packed\n")
    os.mkfifo(root / "d/fifo")
    return root


def layer(root: Path, owner: oci.Owner | None = None) -> oci.TreeLayer:
    return oci.TreeLayer(
        root,
        owner=owner or oci.fixed_owner(0, 0, {"home/ray": (1000, 100)}),
        exclude_contents=frozenset({"dev"}),
    )


CONFIG = oci.ImageConfig(
    user="1000",
    env=("PATH=/home/ray/anaconda3/bin:/usr/bin:/bin", "HOME=/home/ray"),
    working_dir="/home/ray",
    cmd=("/bin/bash",),
)


def build(root: Path, dest: Path, owner: oci.Owner | None = None) -> oci.LayoutResult:
    return oci.write_layout(dest, [layer(root, owner)], CONFIG, "1.0-test")


def layer_members(result: oci.LayoutResult, layout: Path) -> list[tarfile.TarInfo]:
    blob = layout / "blobs/sha256" / result.layers[0].digest.removeprefix("sha256:")
    with tarfile.open(blob) as tar:
        return tar.getmembers()


def test_same_tree_twice_gives_the_same_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    first = build(tree, tmp_path / "a")
    second = build(tree, tmp_path / "b")
    assert first.digest == second.digest
    assert first.layers == second.layers
    for blob in (first.manifest, first.config, *first.layers):
        name = blob.digest.removeprefix("sha256:")
        assert (tmp_path / "a/blobs/sha256" / name).read_bytes() == (
            tmp_path / "b/blobs/sha256" / name
        ).read_bytes()
    assert (tmp_path / "a/index.json").read_bytes() == (tmp_path / "b/index.json").read_bytes()


def test_mtimes_and_creation_order_do_not_change_the_digest(tmp_path: Path) -> None:
    first = build(make_tree(tmp_path / "one"), tmp_path / "a")
    time.sleep(0.01)
    other = make_tree(tmp_path / "two")
    for dirpath, dirnames, filenames in os.walk(other):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and name != "fifo":
                os.utime(path, (1_000_000_000, 1_000_000_000))
    # An extra file created and removed again leaves no trace either.
    (other / "etc/scratch").write_text("x")
    (other / "etc/scratch").unlink()
    assert build(other, tmp_path / "b").digest == first.digest


def test_a_content_or_mode_change_changes_the_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    base = build(tree, tmp_path / "a").digest
    (tree / "etc/config").chmod(0o600)
    assert build(tree, tmp_path / "b").digest != base
    (tree / "etc/config").chmod(0o644)
    (tree / "etc/config").write_text("a=2\n")
    assert build(tree, tmp_path / "c").digest != base


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owners_on_disk_are_ignored_with_a_fixed_owner_policy(tmp_path: Path) -> None:
    first = build(make_tree(tmp_path / "one"), tmp_path / "a")
    other = make_tree(tmp_path / "two")
    os.lchown(other / "etc/config", 4321, 4321)
    os.lchown(other / "usr/bin/alias", 55, 66)
    assert build(other, tmp_path / "b").digest == first.digest
    # ...and kept with the on-disk policy (a rootfs built as root).
    kept = build(other, tmp_path / "c", owner=oci.owner_from_disk)
    members = {m.name: m for m in layer_members(kept, tmp_path / "c")}
    assert (members["etc/config"].uid, members["etc/config"].gid) == (4321, 4321)


def test_fixed_owner_policy() -> None:
    st = os.lstat(".")
    owner = oci.fixed_owner(0, 0, {"home/ray": (1000, 100), "home/ray/shared": (2000, 200)})
    assert owner("etc/passwd", st) == (0, 0)
    assert owner("home/ray", st) == (1000, 100)
    assert owner("home/ray/.bashrc", st) == (1000, 100)
    assert owner("home/ray/shared/x", st) == (2000, 200)  # longest prefix wins
    assert owner("home/rayx", st) == (0, 0)


def test_tar_entries_are_normalised(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "home/ray").mkdir(parents=True)
    (tree / "home/ray/.profile").write_text("# profile\n")
    result = build(tree, tmp_path / "out")
    members = layer_members(result, tmp_path / "out")
    names = [m.name for m in members]
    # Depth-first, children in byte order; no root entry, nothing under dev/, no FIFO.
    assert names == [
        "d",
        "d/café.txt",
        LONG_NAME,
        "dev",
        "etc",
        "etc/config",
        "home",
        "home/ray",
        "home/ray/.profile",
        "tmp",
        "usr",
        "usr/bin",
        "usr/bin/alias",
        "usr/bin/su",
        "usr/bin/tool",
        "usr/bin/tool-again",
    ]
    assert result.stats[0].skipped == 1  # the FIFO
    by_name = {m.name: m for m in members}
    for m in members:
        assert m.mtime == oci.SOURCE_DATE_EPOCH
        assert m.uname == "" and m.gname == ""
        # PAX records only where ustar cannot hold the name; never times or ids.
        assert set(m.pax_headers) <= {"path", "linkpath"}
        expected = (1000, 100) if m.name.startswith("home/ray") else (0, 0)
        assert (m.uid, m.gid) == expected, m.name
    assert set(by_name[LONG_NAME].pax_headers) == {"path"}
    assert by_name["usr/bin/alias"].issym() and by_name["usr/bin/alias"].linkname == "tool"
    assert by_name["usr/bin/tool"].isreg() and by_name["usr/bin/tool"].mode == 0o755
    again = by_name["usr/bin/tool-again"]
    assert again.islnk() and again.linkname == "usr/bin/tool" and again.size == 0
    assert by_name["usr/bin/su"].mode == 0o4755
    assert by_name["tmp"].isdir() and by_name["tmp"].mode == 0o1777
    assert by_name["dev"].isdir()


def test_layer_bytes_match_their_digest_and_the_diff_id(tmp_path: Path) -> None:
    result = build(make_tree(tmp_path / "tree"), tmp_path / "out")
    blob = tmp_path / "out/blobs/sha256" / result.layers[0].digest.removeprefix("sha256:")
    data = blob.read_bytes()
    assert len(data) == result.layers[0].size and len(data) % 512 == 0
    assert "sha256:" + hashlib.sha256(data).hexdigest() == result.layers[0].digest
    _, _, config = oci.read_layout(tmp_path / "out", "1.0-test")
    assert config["rootfs"] == {"type": "layers", "diff_ids": [result.layers[0].digest]}


def test_config_manifest_and_index(tmp_path: Path) -> None:
    result = build(make_tree(tmp_path / "tree"), tmp_path / "out")
    digest, manifest, config = oci.read_layout(tmp_path / "out", "1.0-test")
    assert digest == result.digest
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["created"] == "2025-05-20T00:00:00Z"
    assert config["config"] == {
        "User": "1000",
        "Env": ["PATH=/home/ray/anaconda3/bin:/usr/bin:/bin", "HOME=/home/ray"],
        "WorkingDir": "/home/ray",
        "Cmd": ["/bin/bash"],
    }
    assert manifest["mediaType"] == oci.MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == oci.MEDIA_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [oci.MEDIA_LAYER]
    index = json.loads((tmp_path / "out/index.json").read_bytes())
    (entry,) = index["manifests"]
    assert entry["annotations"] == {oci.REF_NAME: "1.0-test"}
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert entry["size"] == result.manifest.size
    assert json.loads((tmp_path / "out/oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    # Canonical JSON: what is hashed is sorted and compact.
    raw = (tmp_path / "out/blobs/sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert raw == oci.canonical_json(json.loads(raw))


def test_entrypoint_and_labels(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/pause").write_bytes(b"\x7fELF")
    config = oci.ImageConfig(user="65535:65535", entrypoint=("/pause",), labels={"a": "b"})
    oci.write_layout(tmp_path / "out", [oci.TreeLayer(tmp_path / "tree")], config, "3.10")
    _, _, read = oci.read_layout(tmp_path / "out", "3.10")
    assert read["config"] == {"User": "65535:65535", "Entrypoint": ["/pause"], "Labels": {"a": "b"}}


def test_rewriting_a_layout_replaces_it_whole(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    build(tree, tmp_path / "out")
    (tree / "etc/config").write_text("changed\n")
    second = build(tree, tmp_path / "out")
    blobs = {p.name for p in (tmp_path / "out/blobs/sha256").iterdir()}
    assert blobs == {
        b.digest.removeprefix("sha256:") for b in (second.manifest, second.config, *second.layers)
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_read_layout_refuses_a_missing_tag_and_a_corrupt_blob(tmp_path: Path) -> None:
    result = build(make_tree(tmp_path / "tree"), tmp_path / "out")
    with pytest.raises(ValueError, match="no image tagged"):
        oci.read_layout(tmp_path / "out", "other")
    config = tmp_path / "out/blobs/sha256" / result.config.digest.removeprefix("sha256:")
    config.write_bytes(config.read_bytes() + b" ")
    with pytest.raises(ValueError, match="does not match"):
        oci.read_layout(tmp_path / "out", "1.0-test")


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_skopeo_reads_the_layout(tmp_path: Path) -> None:
    result = build(make_tree(tmp_path / "tree"), tmp_path / "out")
    out = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", f"oci:{tmp_path / 'out'}:1.0-test"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    assert info["Digest"] == result.digest
    assert info["Layers"] == [result.layers[0].digest]
