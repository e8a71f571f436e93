#!/usr/bin/env bash
# Supply-chain check with cargo-deny (`deny.toml`): RustSec advisories (vulnerable,
# unmaintained, unsound or yanked crates), licences, sources. Part of `.ci/run`.
#
# The advisory database is a git repository on GitHub. With GitHub reachable, cargo-deny
# fetches the newest one. Without it (a machine that reaches only crates.io), the check uses
# the copy already in ~/.cargo/advisory-dbs, or one given as CAIRN_ADVISORY_DB=/path/to/a
# clone (or git bundle) of https://github.com/rustsec/advisory-db, by default the bundle at
# ../shared/supply-chain/advisory-db.bundle beside this repository if there is one; a
# given copy replaces an older one already there. It prints the date of the copy it
# checked against. With no copy at all it still checks licences, bans and sources and
# says loudly that advisories were NOT checked.
set -euo pipefail
cd "$(dirname "$0")/.."

db_root="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
# cargo-deny's directory name for the default database URL.
db_dir="$db_root/advisory-db-3157b0e258782691"
db_url=https://github.com/rustsec/advisory-db

if timeout 20 git ls-remote --exit-code "$db_url" HEAD >/dev/null 2>&1; then
  cargo deny --locked check
  exit 0
fi

copy="${CAIRN_ADVISORY_DB:-}"
if [ -z "$copy" ] && [ -f ../shared/supply-chain/advisory-db.bundle ]; then
  copy="$(realpath ../shared/supply-chain/advisory-db.bundle)"
fi
if [ -n "$copy" ]; then
  if [ ! -d "$db_dir/.git" ]; then
    mkdir -p "$db_root"
    git -c init.defaultBranch=main clone --quiet "$copy" "$db_dir"
  elif git -C "$db_dir" fetch --quiet "$copy" HEAD &&
    [ "$(git -C "$db_dir" log -1 --format=%ct FETCH_HEAD)" -gt "$(git -C "$db_dir" log -1 --format=%ct HEAD)" ]; then
    git -C "$db_dir" reset --quiet --hard FETCH_HEAD
  fi
fi
# Offline, cargo metadata needs every crate of the lock file (all platforms) on disk.
cargo fetch --locked --quiet
if [ -d "$db_dir/.git" ]; then
  echo "audit: $db_url unreachable; advisories from the local copy of" \
    "$(git -C "$db_dir" log -1 --format=%cs)"
  cargo deny --offline check
else
  echo "audit: WARNING: advisories NOT checked: $db_url is unreachable and there is no" \
    "local copy (set CAIRN_ADVISORY_DB to a clone of it)" >&2
  cargo deny --offline check bans licenses sources
fi
