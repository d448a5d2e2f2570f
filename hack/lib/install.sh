# shellcheck shell=bash
# Steps of hack/install: this repo's binaries, the guest boot disks and the
# containerd test configuration. Source after common.sh. Every step writes
# through a temp file and an atomic rename, and leaves the target untouched
# (same mtime) when the new build is byte-identical.

# Fixed UUID and timestamps: the boot disks are reproducible byte for byte.
MSB_BOOT_DISK_UUID=6d736221-0000-4000-8000-000000000000

# msb__go_pkg_present DIR: true when DIR (relative to the repo) holds Go files.
msb__go_pkg_present() {
  compgen -G "$MSB_ROOT/$1/*.go" >/dev/null
}

msb__go_build() { # OUT PKG [go build flags...]
  local out=$1 pkg=$2
  shift 2
  mkdir -p "$(dirname "$out")"
  (cd "$MSB_ROOT" && CGO_ENABLED=0 go build -trimpath "$@" -o "$out" "$pkg")
}

# ---- msb-agent (static guest agent) ------------------------------------------
msb_inst_agent() {
  if ! msb__go_pkg_present agent/cmd/msb-agent; then
    msb_skip "not in tree (agent/cmd/msb-agent)"
    return 0
  fi
  local out=$MSB_CACHE/gobuild/msb-agent
  msb__go_build "$out" ./agent/cmd/msb-agent -ldflags "-s -w"
  msb_install_file "$out" "$MSB_SHARE/msb-agent" 0755
  msb_note "$( ((MSB_CHANGED)) && echo updated || echo unchanged) $MSB_SHARE/msb-agent"
}

# msb_mkfs_boot_disk INIT OUT [EXTRA...]: an EROFS disk with /init = INIT,
# each EXTRA at /its-name, and the empty mount points the guest needs.
msb_mkfs_boot_disk() {
  local init=$1 out=$2 stage tmp mkfs=$MSB_PREFIX/erofs-utils/bin/mkfs.erofs extra
  shift 2
  [[ -x $mkfs ]] || msb_die "no $mkfs: run hack/setup first"
  mkdir -p "$MSB_CACHE" "$(dirname "$out")"
  stage=$(mktemp -d "$MSB_CACHE/stage.XXXXXX")
  install -m 0755 "$init" "$stage/init"
  for extra in "$@"; do
    install -m 0755 "$extra" "$stage/$(basename "$extra")"
  done
  mkdir -m 0755 "$stage"/{proc,sys,dev,run,tmp,mnt,etc}
  chmod 0755 "$stage"
  find "$stage" -exec touch -h -d @0 {} +
  tmp=$(mktemp "$out.tmp.XXXXXX")
  "$mkfs" --quiet -T0 --mkfs-time --all-root -U "$MSB_BOOT_DISK_UUID" "$tmp" "$stage" || {
    rm -rf "$stage" "$tmp"
    msb_die "mkfs.erofs $out failed"
  }
  rm -rf "$stage"
  chmod 0644 "$tmp"
  if [[ -f $out ]] && cmp -s "$tmp" "$out"; then
    rm -f "$tmp"
    MSB_CHANGED=0
  else
    mv -f "$tmp" "$out"
    MSB_CHANGED=1
  fi
}

# msb__static_c SRC BIN: BIN built from SRC with gcc -static when older.
msb__static_c() {
  local src=$1 bin=$2
  mkdir -p "$(dirname "$bin")"
  if msb_newer "$bin" "$src"; then
    gcc -static -Os -Wall -Werror -o "$bin.tmp" "$src"
    strip "$bin.tmp"
    mv -f "$bin.tmp" "$bin"
  fi
}

