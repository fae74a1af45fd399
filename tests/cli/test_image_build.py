"""`ray-platform image build`, against a small base image made here (a skopeo `dir:` copy in the
cache, as `fetch` leaves one) and wheels made here (served to the real uv from a directory, no
index): resolution held to the base's pins, the layers, determinism, and each refusal.

Real: uv (resolve, install), the OCI writer, skopeo (the unreachable-registry cases). Stand-ins:
the base image (a few files where a rayproject/ray image has Ray) and the wheels.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.errors import CliError, Exit
from cli.image import base as base_image
from cli.image import build, resolve
from cli.main import main
from tools.testing.registry_server import registry_server, served_digest

SITE = "home/ray/anaconda3/lib/python3.11/site-packages"
FREEZE = "ray==2.60.0\nbasedep==1.0\n"


def _tar(entries: list[tuple[str, bytes | None, int, int, int]]) -> bytes:
    """(name, content or None for a directory, mode, uid, gid) -> an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, mode, uid, gid in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 0
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _dirs(path: str, uid: int, gid: int) -> list[tuple[str, bytes | None, int, int, int]]:
    parts = path.split("/")
    return [("/".join(parts[: i + 1]), None, 0o755, uid, gid) for i in range(len(parts))]


def make_base(cache: Path, *, freeze: str | None = FREEZE, tag: str = "2.60.0-py311") -> str:
    """A base image's `dir:` copy under the cache; returns its pinned reference."""
    layer1 = _tar(
        [
            ("home", None, 0o755, 0, 0),
            ("home/ray", None, 0o750, 1000, 100),
            *[d for d in _dirs(SITE, 1000, 100) if d[0] not in ("home", "home/ray")],
            *[d for d in _dirs("home/ray/anaconda3/bin", 1000, 100)[3:]],
            ("home/ray/anaconda3/bin/python3.11", b"\x7fELF", 0o755, 1000, 100),
            (f"{SITE}/ray", None, 0o755, 1000, 100),
            (f"{SITE}/ray/__init__.py", b"__version__ = '2.60.0'\n", 0o644, 1000, 100),
            (f"{SITE}/ray-2.60.0.dist-info", None, 0o755, 1000, 100),
            (f"{SITE}/basedep", None, 0o755, 1000, 100),
            (f"{SITE}/basedep/__init__.py", b"", 0o644, 1000, 100),
            (f"{SITE}/basedep-1.0.dist-info", None, 0o755, 1000, 100),
            # Installed after pip-freeze.txt was written (or left out by `pip freeze`, as pip,
            # setuptools and wheel are): the build must still count it as the base's.
            (f"{SITE}/hidden-1.0.dist-info", None, 0o755, 1000, 100),
            ("var", None, 0o755, 0, 0),
            ("var/lib", None, 0o755, 0, 0),
            ("var/lib/dpkg", None, 0o755, 0, 0),
            ("var/lib/dpkg/status", b"Package: libc6\nVersion: 2.36-9+deb12u9\n", 0o644, 0, 0),
        ]
    )
    layer2 = _tar(
        [] if freeze is None else [("home/ray/pip-freeze.txt", freeze.encode(), 0o644, 1000, 100)]
    )
    blobs = {hashlib.sha256(b).hexdigest(): b for b in (layer1, layer2)}
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "1000", "Env": ["PATH=/home/ray/anaconda3/bin:/usr/bin"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{h}" for h in blobs],
            },
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": f"sha256:{config_hex}",
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": f"sha256:{h}",
                    "size": len(b),
                }
                for h, b in blobs.items()
            ],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    copy_dir = cache / "image-build" / "bases" / digest.removeprefix("sha256:")
    copy_dir.mkdir(parents=True)
    for h, b in {**blobs, config_hex: config}.items():
        (copy_dir / h).write_bytes(b)
    (copy_dir / "manifest.json").write_bytes(manifest)
    (copy_dir / base_image.PINNED).write_bytes(manifest)
    return f"registry.example/rayproject/ray:{tag}@{digest}"


def _record_line(path: str, data: bytes) -> list[str]:
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [path, f"sha256={h}", str(len(data))]


