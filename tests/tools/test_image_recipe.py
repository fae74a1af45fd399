"""tools/image recipes without root or network: cache keys, the host's apt sources, the lock,
the rootfs clean-up, the pause image, the push command line and the CLI's one-line errors."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import yaml

from cli.image import oci
from tools.image import __main__ as cli
from tools.image import common, pause, ray, registry, rootfs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAY_PLATFORM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def static_elf(payload: bytes = b"") -> bytes:
    """A 64-bit little-endian ELF header with one PT_LOAD program header and no PT_INTERP."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, 1)  # PT_LOAD
    return bytes(header + phdr) + payload


def dynamic_elf() -> bytes:
    data = bytearray(static_elf())
    struct.pack_into("<I", data, 64, 3)  # PT_INTERP
    return bytes(data)


# --------------------------------------------------------------------------- keys


def test_ray_key_changes_with_each_input() -> None:
    mirrors = rootfs.Mirrors()
    lock = ray.Lock("# top-level: x\nray==2.60.0 --hash=sha256:aa\n")
    base = common.input_key(ray.ray_inputs("2.60.0", mirrors, lock))
    assert common.input_key(ray.ray_inputs("2.60.0", mirrors, lock)) == base
    # Comments in the lock are not inputs.
    commented = ray.Lock("# regenerated\n" + lock.text)
    assert common.input_key(ray.ray_inputs("2.60.0", mirrors, commented)) == base
    changed = [
        ray.ray_inputs("2.61.0", mirrors, lock),
        ray.ray_inputs("2.60.0", mirrors, ray.Lock(lock.text.replace("aa", "bb"))),
        ray.ray_inputs("2.60.0", mirrors, None),
        ray.ray_inputs("2.60.0", rootfs.Mirrors(main="http://mirror.invalid/debian"), lock),
        ray.ray_inputs("2.60.0", rootfs.Mirrors(security=None), lock),
    ]
    keys = {common.input_key(inputs) for inputs in changed}
    assert base not in keys and len(keys) == len(changed)


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("RECIPE", "999"),
        ("APT_PACKAGES", (*ray.APT_PACKAGES, "git")),
        ("EXTRA_REQUIREMENTS", ("boto3",)),
        ("ENV", (*ray.ENV, "EXTRA=1")),
        ("PLATFORMS", ("manylinux2014_x86_64",)),
    ],
)
def test_ray_key_changes_with_the_recipe(
    monkeypatch: pytest.MonkeyPatch, attr: str, value: object
) -> None:
    base = common.input_key(ray.ray_inputs("2.60.0", rootfs.Mirrors(), None))
    monkeypatch.setattr(ray, attr, value)
    assert common.input_key(ray.ray_inputs("2.60.0", rootfs.Mirrors(), None)) != base


def test_suite_and_epoch_are_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    base = common.input_key(ray.ray_inputs("2.60.0", rootfs.Mirrors(), None))
    monkeypatch.setattr(rootfs, "SUITE", "trixie")
    assert common.input_key(ray.ray_inputs("2.60.0", rootfs.Mirrors(), None)) != base
    monkeypatch.undo()
    monkeypatch.setattr(oci, "SOURCE_DATE_EPOCH", 1)
    assert common.input_key(ray.ray_inputs("2.60.0", rootfs.Mirrors(), None)) != base


def test_pause_key_follows_the_binary() -> None:
    a = common.input_key(pause.pause_inputs("aa"))
    assert common.input_key(pause.pause_inputs("aa")) == a
    assert common.input_key(pause.pause_inputs("bb")) != a
    assert common.input_key(pause.pause_inputs("aa", tag="3.9")) != a


# --------------------------------------------------------------------------- apt sources


def test_host_mirrors_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.invalid/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb-src\n"
        "URIs: http://src.invalid/debian\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://disabled.invalid/debian-security\n"
        "Suites: bookworm-security\n"
        "Enabled: no\n"
    )
    (apt / "sources.list.d/security.list").write_text(
        "# security\n"
        "deb [signed-by=/usr/share/keyrings/x.gpg] http://sec.invalid/debian-security "
        "bookworm-security main\n"
    )
    (apt / "sources.list.d/other.list.disabled").write_text(
        "deb http://ignored.invalid/debian bookworm main\n"
    )
    mirrors = rootfs.host_mirrors(apt)
    assert mirrors == rootfs.Mirrors(
        main="http://mirror.invalid/debian",
        updates="http://mirror.invalid/debian",
        security="http://sec.invalid/debian-security",
    )
    assert mirrors.sources_list() == (
        "deb http://mirror.invalid/debian bookworm main\n"
        "deb http://mirror.invalid/debian bookworm-updates main\n"
        "deb http://sec.invalid/debian-security bookworm-security main\n"
    )


