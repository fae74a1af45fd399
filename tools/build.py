"""Build and cache the binaries the platform needs, from Go modules, outside the clone.

Run from the repository root::

    python -m tools.build                      # build everything missing
    python -m tools.build --only pulumi,etcd   # some
    python -m tools.build --print-env          # `export PATH=...` for pulumi + plugins
    python -m tools.build --path kube-apiserver
    python -m tools.build --sync pulumi        # rewrite a wrapper go.mod/go.sum to versions.json

Versions live in tools/versions.json; each binary is built from its wrapper module in
tools/go/<wrapper>/ and cached in
``${RAY_PLATFORM_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ray-platform}/bin/<name>-<version>/``.
Python callers use :func:`ensure` and :func:`bin_dir`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

# Re-exported: callers of tools.build (see tools/README.md) get the one cache root from here too.
from infra.cache import cache_root as cache_root

TOOLS_DIR = Path(__file__).resolve().parent
VERSIONS_FILE = TOOLS_DIR / "versions.json"
WRAPPERS_DIR = TOOLS_DIR / "go"

# Bump when the way binaries are built changes (invalidates every cached build).
_RECIPE = "1"
_INFO_FILE = ".build-info.json"

_NETWORK_ERRORS = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|network is unreachable|"
    r"TLS handshake timeout|proxyconnect|connection reset|server misbehaving|"
    r"Temporary failure in name resolution|context deadline exceeded",
    re.IGNORECASE,
)
_NOT_SERVED = re.compile(
    r"(403 Forbidden|404 Not Found|410 Gone|not available|unknown revision)", re.I
)


class BuildError(RuntimeError):
    """A build could not be done; the message is one line meant for people."""


# --------------------------------------------------------------------------- locations


def bin_dir() -> Path:
    """Directory of ``current`` symlinks: pulumi, pulumi-language-python,
    pulumi-language-python-exec, pulumi-resource-kubernetes (put it first on PATH)."""
    return cache_root() / "bin" / "current"


def _log(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- spec


def load_versions() -> dict[str, Any]:
    with open(VERSIONS_FILE, encoding="utf-8") as f:
        return cast(dict[str, Any], json.load(f))


def _spec(name: str, versions: dict[str, Any] | None = None) -> dict[str, Any]:
    tools = (versions or load_versions())["tools"]
    if name not in tools:
        raise BuildError(f"unknown binary {name!r}; known: {', '.join(tools)}")
    return cast(dict[str, Any], tools[name])


def _install_dir(name: str, spec: dict[str, Any]) -> Path:
    return cache_root() / "bin" / f"{name}-{spec['version']}"


def _wrapper_files(wrapper: Path) -> list[Path]:
    return sorted(
        p
        for p in wrapper.iterdir()
        if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum"))
    )


def _fingerprint(name: str, spec: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(f"recipe={_RECIPE}\nname={name}\n".encode())
    recipe = {
        k: v for k, v in spec.items() if not k.startswith("_") and k not in ("smoke", "current")
    }
    h.update(json.dumps(recipe, sort_keys=True).encode())
    for p in _wrapper_files(WRAPPERS_DIR / spec["wrapper"]):
        h.update(f"\n{p.name}\n".encode())
        data = p.read_bytes()
        h.update(_normalized_gomod(data.decode()).encode() if p.name == "go.mod" else data)
    return h.hexdigest()[:16]


def _normalized_gomod(text: str) -> str:
    """go.mod without comments, grouping and order, so reformatting it changes no fingerprint."""
    out = set()
    block = ""
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line == ")":
            block = ""
            continue
        m = re.match(r"^(require|replace|exclude|retract|tool|ignore|godebug)\s*\($", line)
        if m:
            block = m.group(1)
            continue
        out.add(f"{block} {line}".strip() if block else line)
    return "\n".join(sorted(out))


def _cached(name: str, spec: dict[str, Any]) -> Path | None:
    d = _install_dir(name, spec)
    binary = d / name
    try:
        info = json.loads((d / _INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("fingerprint") != _fingerprint(name, spec) or not os.access(binary, os.X_OK):
        return None
    return binary


# --------------------------------------------------------------------------- go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    return env


def _goproxy() -> str:
    try:
        out = subprocess.run(["go", "env", "GOPROXY"], capture_output=True, text=True, check=True)
        return out.stdout.strip() or os.environ.get("GOPROXY", "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GOPROXY", "")


def _check_go(versions: dict[str, Any]) -> str:
    if shutil.which("go") is None:
        raise BuildError(
            f"`go` was not found on PATH; install Go >= {versions['go']['min_version']} "
            "(the binaries are built from Go modules)"
        )
    out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, env=_go_env())
    gover = out.stdout.strip()
    m = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", gover)
    want = tuple(int(x) for x in versions["go"]["min_version"].split("."))
    if m:
        have = tuple(int(x or 0) for x in m.groups())
        if have < want:
            raise BuildError(f"{gover} is too old: Go >= {versions['go']['min_version']} is needed")
    return gover


def _classify_go_failure(output: str, what: str) -> BuildError:
    lines = [
        ln.strip()
        for ln in output.splitlines()
        if ln.strip() and not ln.startswith("go: downloading")
    ]
    if _NETWORK_ERRORS.search(output):
        detail = next(
            (ln for ln in lines if _NETWORK_ERRORS.search(ln)), lines[-1] if lines else ""
        )
        return BuildError(f"cannot reach the Go module proxy (GOPROXY={_goproxy()}): {detail}")
    if _NOT_SERVED.search(output):
        detail = next((ln for ln in lines if _NOT_SERVED.search(ln)), lines[-1] if lines else "")
        return BuildError(
            f"the Go module proxy (GOPROXY={_goproxy()}) does not serve a module "
            f"{what} needs: {detail}"
        )
    return BuildError(f"{what}: {lines[-1] if lines else 'go failed'}")


def _go(args: list[str], cwd: Path, what: str, log: Path | None = None) -> str:
    """Run a go command; on failure raise a one-line BuildError (full output kept in ``log``)."""
    proc = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True, env=_go_env())
    output = proc.stdout + proc.stderr
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ go {' '.join(args)}\n{output}\n")
    if proc.returncode != 0:
        err = _classify_go_failure(output, what)
        if log is not None:
            err = BuildError(f"{err} (log: {log})")
        raise err
    return proc.stdout


def _module_dir(module: str, version: str, cwd: Path, what: str) -> Path:
    out = _go(["mod", "download", "-json", f"{module}@{version}"], cwd, what)
    info = json.loads(out)
    if info.get("Error"):
        raise _classify_go_failure(info["Error"], what)
    return Path(info["Dir"])


@dataclass(frozen=True)
class GoMod:
    """What the consistency check needs from a go.mod: requirements, replacements, tools."""

    requires: dict[str, str] = field(default_factory=dict)
    """module path -> version"""
    replaces: dict[str, tuple[str, str]] = field(default_factory=dict)
    """old module path -> (new path, new version; "" for a directory replacement)"""
    tools: set[str] = field(default_factory=set)
    """package paths of the `tool` directives (what `go build PKG` may build from the wrapper)"""


def parse_gomod(text: str) -> GoMod:
    """Parse the `require`, `replace` and `tool` directives of a go.mod (single-line and block
    forms).

    Pure Python, so the versions.json/wrapper check runs without Go (fast tier, `--list`).
    """
    mod = GoMod()
    block = ""
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block:
            if line == ")":
                block = ""
                continue
            verb, rest = block, line
        else:
            verb, _, rest = line.partition(" ")
            rest = rest.strip()
            if rest == "(":
                block = verb
                continue
        words = [w.strip('"') for w in rest.split()]
        if verb == "require" and len(words) >= 2:
            mod.requires[words[0]] = words[1]
        elif verb == "tool" and words:
            mod.tools.add(words[0])
        elif verb == "replace" and "=>" in words:
            arrow = words.index("=>")
            new = words[arrow + 1 :]
            mod.replaces[words[0]] = (new[0], new[1] if len(new) > 1 else "")
    return mod


def _gomod(wrapper: Path) -> GoMod:
    return parse_gomod((wrapper / "go.mod").read_text(encoding="utf-8"))


def _gomod_staging_replaces(wrapper: Path) -> dict[str, str]:
    """k8s.io/* modules replaced by a published version of themselves (the staging replaces)."""
    return {
        old: version
        for old, (new, version) in _gomod(wrapper).replaces.items()
        if old.startswith("k8s.io/") and new == old and version
    }


def _check_wrapper(name: str, spec: dict[str, Any]) -> None:
    wrapper = WRAPPERS_DIR / spec["wrapper"]
    if not (wrapper / "go.mod").exists():
        raise BuildError(f"missing wrapper module tools/go/{spec['wrapper']}/go.mod")
    mod = _gomod(wrapper)
    package = spec["package"]
    if package == ".":
        if not any(p.suffix == ".go" and not p.stem.endswith("_test") for p in wrapper.iterdir()):
            raise BuildError(
                f"tools/versions.json builds {name} from tools/go/{spec['wrapper']}/ itself "
                '(package ".") but it holds no main.go'
            )
    elif package not in mod.tools:
        raise BuildError(
            f"tools/go/{spec['wrapper']}/go.mod has no `tool {package}` line for {name}; "
            f"run `python -m tools.build --sync {name}`"
        )
    have = mod.requires
    for module, version in spec.get("go_modules", {}).items():
        if have.get(module) != version:
            raise BuildError(
                f"tools/go/{spec['wrapper']}/go.mod requires {module} "
                f"{have.get(module, '(nothing)')} but "
                f"tools/versions.json says {version}; run `python -m tools.build --sync {name}`"
            )
    staging = spec.get("k8s_staging_version")
    if staging:
        bad = {m: v for m, v in _gomod_staging_replaces(wrapper).items() if v != staging}
        if bad:
            raise BuildError(
                f"tools/go/{spec['wrapper']}/go.mod replaces {', '.join(sorted(bad))} "
                "with a version other than "
                f"{staging}; run `python -m tools.build --sync {name}`"
            )


def sync(name: str) -> None:
    """Rewrite tools/go/<wrapper>/go.mod and go.sum so they match tools/versions.json."""
    versions = load_versions()
    _check_go(versions)
    spec = _spec(name, versions)
    wrapper = WRAPPERS_DIR / spec["wrapper"]
    what = f"sync {name}"
    if spec["package"] != "." and spec["package"] not in _gomod(wrapper).tools:
        _go(["mod", "edit", f"-tool={spec['package']}"], wrapper, what)
    for module, version in spec.get("go_modules", {}).items():
        _go(["mod", "edit", f"-require={module}@{version}"], wrapper, what)
    staging = spec.get("k8s_staging_version")
    if staging:
        kver = spec["go_modules"]["k8s.io/kubernetes"]
        out = json.loads(
            _go(["mod", "download", "-json", f"k8s.io/kubernetes@{kver}"], wrapper, what)
        )
        upstream = Path(out["GoMod"]).read_text(encoding="utf-8")
        staged = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", upstream, re.M)
        if _gomod_staging_replaces(wrapper) != dict.fromkeys(staged, staging):
            for module in _gomod_staging_replaces(wrapper):
                _go(["mod", "edit", f"-dropreplace={module}"], wrapper, what)
            gomod = wrapper / "go.mod"
            block = "".join(f"\t{m} => {m} {staging}\n" for m in staged)
            gomod.write_text(
                f"{gomod.read_text(encoding='utf-8').rstrip()}\n\nreplace (\n{block})\n"
            )
    _log(f"{name}: go mod tidy in tools/go/{spec['wrapper']}")
    _go(["mod", "tidy"], wrapper, what)
    _check_wrapper(name, spec)


# --------------------------------------------------------------------------- build


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fmt_seconds(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


def _generate_embeds(spec: dict[str, Any], build_dir: Path, what: str) -> None:
    gen = spec["generate_embeds"]
    mod_dir = _module_dir(gen["module"], spec["go_modules"][gen["module"]], build_dir, what)
    schema = gen["schema"]
    data = json.loads((mod_dir / schema["from"]).read_text(encoding="utf-8"))
    data["version"] = schema["set_version"]
    (build_dir / schema["to"]).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    compact = gen["compact"]
    data = json.loads((mod_dir / compact["from"]).read_text(encoding="utf-8"))
    (build_dir / compact["to"]).write_text(
        json.dumps(data, separators=(",", ":")), encoding="utf-8"
    )


def _smoke(binary: Path, spec: dict[str, Any], what: str) -> None:
    smoke = spec.get("smoke")
    if not smoke:
        return
    try:
        proc = subprocess.run(
            [str(binary), *smoke["args"]],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"{what}: the built binary does not run: {e}") from e
    out = proc.stdout + proc.stderr
    if smoke["expect"] not in out:
        first = out.strip().splitlines()[:1]
        raise BuildError(
            f"{what}: `{binary.name} {' '.join(smoke['args'])}` did not print {smoke['expect']!r} "
            f"(exit {proc.returncode}: {first[0] if first else 'no output'})"
        )


def _build(name: str, spec: dict[str, Any], versions: dict[str, Any]) -> Path:
    what = f"{name} {spec['version']}"
    wrapper = WRAPPERS_DIR / spec["wrapper"]
    final = _install_dir(name, spec)
    bin_root = final.parent
    logs = cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}-{spec['version']}.log"
    log.write_text(f"# {what}\n", encoding="utf-8")

    # Under the lock, leftovers of an interrupted build of this binary are stale.
    work_root = cache_root() / "work"
    for stale in [*bin_root.glob(f".{final.name}.*"), *work_root.glob(f"{final.name}.*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)

    _log(f"{what}: building (first time takes minutes)…")
    started = time.monotonic()
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=bin_root))
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=work_root))
    try:
        # Build from a private copy of the wrapper: generated files never touch the clone.
        for p in _wrapper_files(wrapper):
            shutil.copy2(p, work / p.name)
        # Download first, to tell "proxy unreachable" apart from compile errors.
        _go(["mod", "download"], work, what, log)
        if "generate_embeds" in spec:
            _generate_embeds(spec, work, what)
        ldflags = ["-s", "-w"] + [f"-X {k}={v}" for k, v in spec.get("ldflags_x", {}).items()]
        jobs = os.environ.get("RAY_PLATFORM_BUILD_JOBS") or str(os.cpu_count() or 2)
        args = [
            "build",
            "-p",
            jobs,
            "-trimpath",
            "-buildvcs=false",
            "-mod=readonly",
            "-ldflags",
            " ".join(ldflags),
        ]
        if spec.get("tags"):
            args += ["-tags", ",".join(spec["tags"])]
        args += ["-o", str(stage / name), spec["package"]]
        _go(args, work, what, log)
        copy = spec.get("copy_from_module")
        if copy:
            mod_dir = _module_dir(copy["module"], spec["go_modules"][copy["module"]], work, what)
            for src, dst in copy["files"].items():
                shutil.copyfile(mod_dir / src, stage / dst)
                os.chmod(stage / dst, 0o755)
        _smoke(stage / name, spec, what)
        seconds = time.monotonic() - started
        info = {
            "name": name,
            "version": spec["version"],
            "fingerprint": _fingerprint(name, spec),
            "go": _check_go(versions),
            "build_seconds": round(seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (stage / _INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.chmod(stage, 0o755)
        # Swap the finished directory in; an interrupted build leaves only a hidden temp dir.
        old = None
        if final.exists():
            old = bin_root / f".{final.name}.old-{os.getpid()}"
            os.rename(final, old)
        os.rename(stage, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _log(f"{what}: built in {_fmt_seconds(seconds)}")
        return final / name
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _link_current(binary: Path, mode: str) -> None:
    """Point bin_dir()/<file> at each file of the install dir (atomically).

    ``mode == "hardlink"`` (used for pulumi) hard-links the binary instead: the CLI looks for
    language hosts next to its own resolved path, so with a hard link that is bin_dir() and
    the language host found there is not reported as an unexpected "$PATH" plugin.
    """
    cur = bin_dir()
    cur.mkdir(parents=True, exist_ok=True)
    targets = [binary] + [
        p
        for p in binary.parent.iterdir()
        if p.is_file() and p != binary and not p.name.startswith(".")
    ]
    for target in targets:
        link = cur / target.name
        tmp = cur / f".{target.name}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if mode == "hardlink" and target == binary:
            if not link.is_symlink() and link.exists() and os.path.samefile(link, target):
                continue
            try:
                os.link(target, tmp)
            except OSError:
                shutil.copy2(target, tmp)
        else:
            rel = os.path.relpath(target, cur)
            if link.is_symlink() and os.readlink(link) == rel:
                continue
            os.symlink(rel, tmp)
        os.replace(tmp, link)


def ensure(names: list[str] | None = None) -> dict[str, Path]:
    """Build whatever of ``names`` (default: all) is missing; return name -> binary path.

    The pulumi binaries (pulumi, pulumi-language-python, pulumi-resource-kubernetes) are also
    linked into :func:`bin_dir`. Raises :class:`BuildError` with a one-line message on failure.
    """
    versions = load_versions()
    wanted = list(names) if names else list(versions["tools"])
    for n in wanted:
        _spec(n, versions)
    result: dict[str, Path] = {}
    go_checked = False
    for name in wanted:
        spec = versions["tools"][name]
        what = f"{name} {spec['version']}"
        binary = _cached(name, spec)
        if binary is None:
            if not go_checked:
                _check_go(versions)
                go_checked = True
            _check_wrapper(name, spec)
            (cache_root() / "work").mkdir(parents=True, exist_ok=True)
            with _lock(cache_root() / "bin" / f".{name}-{spec['version']}.lock"):
                binary = _cached(name, spec)  # another process may have built it meanwhile
                if binary is None:
                    binary = _build(name, spec, versions)
                else:
                    _log(f"{what}: cached")
        else:
            _log(f"{what}: cached")
        if spec.get("current"):
            _link_current(binary, str(spec["current"]))
        result[name] = binary
    return result


def path_env_lines() -> list[str]:
    """Shell lines putting :func:`bin_dir` first on PATH."""
    return [f'export PATH="{bin_dir()}:$PATH"']


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    versions = load_versions()
    current = [n for n, s in versions["tools"].items() if s.get("current")]
    ap = argparse.ArgumentParser(
        prog="python -m tools.build",
        description=(
            f"Build and cache {', '.join(versions['tools'])} from Go modules "
            f"(versions: tools/versions.json; cache: {cache_root()}/bin)."
        ),
    )
    ap.add_argument("--only", metavar="NAMES", help="comma-separated names to build (default: all)")
    ap.add_argument(
        "--print-env",
        action="store_true",
        help=f"build {', '.join(current)} and print `export PATH=...`",
    )
    ap.add_argument(
        "--path", metavar="NAME", help="build NAME if needed and print the binary's path"
    )
    ap.add_argument(
        "--sync", metavar="NAMES", help="rewrite wrapper go.mod/go.sum to match versions.json"
    )
    ap.add_argument(
        "--list", action="store_true", help="list names, versions and whether each is cached"
    )
    args = ap.parse_args(argv)
    try:
        if args.list:
            for n, s in versions["tools"].items():
                state = "cached" if _cached(n, s) else "missing"
                print(f"{n}\t{s['version']}\t{state}\t{_install_dir(n, s) / n}")
            return 0
        if args.sync:
            for n in [x.strip() for x in args.sync.split(",") if x.strip()]:
                sync(n)
            return 0
        if args.path:
            print(ensure([args.path])[args.path])
            return 0
        if args.print_env:
            ensure(current)
            print("\n".join(path_env_lines()))
            return 0
        names = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
        for n, p in ensure(names).items():
            print(f"{n}\t{p}")
        return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