def make_wheel(
    where: Path, name: str, version: str, requires: tuple[str, ...] = (), script: str | None = None
) -> None:
    dist = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {f"{name}/__init__.py": f"VERSION = {version!r}\n".encode()}
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files[f"{dist}/METADATA"] = meta.encode()
    files[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if script:
        files[f"{dist}/entry_points.txt"] = f"[console_scripts]\n{script} = {name}:main\n".encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, data in files.items():
        writer.writerow(_record_line(path, data))
    writer.writerow([f"{dist}/RECORD", "", ""])
    files[f"{dist}/RECORD"] = out.getvalue().encode()
    with zipfile.ZipFile(where / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path | str]:
    cache = tmp_path / "cache"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "basedep", "1.0")
    make_wheel(wheels, "basedep", "2.0")
    make_wheel(wheels, "appdep", "1.0", ("basedep>=1.0",), script="appdep-cli")
    make_wheel(wheels, "needsnew", "1.0", ("basedep>=2.0",))
    make_wheel(wheels, "withdep", "1.0", ("extradep==1.0",))
    make_wheel(wheels, "extradep", "1.0")
    make_wheel(wheels, "hidden", "2.0")
    monkeypatch.setenv("RAY_PLATFORM_CACHE", str(cache))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "train.py").write_text("import appdep\nprint('trained', appdep.VERSION)\n")
    (code / "run.sh").write_text("#!/bin/sh\n")
    (code / "run.sh").chmod(0o755)
    reqs = tmp_path / "requirements.lock"
    reqs.write_text("appdep==1.0\n")
    return {
        "cache": cache, "base": make_base(cache), "code": code, "reqs": reqs, "wheels": wheels,
    }  # fmt: skip


def _request(env: dict[str, Path | str], **kw: object) -> build.Request:
    args: dict[str, object] = {
        "base": base_image.ImageRef.parse(str(env["base"]), "base"),
        "repository": "127.0.0.1:5000/ray-platform/app",
        "context": env["code"],
        "requirements": env["reqs"],
        "index": resolve.Index(find_links=(str(env["wheels"]),), no_index=True),
        **kw,
    }
    return build.Request(**args)  # type: ignore[arg-type]