def test_host_mirrors_default_without_debian_sources(tmp_path: Path) -> None:
    assert rootfs.host_mirrors(tmp_path / "none") == rootfs.Mirrors()
    only_main = tmp_path / "apt"
    only_main.mkdir()
    (only_main / "sources.list").write_text("deb http://m.invalid/debian bookworm main\n")
    mirrors = rootfs.host_mirrors(only_main)
    assert (mirrors.main, mirrors.updates, mirrors.security) == (
        "http://m.invalid/debian",
        None,
        None,
    )
    assert mirrors.sources_list() == "deb http://m.invalid/debian bookworm main\n"


# --------------------------------------------------------------------------- the lock


def test_render_and_read_a_lock(tmp_path: Path) -> None:
    wheels = []
    for name in (
        "ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl",
        "Smart_Open-9.0.4-py3-none-any.whl",
        "aiohttp_cors-0.8.1-py3-none-any.whl",
        "aiohttp-3.14.5-cp311-cp311-manylinux2014_x86_64.whl",
    ):
        (tmp_path / name).write_bytes(name.encode())
        wheels.append(tmp_path / name)
    text = ray.render_lock("2.60.0", wheels)
    lock = ray.Lock(text)
    assert lock.top_level == ray.top_level("2.60.0")
    assert lock.pins == {
        "aiohttp": "3.14.5",
        "aiohttp-cors": "0.8.1",
        "ray": "2.60.0",
        "smart-open": "9.0.4",
    }
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert [ln.split("==")[0] for ln in body] == ["aiohttp", "aiohttp-cors", "ray", "smart-open"]
    assert all(" --hash=sha256:" in ln for ln in body)


def test_a_lock_for_other_requirements_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray, "LOCKS_DIR", tmp_path)
    assert ray.load_lock("2.60.0") is None
    ray.lock_path("2.60.0").write_text("# top-level: ray[default]==2.60.0\nray==2.60.0\n")
    with pytest.raises(common.ImageError, match=r"python -m tools\.image lock --version 2\.60\.0"):
        ray.load_lock("2.60.0")


def test_the_committed_lock_matches_the_recipe_and_the_local_stack() -> None:
    stack = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
    assert stack["ray-platform:ray"]["version"] == ray.DEFAULT_RAY_VERSION
    assert stack["ray-platform:ray"]["image"] == (
        f"{ray.RAY_REPO}:{ray.tag_for(ray.DEFAULT_RAY_VERSION)}"
    )
    lock = ray.load_lock(ray.DEFAULT_RAY_VERSION)
    assert lock is not None
    pins = lock.pins
    assert pins["ray"] == ray.DEFAULT_RAY_VERSION
    for name in ("boto3", "smart-open", "google-cloud-storage", "pip", "setuptools", "wheel"):
        assert name in pins, name
    # What KubeRay and ray[default] need at run time is pinned too.
    for name in ("aiohttp", "grpcio", "virtualenv", "py-spy", "opencensus"):
        assert name in pins, name


def test_wheel_names() -> None:
    assert ray.wheel_name_version("google_cloud_storage-3.17.1-py3-none-any.whl") == (
        "google-cloud-storage",
        "3.17.1",
    )
    with pytest.raises(common.ImageError):
        ray.wheel_name_version("not-a-wheel.whl")


@pytest.mark.parametrize("version", ["2.60", "latest", "2.60.0; rm -rf /", "v2.60.0"])
def test_bad_ray_versions(version: str) -> None:
    with pytest.raises(common.ImageError, match="not a Ray release version"):
        ray.check_version(version)


def test_good_ray_versions() -> None:
    for version in ("2.60.0", "2.9.3", "3.0.0rc1", "2.61.0.dev0"):
        ray.check_version(version)


# --------------------------------------------------------------------------- the image config


