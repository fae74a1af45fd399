# Sourced by tools/test and tools/up: uv (from PyPI if missing) and the locked environment.
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1 \
    && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  # A fresh Debian has python3 without pip: uv comes from PyPI through it.
  echo "[setup] apt-get install python3-pip (to install uv from PyPI)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi
USER_BIN="$(python3 -m site --user-base)/bin"
if ! command -v uv >/dev/null 2>&1 && [[ -x "$USER_BIN/uv" ]]; then
  PATH="$USER_BIN:$PATH"  # installed by an earlier run, off the shell's PATH: not again
  export PATH
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] installing uv ${UV_VERSION} from PyPI" >&2
  python3 -m pip install --user --quiet "uv==${UV_VERSION}" 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages "uv==${UV_VERSION}"
  PATH="$USER_BIN:$PATH"
  export PATH
fi
echo "[setup] uv sync (locked dependencies)" >&2
# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set, every program run (each mock
# test run, each `pulumi preview`/`up`) would otherwise compile ~800 modules from source.
uv sync --frozen --quiet --compile-bytecode