# ---- boot.erofs: /init = msb-agent, /msb-nsenter --------------------------------
msb_inst_boot_disk() {
  local agent=$MSB_SHARE/msb-agent nsenter=$MSB_CACHE/bin/msb-nsenter
  if ! msb__go_pkg_present agent/cmd/msb-agent; then
    msb_skip "no msb-agent in tree"
    return 0
  fi
  [[ -f $agent ]] || msb_die "no $agent"
  msb__static_c "$MSB_ROOT/agent/nsenter/msb-nsenter.c" "$nsenter"
  msb_mkfs_boot_disk "$agent" "$MSB_SHARE/boot.erofs" "$nsenter"
  msb_note "$( ((MSB_CHANGED)) && echo updated || echo unchanged) $MSB_SHARE/boot.erofs"
}

# ---- floor.erofs: /init = reboot-init -------------------------------------------
msb_inst_floor_disk() {
  local src=$MSB_ROOT/hack/tools/reboot-init.c bin=$MSB_CACHE/bin/reboot-init
  msb__static_c "$src" "$bin"
  msb_mkfs_boot_disk "$bin" "$MSB_SHARE/floor.erofs"
  msb_note "$( ((MSB_CHANGED)) && echo updated || echo unchanged) $MSB_SHARE/floor.erofs"
}

# ---- containerd-shim-msb-v1 ------------------------------------------------------
msb_inst_shim() {
  if ! msb__go_pkg_present shim/cmd/containerd-shim-msb-v1; then
    msb_skip "not in tree (shim/cmd/containerd-shim-msb-v1)"
    return 0
  fi
  local out=$MSB_CACHE/gobuild/containerd-shim-msb-v1
  msb__go_build "$out" ./shim/cmd/containerd-shim-msb-v1
  msb_install_file "$out" "$MSB_PREFIX/bin/containerd-shim-msb-v1" 0755
  msb_note "$( ((MSB_CHANGED)) && echo updated || echo unchanged) $MSB_PREFIX/bin/containerd-shim-msb-v1"
}

# ---- msb-jail (starts virtiofsd in namespaces of its own) --------------------------
msb_inst_jail() {
  local src=$MSB_ROOT/vm/jail/msb-jail.c bin=$MSB_CACHE/bin/msb-jail
  msb__static_c "$src" "$bin"
  msb_install_file "$bin" "$MSB_PREFIX/bin/msb-jail" 0755
  msb_note "$( ((MSB_CHANGED)) && echo updated || echo unchanged) $MSB_PREFIX/bin/msb-jail"
}

# ---- msb-vmm (Rust, libkrun) -------------------------------------------------------
msb_inst_vmm() {
  local manifest=$MSB_ROOT/vm/msb-vmm/Cargo.toml
  if [[ ! -f $manifest ]]; then
    msb_skip "not in tree (vm/msb-vmm/Cargo.toml)"
    return 0
  fi
  msb_ensure_cargo_path || msb_die "cargo not found"
  local target=$MSB_CACHE/cargo-target
  CARGO_TARGET_DIR=$target cargo build --release --locked --manifest-path "$manifest"
  [[ -x $target/release/msb-vmm ]] || msb_die "cargo built no $target/release/msb-vmm"
  msb_install_file "$target/release/msb-vmm" "$MSB_PREFIX/bin/msb-vmm" 0755
  msb_note "$( ((MSB_CHANGED)) && echo updated || echo unchanged) $MSB_PREFIX/bin/msb-vmm"
}