def test_ray_config_matches_upstreams_runtime_contract() -> None:
    config = ray.ray_config("2.60.0").to_json([])
    c = config["config"]
    assert c["User"] == "1000"
    assert c["WorkingDir"] == "/home/ray"
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["PATH"].split(":")[0] == "/home/ray/anaconda3/bin"
    assert "/usr/bin" in env["PATH"].split(":")
    assert env["HOME"] == "/home/ray"
    assert env["LANG"] == env["LC_ALL"] == "C.UTF-8"
    assert c["Cmd"] == ["/bin/bash"]
    assert config["architecture"] == "amd64" and config["os"] == "linux"


def test_ray_layer_keeps_owners_and_empties_mount_points(tmp_path: Path) -> None:
    layer = ray.ray_layer(tmp_path)
    assert layer.owner is oci.owner_from_disk
    assert {"dev", "proc", "sys"} <= layer.exclude_contents


def test_profile_script_puts_the_prefix_first() -> None:
    assert ray.PREFIX + "/bin" in ray.PROFILE_SCRIPT
    assert "export PATH" in ray.PROFILE_SCRIPT


# --------------------------------------------------------------------------- rootfs clean-up


def test_clean_rootfs(tmp_path: Path) -> None:
    r = tmp_path / "rootfs"
    for d in (
        "var/log/apt",
        "var/cache/apt/archives/partial",
        "var/lib/apt/lists/partial",
        "var/cache/debconf",
        "var/lib/dpkg",
        "etc",
        "tmp/x",
        "var/tmp",
        "var/cache/ldconfig",
        "root/.cache/pip",
    ):
        (r / d).mkdir(parents=True, exist_ok=True)
    files = {
        "var/log/dpkg.log": "log",
        "var/log/apt/history.log": "log",
        "var/cache/apt/pkgcache.bin": "bin",
        "var/lib/apt/lists/deb_bookworm_InRelease": "x",
        "var/cache/debconf/config.dat-old": "old",
        "var/cache/debconf/config.dat": "keep",
        "var/lib/dpkg/status-old": "old",
        "var/lib/dpkg/status": "keep",
        "etc/passwd-": "backup",
        "etc/passwd": "root:x:0:0::/root:/bin/bash\n",
        "etc/hostname": "builder\n",
        "etc/resolv.conf": "nameserver 10.0.0.1\n",
        "etc/machine-id": "0123456789abcdef\n",
        "etc/shadow": "root:*:20500:0:99999:7:::\nray:!::0:99999:7:::\n",
        "var/cache/ldconfig/aux-cache": "x",
        "tmp/x/y": "tmp",
        "root/.cache/pip/z": "cache",
    }
    for rel, text in files.items():
        (r / rel).write_text(text)
    (r / "etc/shadow").chmod(0o640)
    rootfs.clean_rootfs(r)
    left = sorted(str(p.relative_to(r)) for p in r.rglob("*") if p.is_file() or p.is_symlink())
    assert left == [
        "etc/machine-id",
        "etc/passwd",
        "etc/shadow",
        "var/cache/debconf/config.dat",
        "var/lib/dpkg/status",
    ]
    assert (r / "var/cache/apt/archives/partial").is_dir()
    assert (r / "var/lib/apt/lists/partial").is_dir()
    assert (r / "etc/machine-id").read_text() == ""
    day = oci.SOURCE_DATE_EPOCH // 86400
    assert (r / "etc/shadow").read_text() == f"root:*:{day}:0:99999:7:::\nray:!::0:99999:7:::\n"
    assert (r / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert (r / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (r / "var/tmp").stat().st_mode & 0o7777 == 0o1777
    assert list((r / "tmp").iterdir()) == []


def test_nothing_is_mounted_under_a_temporary_dir(tmp_path: Path) -> None:
    assert rootfs.mounts_under(tmp_path) == []
    rootfs.remove_tree(tmp_path / "absent")
    (tmp_path / "d/e").mkdir(parents=True)
    rootfs.remove_tree(tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_superseded_builds_of_the_same_tag_are_pruned(cache: Path) -> None:
    root = cache / "images"
    for key, tag in (("old", "2.60.0-py311"), ("other", "2.61.0-py311"), ("new", "2.60.0-py311")):
        (root / "ray" / key / "rootfs").mkdir(parents=True)
        (root / "ray" / key / "image.json").write_text(f'{{"tag": "{tag}"}}')
    ray._prune_superseded(root / "ray" / "new", "2.60.0-py311")
    assert sorted(p.name for p in (root / "ray").iterdir() if p.is_dir()) == ["new", "other"]
    wheels = root / "wheelhouse"
    for key, pin in (("a", "ray==2.60.0 --hash"), ("b", "ray==2.61.0 --hash"), ("c", "x")):
        (wheels / key).mkdir(parents=True)
        (wheels / key / ".complete").write_text(f"{pin} \n")
    (wheels / "d").mkdir()
    (wheels / "d" / ".complete").write_text("ray==2.60.0 --hash=sha256:0 \n")
    ray._prune_wheelhouses(wheels / "d", "2.60.0")
    assert sorted(p.name for p in wheels.iterdir()) == ["b", "c", "d"]


def test_building_ray_without_root_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(common.ImageError, match="needs root"):
        ray.ensure_ray(ray.DEFAULT_RAY_VERSION)


def test_missing_debootstrap_names_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "which", lambda name: None)
    with pytest.raises(common.ImageError, match="apt-get install -y debootstrap"):
        rootfs.debootstrap(
            Path("/nonexistent"), mirrors=rootfs.Mirrors(), log_file=Path("/dev/null")
        )


# --------------------------------------------------------------------------- pause


def test_pause_image(tmp_path: Path, cache: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(static_elf(b"pause"))
    binary.chmod(0o700)
    image = pause.ensure_pause(binary)
    assert (image.repo, image.tag) == ("pause", "3.10")
    assert image.layout.is_relative_to(cache / "images" / "pause")
    digest, manifest, config = oci.read_layout(image.layout, "3.10")
    assert digest == image.digest
    assert config["config"]["User"] == "65535:65535"
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert len(manifest["layers"]) == 1
    # Cached: the same Image, nothing rewritten.
    mtime = (image.layout / "index.json").stat().st_mtime_ns
    assert pause.ensure_pause(binary) == image
    assert (image.layout / "index.json").stat().st_mtime_ns == mtime
    # Same content elsewhere, other mode on disk: the same digest.
    copy = tmp_path / "elsewhere"
    copy.write_bytes(binary.read_bytes())
    copy.chmod(0o755)
    assert pause.ensure_pause(copy).digest == image.digest
    binary.write_bytes(static_elf(b"other"))
    assert pause.ensure_pause(binary).digest != image.digest


def test_pause_refuses_what_cannot_run_alone(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic"
    dynamic.write_bytes(dynamic_elf())
    with pytest.raises(common.ImageError, match="dynamically linked"):
        pause.ensure_pause(dynamic)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(common.ImageError, match="not a 64-bit"):
        pause.ensure_pause(script)
    with pytest.raises(common.ImageError, match="cannot read"):
        pause.ensure_pause(tmp_path / "missing")


# --------------------------------------------------------------------------- push


def test_push_argv(tmp_path: Path) -> None:
    image = common.Image("rayproject/ray", "2.60.0-py311", tmp_path / "layout", "sha256:ab")
    argv = registry.push_argv("skopeo", image, "127.0.0.1:5000", tmp_path / "digest")
    assert argv[:3] == ["skopeo", "--insecure-policy", "copy"]
    assert "--preserve-digests" in argv
    assert "--dest-tls-verify=false" in argv
    assert argv[argv.index("--digestfile") + 1] == str(tmp_path / "digest")
    assert argv[-2:] == [
        f"oci:{tmp_path / 'layout'}:2.60.0-py311",
        "docker://127.0.0.1:5000/rayproject/ray:2.60.0-py311",
    ]


def test_push_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = common.Image("pause", "3.10", tmp_path, "sha256:ab")
    with pytest.raises(common.ImageError, match="not host:port"):
        registry.push(image, "http://127.0.0.1:5000")
    monkeypatch.setattr(common, "which", lambda name: None)
    with pytest.raises(common.ImageError, match="apt-get install -y skopeo"):
        registry.push(image, "127.0.0.1:5000")


# --------------------------------------------------------------------------- CLI


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["push", "pause", "--registry", "127.0.0.1:5000"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs --binary" in err
    assert cli.main(["ray", "--version", "latest"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[image] error: ") and err.count("\n") == 1


def test_cli_pause_prints_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(static_elf())
    assert cli.main(["pause", "--binary", str(binary)]) == 0
    out = capsys.readouterr().out.strip()
    ref, layout = out.split(" ")
    assert ref.startswith("pause:3.10@sha256:")
    assert Path(layout).is_dir()
