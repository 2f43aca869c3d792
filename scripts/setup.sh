#!/usr/bin/env bash
# Installs what the build needs and is missing: capnp, protoc and jq (the
# tests pipe a ROM's JSON through it) from apt, chromium and chromedriver (the
# status page's browser test), and
# the wasm32-wasip2 rustup target. When all of it is present this is a few
# cheap checks, so `make test` and `make demo` can always run it first.
set -euo pipefail

missing=()
command -v capnp >/dev/null 2>&1 || missing+=(capnproto)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]} from apt" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 rustup target" >&2
  rustup target add wasm32-wasip2
fi