# ---- containerd test configuration ----------------------------------------------
msb_render_containerd_config() { # OUT
  local tpl=$MSB_ROOT/hack/containerd/config.toml.in out=$1 v
  for v in MSB_PREFIX MSB_SHARE MSB_CONTAINERD_ROOT MSB_CONTAINERD_STATE MSB_CONTAINERD_SOCKET \
    MSB_CONTAINERD_SOCKET_DIR MSB_CNI_CONF_DIR MSB_CNI_BIN_DIR; do
    [[ ${!v} == /* && ${!v} != *[\|\'\&\\]* ]] || msb_die "$v='${!v}' must be an absolute path without | ' & or \\"
  done
  sed -e "s|@MSB_PREFIX@|$MSB_PREFIX|g" \
    -e "s|@MSB_SHARE@|$MSB_SHARE|g" \
    -e "s|@MSB_CONTAINERD_ROOT@|$MSB_CONTAINERD_ROOT|g" \
    -e "s|@MSB_CONTAINERD_STATE@|$MSB_CONTAINERD_STATE|g" \
    -e "s|@MSB_CONTAINERD_SOCKET@|$MSB_CONTAINERD_SOCKET|g" \
    -e "s|@MSB_CONTAINERD_SOCKET_DIR@|$MSB_CONTAINERD_SOCKET_DIR|g" \
    -e "s|@MSB_CNI_CONF_DIR@|$MSB_CNI_CONF_DIR|g" \
    -e "s|@MSB_CNI_BIN_DIR@|$MSB_CNI_BIN_DIR|g" \
    "$tpl" >"$out"
  if grep -n '@MSB_[A-Z_]*@' "$out" >&2; then
    msb_die "unsubstituted placeholders in $out (from $tpl)"
  fi
}

msb_inst_containerd_config() {
  local conf=$MSB_CONTAINERD_CONFIG tmp
  mkdir -p "$(dirname "$conf")" "$MSB_CNI_CONF_DIR"
  tmp=$(mktemp "$conf.tmp.XXXXXX")
  msb_render_containerd_config "$tmp"
  if [[ -f $conf ]] && cmp -s "$tmp" "$conf"; then
    rm -f "$tmp"
    msb_note "unchanged $conf"
    return 0
  fi
  # Validate before it replaces the old one: containerd parses and migrates it.
  if [[ -x $MSB_PREFIX/bin/containerd ]]; then
    local dump
    if ! dump=$("$MSB_PREFIX/bin/containerd" --config "$tmp" config dump 2>&1); then
      printf '%s\n' "$dump" | tail -n 20 >&2
      rm -f "$tmp"
      msb_die "containerd rejects the rendered config (from hack/containerd/config.toml.in)"
    fi
  else
    msb_log "warning: no $MSB_PREFIX/bin/containerd yet; config not validated"
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$conf"
  msb_note "wrote $conf"
}

# ---- CNI network for CRI pods ---------------------------------------------------
# A private bridge and range; CRI takes the lexically first conflist, so this
# one wins over nerdctl's own (nerdctl-bridge.conflist, written on first use).
msb_inst_cni_config() {
  local conf=$MSB_CNI_CONF_DIR/10-msb-cri.conflist tmp
  mkdir -p "$MSB_CNI_CONF_DIR"
  tmp=$(mktemp "$conf.tmp.XXXXXX")
  cat >"$tmp" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "msb-cri",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni-msb0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$MSB_CONTAINERD_ROOT/cni-ipam",
        "ranges": [[{"subnet": "10.231.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON
  if [[ -f $conf ]] && cmp -s "$tmp" "$conf"; then
    rm -f "$tmp"
    msb_note "unchanged $conf"
    return 0
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$conf"
  msb_note "wrote $conf"
}

# MSB_INSTALL_SKIP: space-separated step names to leave out (e.g. "shim
# msb-vmm" while one of them does not build); they keep what is installed.
: "${MSB_INSTALL_SKIP:=}"
msb__install_step() { # NAME FUNC
  if [[ " $MSB_INSTALL_SKIP " == *" $1 "* ]]; then
    msb_step "$1" msb_skip "in MSB_INSTALL_SKIP"
  else
    msb_step "$1" "$2"
  fi
}

# All install steps in order (hack/install, and the end of hack/setup).
msb_install_steps() {
  msb__install_step msb-agent msb_inst_agent
  msb__install_step boot.erofs msb_inst_boot_disk
  msb__install_step floor.erofs msb_inst_floor_disk
  msb__install_step shim msb_inst_shim
  msb__install_step msb-jail msb_inst_jail
  msb__install_step msb-vmm msb_inst_vmm
  msb__install_step containerd-config msb_inst_containerd_config
  msb__install_step cni-config msb_inst_cni_config
}