def _layer_members(layout: Path, digest: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            found[m.name] = (m, f.read() if f else b"")
    return found


def test_build_layers_config_and_paths(env: dict[str, Path | str]) -> None:
    built = build.build(_request(env), Path(env["cache"]), lambda _: None)
    assert built.packages == 1  # appdep; basedep comes with the base
    assert built.tag.startswith("2.60.0-py311-") and built.digest[7:19] in built.tag
    manifest = json.loads(
        (built.layout / "blobs/sha256" / built.digest.removeprefix("sha256:")).read_bytes()
    )
    copy_dir = Path(env["cache"]) / "image-build/bases" / str(env["base"]).split("sha256:")[1]
    base_manifest = json.loads((copy_dir / "manifest.json").read_bytes())
    # The base's layers first, unchanged (same digests), then packages and code.
    assert [lay["digest"] for lay in manifest["layers"][:2]] == [
        lay["digest"] for lay in base_manifest["layers"]
    ]
    assert len(manifest["layers"]) == 4
    packages = _layer_members(built.layout, manifest["layers"][2]["digest"])
    assert f"{SITE}/appdep/__init__.py" in packages
    assert not any("basedep" in n for n in packages)
    script, content = packages["home/ray/anaconda3/bin/appdep-cli"]
    assert content.startswith(b"#!/home/ray/anaconda3/bin/python3.11\n")
    assert script.mode == 0o755 and (script.uid, script.gid) == (1000, 100)
    record = packages[f"{SITE}/appdep-1.0.dist-info/RECORD"][1].decode()
    row = next(r for r in csv.reader(io.StringIO(record)) if r[0].endswith("appdep-cli"))
    assert row == _record_line("../../../bin/appdep-cli", content)
    # Parent directories repeat the base's owner and mode, never the build machine's.
    home, _ = packages["home"]
    assert (home.uid, home.gid, home.mode) == (0, 0, 0o755)
    ray_home, _ = packages["home/ray"]
    assert (ray_home.uid, ray_home.gid, ray_home.mode) == (1000, 100, 0o750)
    code = _layer_members(built.layout, manifest["layers"][3]["digest"])
    assert code["home/ray/app/pkg/train.py"][1].startswith(b"import appdep")
    assert code["home/ray/app/run.sh"][0].mode == 0o755
    assert code["home/ray/app/pkg/train.py"][0].mode == 0o644
    config = json.loads(
        (built.layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes()
    )
    assert "PYTHONPATH=/home/ray/app" in config["config"]["Env"]
    assert config["config"]["User"] == "1000"  # the base's runtime settings carry over
    assert config["rootfs"]["diff_ids"][2:] == [lay["digest"] for lay in manifest["layers"][2:]]
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.base.digest"] == str(env["base"]).split("@")[1]


def test_same_inputs_same_digest(
    env: dict[str, Path | str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build.build(_request(env), Path(env["cache"]), lambda _: None)
    # The same code elsewhere, with other mtimes and a stricter umask: the same image.
    moved = tmp_path / "elsewhere"
    shutil.copytree(Path(env["code"]), moved)
    for p in moved.rglob("*"):
        os.utime(p, (1, 1))
    (moved / "pkg" / "train.py").chmod(0o600)
    # Other wheel mtimes, a cold uv cache and a machine's uv settings: none may show.
    for wheel in Path(env["wheels"]).iterdir():
        os.utime(wheel, (2, 2))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "other-uv-cache"))
    monkeypatch.setenv("UV_COMPILE_BYTECODE", "1")
    second = build.build(_request(env, context=moved), Path(env["cache"]), lambda _: None)
    assert second.digest == first.digest and second.tag == first.tag
    (moved / "pkg" / "train.py").write_text("print('changed')\n")
    third = build.build(_request(env, context=moved), Path(env["cache"]), lambda _: None)
    assert third.digest != first.digest


def _cli(env: dict[str, Path | str], *extra: str) -> list[str]:
    return [
        "image", "build", "--base", str(env["base"]),
        "--repository", "127.0.0.1:5000/ray-platform/app",
        "--context", str(env["code"]), "--requirements", str(env["reqs"]),
        "--find-links", str(env["wheels"]), "--no-index", *extra,
    ]  # fmt: skip


def test_cli_prints_the_reference_last(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(env, "--no-push")) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("127.0.0.1:5000/ray-platform/app:2.60.0-py311-")
    assert "@sha256:" in last


def _fails(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    code = main(_cli(env, *extra))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_direct_conflict_names_both_versions(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    Path(env["reqs"]).write_text("appdep==1.0\nbasedep==2.0\n")
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.REQUIREMENTS
    assert "basedep==2.0" in line and "basedep==1.0" in line


def test_transitive_conflict_is_one_line(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    Path(env["reqs"]).write_text("needsnew==1.0\n")
    code = main(_cli(env, "--no-push"))
    # Progress lines are `[image] …`; the error is one line of its own.
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("[image]")]
    assert code == Exit.REQUIREMENTS and len(err) == 1, err
    assert "basedep>=2" in err[0] and "basedep==1.0" in err[0], err[0]


def test_push_to_no_registry_is_one_line(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli(env, "--plain-http")
    args[args.index("--repository") + 1] = "127.0.0.1:9/ray-platform/app"
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == Exit.REGISTRY
    assert err[-1].startswith("ray-platform image: no registry answers for 127.0.0.1:9/")


def test_unreachable_base(env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(env, "--no-push", "--plain-http")
    args[args.index("--base") + 1] = "127.0.0.1:9/rayproject/ray:2.60.0-py311@sha256:" + "1" * 64
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == Exit.REGISTRY
    assert len(err.splitlines()) == 1 and "reading the base image" in err


def test_cached_base_not_matching_its_digest(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    copy_dir = Path(env["cache"]) / "image-build/bases" / str(env["base"]).split("sha256:")[1]
    (copy_dir / "manifest.json").write_bytes(b'{"tampered": true}')
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.REGISTRY and "does not match the digest" in line


def test_base_without_freeze_is_refused(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {**env, "base": make_base(tmp_path / "cache", freeze=None, tag="2.60.0-py311-nofreeze")}
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.USAGE and "pip-freeze.txt" in line


def test_unpinned_base_is_refused(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli(env, "--no-push")
    args[args.index("--base") + 1] = "rayproject/ray:2.60.0-py311"
    assert main(args) == Exit.USAGE
    assert "not pinned by digest" in capsys.readouterr().err


def test_set_config_refused_for_a_dev_stack(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"mode": "dev", "cloud": "aws"}))
    with pytest.raises(CliError) as e:
        from cli.commands import image

        args = image.parse([*_cli(env)[1:], "--outputs", str(outputs)])
        args.set_config, args.stack = True, "dev"
        image.run(args)
    assert e.value.code == Exit.USAGE and "not a prod stack" in e.value.message


def test_a_lock_with_hashes_is_held_to_them(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wheel = tmp_path / "wheels" / "appdep-1.0-py3-none-any.whl"
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    Path(env["reqs"]).write_text(f"appdep==1.0 \\\n    --hash=sha256:{good}\n")
    assert main(_cli(env, "--no-push")) == 0
    capsys.readouterr()
    Path(env["reqs"]).write_text(f"appdep==1.0 --hash=sha256:{'0' * 64}\n")
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.REQUIREMENTS and "hash" in line.lower()


# ------------------------------------------------------------- against a real registry (loopback)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    assert shutil.which("skopeo"), "no skopeo: apt-get install skopeo (tools/node-packages.sh)"
    with registry_server(tmp_path / "registry") as address:
        yield address


def _base_in(registry: str, env: dict[str, Path | str]) -> str:
    """The test base pushed to `registry` as it is (Docker schema 2, by digest), and removed
    from the cache: the build must fetch it."""
    digest = str(env["base"]).split("@")[1]
    copy_dir = Path(env["cache"]) / "image-build/bases" / digest.removeprefix("sha256:")
    (copy_dir / base_image.PINNED).unlink()
    (copy_dir / "version").write_text("Directory Transport Version: 1.1\n")
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests",
         "--dest-tls-verify=false", f"dir:{copy_dir}",
         f"docker://{registry}/rayproject/ray:2.60.0-py311"],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(copy_dir)
    return f"{registry}/rayproject/ray:2.60.0-py311@{digest}"


def test_fetch_build_push_and_push_again(
    env: dict[str, Path | str], registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**env, "base": _base_in(registry, env)}
    args = _cli(env, "--plain-http")
    args[args.index("--repository") + 1] = f"{registry}/ray-platform/app"
    assert main(args) == 0, capsys.readouterr().err
    reference = capsys.readouterr().out.strip().splitlines()[-1]
    name, _, digest = reference.partition("@")
    tag = name.rsplit(":", 1)[1]
    assert served_digest(registry, "ray-platform/app", tag) == digest
    # Same inputs: same reference, and the tag already holding it is not pushed again (an
    # immutable-tag registry would refuse even an identical push).
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == reference
    # Other content under that tag is refused before anything is pushed.
    Path(env["code"], "pkg", "train.py").write_text("print('other')\n")
    code = main([*args, "--tag", tag])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == Exit.REGISTRY and "already names another image" in line, line
    assert served_digest(registry, "ray-platform/app", tag) == digest


def test_a_digest_the_registry_does_not_have_is_one_line(
    env: dict[str, Path | str], registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    real = _base_in(registry, env)
    env = {**env, "base": real.split("@")[0] + "@sha256:" + "2" * 64}
    code, line = _fails(env, capsys, "--no-push", "--plain-http")
    assert code == Exit.REGISTRY and "reading the base image" in line


def test_a_registry_refusing_the_push_is_one_line(
    env: dict[str, Path | str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with registry_server(tmp_path / "readonly", read_only=True) as readonly:
        args = _cli(env, "--plain-http")
        args[args.index("--repository") + 1] = f"{readonly}/ray-platform/app"
        code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == Exit.REGISTRY
    assert err[-1].startswith(f"ray-platform image: pushing {readonly}/") or "refused" in err[-1]


def test_history_pairs_with_the_layers_and_code_may_go_under_the_root(
    env: dict[str, Path | str],
) -> None:
    built = build.build(_request(env, code_dir="/app"), Path(env["cache"]), lambda _: None)
    manifest = json.loads((built.layout / "blobs/sha256" / built.digest[7:]).read_bytes())
    config = json.loads(
        (built.layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes()
    )
    layers = [h for h in config["history"] if not h.get("empty_layer")]
    assert len(layers) == len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    code = _layer_members(built.layout, manifest["layers"][-1]["digest"])
    assert code["app"][0].uid == 0 and "app/pkg/train.py" in code
    assert "PYTHONPATH=/app" in config["config"]["Env"]


def test_an_unlocked_line_is_refused(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    Path(env["reqs"]).write_text("appdep>=1.0\n")
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.USAGE and "not locked to one version" in line


def test_a_lock_missing_a_dependency_is_refused(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    Path(env["reqs"]).write_text("withdep==1.0\n")
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.REQUIREMENTS and "extradep==1.0" in line and "not complete" in line
    Path(env["reqs"]).write_text("withdep==1.0\nextradep==1.0\n")
    assert main(_cli(env, "--no-push")) == 0


def test_a_line_for_another_platform_is_skipped(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    Path(env["reqs"]).write_text('appdep==1.0\nbasedep==2.0 ; sys_platform == "win32"\n')
    assert main(_cli(env, "--no-push")) == 0, capsys.readouterr().err


def test_a_package_the_base_has_but_did_not_freeze_still_conflicts(
    env: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    Path(env["reqs"]).write_text("hidden==2.0\n")
    code, line = _fails(env, capsys, "--no-push")
    assert code == Exit.REQUIREMENTS and "hidden==2.0" in line and "hidden==1.0" in line
