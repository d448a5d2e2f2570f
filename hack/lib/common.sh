# shellcheck shell=bash
# shellcheck disable=SC2034 # MSB_CHANGED is read by the callers
# Shared helpers for hack/setup, hack/install and hack/containerd-test.
# Source after `set -euo pipefail`. Defines MSB_ROOT (the repo) and sources hack/env.

MSB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../env
. "$MSB_ROOT/hack/env"

# Pinned versions (override from the environment).
: "${MSB_CONTAINERD_VERSION:=v2.4.2}"
: "${MSB_RUNC_VERSION:=v1.5.2}"
: "${MSB_EROFS_UTILS_VERSION:=1.8.6}"
: "${MSB_VIRTIOFSD_VERSION:=1.14.0}"
# Empty = whatever Debian sid has; otherwise an exact Debian version, e.g. 5.5.0+ds-1.
: "${MSB_KRUNFW_VERSION:=}"
: "${MSB_GO_MIN:=1.26}"

export DEBIAN_FRONTEND=noninteractive

msb_log() { printf '%s\n' "$*" >&2; }
msb_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Microseconds since the epoch (bash 5).
msb_now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
msb_fmt_secs() { printf '%d.%02d' $(($1 / 1000000)) $((($1 % 1000000) / 10000)); }

# ---- steps -----------------------------------------------------------------
# msb_step NAME FUNC [ARGS...]: runs FUNC, prints its name, duration and note.
# FUNC may call msb_note TEXT (result) or msb_skip TEXT (nothing to do).
MSB_STEP_SUMMARY=()
MSB_STEP_CURRENT=""
MSB_STEP_NOTE=""
msb_note() { MSB_STEP_NOTE=$*; }
msb_skip() { MSB_STEP_NOTE="skipped: $*"; }

msb_step() {
  local name=$1 t0 t1 secs
  shift
  MSB_STEP_CURRENT=$name
  MSB_STEP_NOTE=""
  msb_log "==> $name"
  t0=$(msb_now_us)
  "$@"
  t1=$(msb_now_us)
  secs=$(msb_fmt_secs $((t1 - t0)))
  msb_log "<== $name: ${secs}s${MSB_STEP_NOTE:+ ($MSB_STEP_NOTE)}"
  MSB_STEP_SUMMARY+=("$(printf '  %-20s %7ss  %s' "$name" "$secs" "$MSB_STEP_NOTE")")
  MSB_STEP_CURRENT=""
}

# Call once at the start of a script: reports the failing step and prints the
# summary with the total at exit.
msb_steps_begin() {
  MSB_STEPS_TITLE=$1
  MSB_STEPS_T0=$(msb_now_us)
  trap msb__steps_end EXIT
}
msb__steps_end() {
  local rc=$? t1
  t1=$(msb_now_us)
  if [[ $rc -ne 0 && -n $MSB_STEP_CURRENT ]]; then
    msb_log "!!! $MSB_STEPS_TITLE: step '$MSB_STEP_CURRENT' failed (exit $rc)"
  fi
  msb_log "--- $MSB_STEPS_TITLE summary"
  local l
  for l in "${MSB_STEP_SUMMARY[@]}"; do msb_log "$l"; done
  msb_log "$(printf '  %-20s %7ss  %s' total "$(msb_fmt_secs $((t1 - MSB_STEPS_T0)))" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")")"
}

# ---- files -----------------------------------------------------------------
# msb_install_file SRC DST [MODE]: copy SRC to DST through a temp file and an
# atomic rename, only if the content differs (a running binary is never
# overwritten in place, and DST keeps its mtime when nothing changed).
# Sets MSB_CHANGED=1 if DST was replaced, 0 if it was already identical.
MSB_CHANGED=0
msb_install_file() {
  local src=$1 dst=$2 mode=${3:-0755} tmp
  MSB_CHANGED=0
  if [[ -f $dst ]] && cmp -s "$src" "$dst"; then
    [[ $(stat -c %a "$dst") == "${mode#0}" ]] || chmod "$mode" "$dst"
    return 0
  fi
  mkdir -p "$(dirname "$dst")"
  tmp=$(mktemp "$dst.tmp.XXXXXX")
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dst"
  MSB_CHANGED=1
}

# msb_newer TARGET SRC...: true when TARGET is missing or any SRC is newer.
msb_newer() {
  local target=$1 s
  shift
  [[ -e $target ]] || return 0
  for s in "$@"; do
    [[ $s -nt $target ]] && return 0
  done
  return 1
}

# msb_output CMD...: CMD's stdout+stderr, "" if it fails. Version checks match
# on this instead of piping into `grep -q`, which under pipefail fails at
# random when grep exits early and the writer gets SIGPIPE.
msb_output() { "$@" 2>&1 || true; }
# msb_has_word TEXT WORD: WORD appears in TEXT delimited by whitespace.
msb_has_word() {
  local t=" ${1//[$'\n\t\r']/ } "
  [[ $t == *" $2 "* ]]
}

# ---- versions --------------------------------------------------------------
# msb_version_ge A B: true when dotted version A >= B.
msb_version_ge() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# ---- toolchains ------------------------------------------------------------
# Puts cargo on PATH when rustup installed it but the shell did not load it.
msb_ensure_cargo_path() {
  command -v cargo >/dev/null 2>&1 && return 0
  local d
  for d in "${CARGO_HOME:-}" "$HOME/.cargo" /root/.cargo; do
    if [[ -n $d && -x $d/bin/cargo ]]; then
      PATH="$PATH:$d/bin"
      export PATH
      return 0
    fi
  done
  return 1
}

msb_ensure_go_path() {
  command -v go >/dev/null 2>&1 && return 0
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="$PATH:/usr/local/go/bin"
    export PATH
    return 0
  fi
  return 1
}

# ---- Debian archives through a private apt configuration --------------------
# Nothing under /etc/apt or /var/lib/apt is touched: sources, lists and the
# package cache live in DIR.
msb_debian_mirror() {
  local m=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $m && -r /etc/apt/sources.list ]]; then
    m=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if($i ~ /^[a-z]+:\/\//){print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

# msb_private_apt DIR "LINE" → sets MSB_APT (array of apt-get options).
msb_private_apt() {
  local dir=$1 line=$2
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  printf '%s\n' "$line" >"$dir/sources.list"
  MSB_APT=(
    -o "Dir::Etc::SourceList=$dir/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$dir/lists"
    -o "Dir::Cache=$dir/cache"
    -o "APT::Sandbox::User=root"
  )
}

msb_private_apt_update() {
  local dir=$1
  apt-get "${MSB_APT[@]}" -qq update >"$dir/update.log" 2>&1 || {
    cat "$dir/update.log" >&2
    msb_die "apt-get update with the private config in $dir failed"
  }
}
