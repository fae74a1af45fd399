# Sourced by tools/up and tools/test --all: the Debian packages a local node needs (root only;
# without root the node cannot run anyway and `tools/up` says so in one line).
NODE_PACKAGES=(runc containernetworking-plugins iptables nftables conntrack ipset iproute2 util-linux
               debootstrap skopeo)
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "[setup] apt-get install ${missing[*]} (the local node's runtime, network and image tools)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
