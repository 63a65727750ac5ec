# Sourced by the bench scripts: installs the given tools from Debian's
# packages when they are missing and builds meshd in release mode.
#   bench_setup wrk:wrk h2load:nghttp2-client ...   (command:package pairs)
# Leaves MESHD set to the built binary and the working directory at the
# repository's root.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

bench_setup() {
  local missing=() tool
  for tool in "$@"; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  cd "$bench_root"
  cargo build --release -q -p meshd
  export MESHD="${CARGO_TARGET_DIR:-$bench_root/target}/release/meshd"
}
