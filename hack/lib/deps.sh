# shellcheck shell=bash
# Steps of hack/setup that install third-party dependencies. Source after
# common.sh. Each step skips itself when its output is there at the right
# version; downloads and builds are cached under $MSB_CACHE.

MSB_APT_PACKAGES=(
  qemu-system-x86 e2fsprogs busybox-static debootstrap
  libseccomp-dev libcap-ng-dev pkg-config gcc libc6-dev make
  liblz4-dev liblzma-dev zlib1g-dev libzstd-dev libdeflate-dev uuid-dev
  autoconf automake libtool dpkg-dev
  containernetworking-plugins iproute2 iptables
)

# ---- 1. apt packages (bookworm) --------------------------------------------
msb_dep_apt() {
  local missing=() p
  for p in "${MSB_APT_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    msb_skip "all ${#MSB_APT_PACKAGES[@]} packages installed"
  else
    msb_log "installing: ${missing[*]}"
    apt-get -qq update
    apt-get -y -qq install --no-install-recommends "${missing[@]}"
    msb_note "installed ${missing[*]}"
  fi
  local f
  for f in qemu-system-x86_64 mkfs.ext4 gcc make; do
    command -v "$f" >/dev/null 2>&1 || msb_die "$f is missing after the apt step"
  done
}

# ---- 2. Go and cargo ---------------------------------------------------------
msb_dep_toolchains() {
  msb_ensure_go_path || msb_die "Go not found: install Go >= $MSB_GO_MIN (https://go.dev/dl) and put it on PATH"
  local gov
  gov=$(go env GOVERSION)
  gov=${gov#go}
  msb_version_ge "$gov" "$MSB_GO_MIN" || msb_die "Go $gov is too old: need >= $MSB_GO_MIN"
  msb_ensure_cargo_path || msb_die "cargo not found: install Rust with rustup (it goes to ~/.cargo/bin)"
  local cv
  cv=$(cargo --version | awk '{print $2}')
  msb_note "go $gov, cargo $cv"
}

# ---- 3. containerd, ctr, containerd-shim-runc-v2 -----------------------------
msb__containerd_ok() {
  local v=$MSB_CONTAINERD_VERSION b=$MSB_PREFIX/bin
  [[ -x $b/containerd && -x $b/ctr && -x $b/containerd-shim-runc-v2 ]] || return 1
  msb_has_word "$(msb_output "$b/containerd" --version)" "$v" || return 1
  msb_has_word "$(msb_output "$b/ctr" --version)" "$v" || return 1
  msb_has_word "$(msb_output "$b/containerd-shim-runc-v2" -v)" "$v" || return 1
}

msb_dep_containerd() {
  local v=$MSB_CONTAINERD_VERSION
  if msb__containerd_ok; then
    msb_skip "containerd $v present"
    return 0
  fi
  local mod=github.com/containerd/containerd/v2
  local ldf="-X $mod/version.Version=$v -X $mod/version.Revision=modproxy -X $mod/version.Package=$mod -s -w"
  local gobin=$MSB_CACHE/gobin/containerd-$v
  mkdir -p "$gobin"
  # Built into the cache, then renamed into place, so a running containerd is
  # never overwritten in place.
  GOFLAGS='' GOBIN=$gobin go install -trimpath -tags urfave_cli_no_docs -ldflags "$ldf" \
    "$mod/cmd/containerd@$v" "$mod/cmd/ctr@$v"
  GOFLAGS='' GOBIN=$gobin CGO_ENABLED=0 go install -trimpath -tags "urfave_cli_no_docs no_grpc" \
    -ldflags "$ldf -extldflags -static" "$mod/cmd/containerd-shim-runc-v2@$v"
  local f
  for f in containerd ctr containerd-shim-runc-v2; do
    msb_install_file "$gobin/$f" "$MSB_PREFIX/bin/$f"
  done
  msb__containerd_ok || msb_die "containerd $v: the installed binaries do not report $v"
  msb_note "built containerd $v"
}

# ---- 4. runc -------------------------------------------------------------------
msb__runc_ok() {
  [[ -x $MSB_PREFIX/bin/runc ]] || return 1
  [[ $'\n'"$(msb_output "$MSB_PREFIX/bin/runc" --version)"$'\n' == *$'\n'"runc version ${MSB_RUNC_VERSION#v}"$'\n'* ]]
}

msb_dep_runc() {
  local v=$MSB_RUNC_VERSION
  if msb__runc_ok; then
    msb_skip "runc $v present"
    return 0
  fi
  local gobin=$MSB_CACHE/gobin/runc-$v
  mkdir -p "$gobin"
  # No libpathrs tag (its Rust library is not in bookworm): runc then uses its
  # pure-Go pathrs-lite.
  GOFLAGS='' GOBIN=$gobin go install -trimpath -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-X main.version=${v#v} -X main.gitCommit=modproxy" "github.com/opencontainers/runc@$v"
  msb_install_file "$gobin/runc" "$MSB_PREFIX/bin/runc"
  msb__runc_ok || msb_die "runc $v: the installed binary does not report ${v#v}"
  msb_note "built runc $v"
}

# ---- 5. erofs-utils from Debian trixie's source package ------------------------
msb__erofs_ok() {
  local m=$MSB_PREFIX/erofs-utils/bin/mkfs.erofs
  [[ -x $m ]] || return 1
  msb_has_word "$(msb_output "$m" --version)" "$MSB_EROFS_UTILS_VERSION"
}

msb_dep_erofs_utils() {
  local v=$MSB_EROFS_UTILS_VERSION
  if msb__erofs_ok; then
    msb_skip "erofs-utils $v present"
    return 0
  fi
  local d=$MSB_CACHE/apt-trixie-src dsc
  dsc=$(ls "$d"/pool/erofs-utils_"$v"-*.dsc 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -z $dsc ]]; then
    msb_private_apt "$d" "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(msb_debian_mirror) trixie main"
    msb_private_apt_update "$d"
    local ver
    ver=$(apt-cache "${MSB_APT[@]}" showsrc erofs-utils | awk '/^Version:/{print $2}' | grep -E "^$v-" | sort -V | tail -n1 || true)
    [[ -n $ver ]] || msb_die "Debian trixie has no erofs-utils $v source package"
    mkdir -p "$d/pool"
    (cd "$d/pool" && apt-get "${MSB_APT[@]}" -qq source --download-only "erofs-utils=$ver")
    dsc=$(ls "$d"/pool/erofs-utils_"$v"-*.dsc | sort -V | tail -n1)
  fi
  local build=$MSB_CACHE/build/erofs-utils-$v
  rm -rf "$build"
  mkdir -p "$(dirname "$build")"
  dpkg-source --no-copy -x "$dsc" "$build" >"$build.unpack.log" 2>&1 || {
    cat "$build.unpack.log" >&2
    msb_die "dpkg-source -x $dsc failed"
  }
  (
    cd "$build" || exit 1
    ./autogen.sh >autogen.log 2>&1 || { cat autogen.log >&2; exit 1; }
    ./configure --prefix="$MSB_PREFIX/erofs-utils" \
      --disable-fuse --without-selinux --enable-lz4 --enable-lzma \
      --with-zlib --with-libzstd --with-libdeflate >configure.log 2>&1 || { tail -n 40 configure.log >&2; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -n 40 make.log >&2; exit 1; }
    make install >install.log 2>&1 || { tail -n 40 install.log >&2; exit 1; }
  )
  msb__erofs_ok || msb_die "erofs-utils: $MSB_PREFIX/erofs-utils/bin/mkfs.erofs does not report $v"
  [[ $(msb_output "$MSB_PREFIX/erofs-utils/bin/mkfs.erofs" --help) == *--tar=* ]] ||
    msb_die "erofs-utils: mkfs.erofs has no --tar= (containerd's EROFS differ needs it)"
  msb_note "built erofs-utils $(basename "$dsc" .dsc | sed 's/^erofs-utils_//')"
}

# ---- 6. libkrunfw5 (Debian sid) and kernel.elf --------------------------------
msb__krunfw_deb() {
  local d=$MSB_CACHE/apt-sid pat
  pat="libkrunfw5_${MSB_KRUNFW_VERSION:-*}_amd64.deb"
  # apt-get download escapes ':' in epochs as %3a; libkrunfw5 has none.
  # shellcheck disable=SC2086 # $pat is a glob
  ls "$d"/debs/$pat 2>/dev/null | sort -V | tail -n1 || true
}

msb_dep_krunfw() {
  local lib=$MSB_SHARE/libkrunfw.so.5 elf=$MSB_SHARE/kernel.elf
  local tool=$MSB_CACHE/bin/krunfw-elf src=$MSB_ROOT/hack/tools/krunfw-elf.c
  local stamp=$MSB_SHARE/libkrunfw.version
  if [[ -f $lib && -f $elf && -f $stamp ]] && ! msb_newer "$tool" "$src" && ! msb_newer "$elf" "$lib" "$tool" &&
    [[ -z $MSB_KRUNFW_VERSION || $(<"$stamp") == "$MSB_KRUNFW_VERSION" ]]; then
    msb_skip "libkrunfw5 $(<"$stamp") and kernel.elf present"
    return 0
  fi
  local d=$MSB_CACHE/apt-sid deb
  deb=$(msb__krunfw_deb)
  if [[ -z $deb ]]; then
    msb_private_apt "$d" "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(msb_debian_mirror) sid main"
    msb_private_apt_update "$d"
    mkdir -p "$d/debs"
    (cd "$d/debs" && apt-get "${MSB_APT[@]}" -qq download "libkrunfw5${MSB_KRUNFW_VERSION:+=$MSB_KRUNFW_VERSION}")
    deb=$(msb__krunfw_deb)
    [[ -n $deb ]] || msb_die "libkrunfw5: apt-get download left no .deb in $d/debs"
  fi
  local ver x so
  ver=$(dpkg-deb -f "$deb" Version)
  x=$MSB_CACHE/build/libkrunfw5-$ver
  rm -rf "$x"
  dpkg-deb -x "$deb" "$x"
  so=$(find "$x" -type f -name 'libkrunfw.so.5*' | head -n1)
  [[ -n $so ]] || msb_die "libkrunfw5 $ver: no libkrunfw.so.5* in $deb"
  msb_install_file "$so" "$lib" 0644
  rm -rf "$x"

  mkdir -p "$(dirname "$tool")"
  if msb_newer "$tool" "$src"; then
    gcc -O2 -Wall -Werror -o "$tool.tmp" "$src" -ldl
    mv -f "$tool.tmp" "$tool"
  fi
  local tmp
  tmp=$(mktemp "$elf.tmp.XXXXXX")
  "$tool" "$lib" "$tmp"
  if [[ -f $elf ]] && cmp -s "$tmp" "$elf"; then
    rm -f "$tmp"
    touch "$elf"
  else
    chmod 0644 "$tmp"
    mv -f "$tmp" "$elf"
  fi
  printf '%s\n' "$ver" >"$stamp"
  msb_note "libkrunfw5 $ver, kernel.elf $(stat -c %s "$elf") bytes"
}

# ---- boot check: kernel.elf + floor.erofs under QEMU (TCG) ---------------------
# Boots the floor disk, whose /init reboots at once; QEMU must show the kernel
# running /init and restarting, and exit by itself. Skipped when both files are unchanged
# since the last successful check.
msb_qemu_floor_cmd() {
  local disk=$1
  # shellcheck disable=SC2054 # commas belong to QEMU options
  MSB_QEMU_CMD=(
    qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=off -accel tcg -cpu max
    -m 256 -smp 1 -nodefaults -no-user-config -nographic -no-reboot
    -chardev stdio,id=con0 -device virtio-serial-device -device virtconsole,chardev=con0
    -drive "id=rd,file=$disk,format=raw,if=none,readonly=on" -device virtio-blk-device,drive=rd
    -kernel "$MSB_SHARE/kernel.elf"
    -append "console=hvc0 root=/dev/vda rootfstype=erofs ro init=/init reboot=t panic=-1"
  )
}

msb_dep_boot_check() {
  local elf=$MSB_SHARE/kernel.elf floor=$MSB_SHARE/floor.erofs
  local stamp=$MSB_CACHE/boot-check.ok sum
  [[ -f $elf ]] || msb_die "no $elf"
  [[ -f $floor ]] || msb_die "no $floor"
  sum=$(cat "$elf" "$floor" | sha256sum | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$sum" ]]; then
    msb_skip "kernel.elf + floor.erofs unchanged since the last good boot"
    return 0
  fi
  local log=$MSB_CACHE/boot-check.log t0 t1 rc=0
  msb_qemu_floor_cmd "$floor"
  t0=$(msb_now_us)
  timeout 60 "${MSB_QEMU_CMD[@]}" </dev/null >"$log" 2>&1 || rc=$?
  t1=$(msb_now_us)
  # hvc0 comes up late in the boot, so the banner is not on it; these are.
  if [[ $rc -ne 0 ]] || ! grep -q 'Run /init as init process' "$log" || ! grep -q 'reboot: machine restart' "$log"; then
    tail -n 30 "$log" >&2
    msb_die "kernel.elf did not boot floor.erofs and exit (qemu exit $rc, log $log)"
  fi
  printf '%s\n' "$sum" >"$stamp"
  msb_note "booted and exited in $(msb_fmt_secs $((t1 - t0)))s"
}

# ---- virtiofsd: the Rust virtio-fs daemon (crates.io), for the qemu backend --------
msb__virtiofsd_ok() {
  local b=$MSB_PREFIX/virtiofsd/bin/virtiofsd
  [[ -x $b ]] && msb_has_word "$(msb_output "$b" --version)" "$MSB_VIRTIOFSD_VERSION"
}

msb_dep_virtiofsd() {
  local v=$MSB_VIRTIOFSD_VERSION
  if msb__virtiofsd_ok; then
    msb_skip "virtiofsd $v present"
    return 0
  fi
  msb_ensure_cargo_path || msb_die "cargo not found"
  # Needs libseccomp-dev and libcap-ng-dev (the apt step).
  CARGO_TARGET_DIR=$MSB_CACHE/cargo-target-virtiofsd cargo install --quiet --locked \
    --root "$MSB_PREFIX/virtiofsd" --version "$v" virtiofsd
  msb__virtiofsd_ok || msb_die "virtiofsd $v: $MSB_PREFIX/virtiofsd/bin/virtiofsd does not report $v"
  msb_note "built virtiofsd $v"
}

# ---- nerdctl (Go module proxy) -------------------------------------------------
# The module zip lacks its nested tigron module (a test helper), which the
# proxy does not serve: build from a writable copy without it.
: "${MSB_NERDCTL_VERSION:=v2.3.5}"
msb__nerdctl_ok() {
  [[ -x $MSB_PREFIX/bin/nerdctl ]] || return 1
  [[ "$(msb_output "$MSB_PREFIX/bin/nerdctl" --version)" == *"nerdctl version ${MSB_NERDCTL_VERSION#v}"* ]]
}

msb_dep_nerdctl() {
  local v=$MSB_NERDCTL_VERSION mod=github.com/containerd/nerdctl/v2
  if msb__nerdctl_ok; then
    msb_skip "nerdctl $v present"
    return 0
  fi
  local src=$MSB_CACHE/src/nerdctl-$v dir
  export GONOSUMDB=github.com/containerd/nerdctl,github.com/containerd/stargz-snapshotter
  dir=$(GOFLAGS=-mod=mod go mod download -json "$mod@$v" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -d $dir ]] || msb_die "nerdctl $v: go mod download gave no directory"
  rm -rf "$src"
  mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  rm -f "$src/cmd/nerdctl/helpers/testing_linux.go"
  (
    cd "$src"
    go mod edit -dropreplace github.com/containerd/nerdctl/mod/tigron -droprequire github.com/containerd/nerdctl/mod/tigron
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X $mod/pkg/version.Version=$v -X $mod/pkg/version.Revision=modproxy" \
      -o "$src/nerdctl" ./cmd/nerdctl
  )
  msb_install_file "$src/nerdctl" "$MSB_PREFIX/bin/nerdctl"
  msb__nerdctl_ok || msb_die "nerdctl $v: the installed binary does not report ${v#v}"
  msb_note "built nerdctl $v"
}

# ---- crictl + critest (cri-tools, Go module proxy) -------------------------------
# The checksum DB lookup for cri-tools 404s through the proxy (GONOSUMDB), and
# critest is a ginkgo *test* binary (go test -c). Built in a writable copy of
# the module with -mod=mod. Used by hack/critest.
: "${MSB_CRITOOLS_VERSION:=v1.34.0}"
msb__critools_ok() {
  local b=$MSB_PREFIX/bin
  [[ -x $b/crictl && -x $b/critest ]] || return 1
  msb_has_word "$(cd / && msb_output "$b/crictl" --version)" "$MSB_CRITOOLS_VERSION" || return 1
  msb_has_word "$(cd / && msb_output "$b/critest" --version)" "$MSB_CRITOOLS_VERSION"
}

msb_dep_critools() {
  local v=$MSB_CRITOOLS_VERSION mod=sigs.k8s.io/cri-tools
  if msb__critools_ok; then
    msb_skip "crictl and critest $v present"
    return 0
  fi
  local src=$MSB_CACHE/src/cri-tools-$v dir
  dir=$(GONOSUMDB=$mod GOFLAGS=-mod=mod go mod download -json "$mod@$v" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -d $dir ]] || msb_die "cri-tools $v: go mod download gave no directory"
  rm -rf "$src"
  mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  (
    cd "$src"
    export GONOSUMDB=$mod GOFLAGS=-mod=mod CGO_ENABLED=0
    local ldf="-X $mod/pkg/version.Version=$v"
    go build -trimpath -ldflags "$ldf -s -w" -o "$src/crictl" ./cmd/crictl
    go test -c -trimpath -ldflags "$ldf" -o "$src/critest" ./cmd/critest
  )
  msb_install_file "$src/crictl" "$MSB_PREFIX/bin/crictl"
  msb_install_file "$src/critest" "$MSB_PREFIX/bin/critest"
  msb__critools_ok || msb_die "cri-tools $v: the installed crictl/critest do not report $v"
  msb_note "built crictl and critest $v"
}
