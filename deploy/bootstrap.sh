#!/bin/sh
# Sets up a fresh Raspberry Pi OS (or another Debian) device for edge-classifier,
# as root. `edge-classifier fleet bootstrap HOST ARCHIVE` and the Ansible role run
# it with the release archive already copied to the device:
#
#   bootstrap.sh --archive FILE --version V --deploy-user USER
#                [--service-user edge-classifier] [--config FILE] [--node PATH]
#                [--health-timeout S]
#
# Steps, each safe to run again: the service user (in the video and gpio groups
# where they exist), the folders, the unit, the configuration (the template,
# unless one is given; an existing one is kept), the first release installed
# and activated through the release's own `release install`/`activate` (checks
# and health gate), the /usr/local/bin/edge-classifier command, a sudoers rule
# letting USER run only its release/model/health/doctor commands, then `doctor`.
#
# EDGE_CLASSIFIER_ROOT relocates every path (and the user database, through
# useradd --prefix) under another folder; tests use it.
set -eu

ROOT="${EDGE_CLASSIFIER_ROOT:-}"
ROOT="${ROOT%/}"
ARCHIVE= VERSION= DEPLOY_USER= CONFIG= NODE= HEALTH_TIMEOUT=
SERVICE_USER=edge-classifier

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --archive) ARCHIVE=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    --deploy-user) DEPLOY_USER=$2; shift 2 ;;
    --service-user) SERVICE_USER=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --node) NODE=$2; shift 2 ;;
    --health-timeout) HEALTH_TIMEOUT=$2; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[ -n "$ARCHIVE" ] && [ -n "$VERSION" ] && [ -n "$DEPLOY_USER" ] || die "usage: bootstrap.sh --archive FILE --version V --deploy-user USER [--service-user NAME] [--config FILE] [--node PATH]"
[ "$(id -u)" = 0 ] || die "must run as root (fleet runs it through sudo -n: the login needs passwordless sudo, as Raspberry Pi OS's first user has)"
[ -f "$ARCHIVE" ] || die "no release archive at $ARCHIVE"
[ -f "$ARCHIVE.sha256" ] || die "$ARCHIVE.sha256 is missing beside the archive"
case "$SERVICE_USER$DEPLOY_USER" in *[!A-Za-z0-9_.-]*) die "user names may hold letters, digits, '.', '_' and '-' only" ;; esac

# Node.js: the one the unit will run, so the native modules' ABI is checked against it.
if [ -z "$NODE" ]; then NODE=$(command -v node || true); fi
[ -n "$NODE" ] && [ -x "$NODE" ] || die "Node.js is not installed: install Node.js 20 or later (Raspberry Pi OS: the NodeSource repository, https://github.com/nodesource/distributions), then run bootstrap again"
major=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "Node.js $("$NODE" -v) at $NODE is too old: edge-classifier needs 20 or later"
say "Node.js $("$NODE" -v) at $NODE"

# The service user and its groups.
prefix=
[ -n "$ROOT" ] && prefix="--prefix $ROOT"
if grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd"; then
  say "service user $SERVICE_USER exists"
else
  # shellcheck disable=SC2086
  useradd $prefix --system --user-group --no-create-home --home-dir /var/lib/edge-classifier --shell /usr/sbin/nologin "$SERVICE_USER"
  say "service user $SERVICE_USER created"
fi
for group in video gpio; do
  if grep -q "^$group:" "$ROOT/etc/group"; then
    # shellcheck disable=SC2086
    usermod $prefix -a -G "$group" "$SERVICE_USER"
    say "$SERVICE_USER is in group $group"
  else
    say "no group '$group' on this system: skipped (a Raspberry Pi OS has it)"
  fi
done
uid=$(awk -F: -v u="$SERVICE_USER" '$1 == u { print $3 }' "$ROOT/etc/passwd")
gid=$(awk -F: -v u="$SERVICE_USER" '$1 == u { print $4 }' "$ROOT/etc/passwd")

# Folders: code root-owned (the service cannot change it), state and logs the service's.
install -d -m 0755 "$ROOT/opt/edge-classifier" "$ROOT/opt/edge-classifier/releases" "$ROOT/etc/edge-classifier" \
  "$ROOT/etc/systemd/system" "$ROOT/usr/local/bin" "$ROOT/etc/sudoers.d"
install -d -m 0750 -o "$uid" -g "$gid" "$ROOT/var/lib/edge-classifier" "$ROOT/var/log/edge-classifier"
say "folders ready"

# The release's own command line, unpacked beside the archive for the first install.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/edge-classifier-bootstrap.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$ARCHIVE" -C "$tmp" || die "cannot unpack $ARCHIVE (truncated or not a release archive)"
cli=$(find "$tmp" -maxdepth 3 -path '*/dist/cli.js' | head -n 1)
[ -n "$cli" ] || die "$ARCHIVE holds no dist/cli.js: not a release archive"
app=$(dirname "$(dirname "$cli")")

# The unit, written by the release for this Node.js.
"$NODE" "$cli" unit --node "$NODE" > "$ROOT/etc/systemd/system/edge-classifier.service.tmp"
mv -f "$ROOT/etc/systemd/system/edge-classifier.service.tmp" "$ROOT/etc/systemd/system/edge-classifier.service"
systemctl daemon-reload
systemctl enable edge-classifier >/dev/null 2>&1 || systemctl enable edge-classifier
say "unit installed and enabled"

# The configuration: kept when there is one.
conf="$ROOT/etc/edge-classifier/config.yaml"
if [ -f "$conf" ]; then
  say "keeping the configuration $conf"
elif [ -n "$CONFIG" ]; then
  install -m 0640 -o 0 -g "$gid" "$CONFIG" "$conf"
  say "configuration installed from $CONFIG"
elif [ -f "$app/systemd/config.example.yaml" ]; then
  install -m 0640 -o 0 -g "$gid" "$app/systemd/config.example.yaml" "$conf"
  say "configuration template installed: edit $conf"
else
  die "no configuration: give one with --config"
fi

# The command operators and fleet run, for this release's Node.js.
wrapper="$ROOT/usr/local/bin/edge-classifier"
{
  echo '#!/bin/sh'
  echo '# edge-classifier: the command line of the release the service runs (written by bootstrap).'
  [ -n "$ROOT" ] && echo "EDGE_CLASSIFIER_ROOT=\"\${EDGE_CLASSIFIER_ROOT:-$ROOT}\"; export EDGE_CLASSIFIER_ROOT"
  echo "exec $NODE $ROOT/opt/edge-classifier/current/dist/cli.js \"\$@\""
} > "$wrapper.tmp"
chmod 0755 "$wrapper.tmp"
mv -f "$wrapper.tmp" "$wrapper"
say "command $wrapper"

# First release: the release's own install (sha256, arch, ABI, self-test) and activate (health gate).
say "installing release $VERSION"
"$NODE" "$cli" release install "$ARCHIVE" >&2 || die "release install refused $ARCHIVE (see above)"
say "activating release $VERSION"
activated=0
"$NODE" "$cli" release activate "$VERSION" ${HEALTH_TIMEOUT:+--health-timeout "$HEALTH_TIMEOUT"} >&2 || activated=$?

# sudo for the deploy user: these device commands only, no password.
rule="$ROOT/etc/sudoers.d/edge-classifier"
cmd=/usr/local/bin/edge-classifier
{
  echo "# Written by edge-classifier bootstrap: $DEPLOY_USER may run these edge-classifier"
  echo "# commands as root without a password, and nothing else through this rule."
  echo "$DEPLOY_USER ALL=(root) NOPASSWD: $cmd release *, $cmd model *, $cmd health, $cmd health *, $cmd doctor, $cmd doctor *"
} > "$rule.tmp"
chmod 0440 "$rule.tmp"
if command -v visudo >/dev/null 2>&1; then
  visudo -cqf "$rule.tmp" || { rm -f "$rule.tmp"; die "visudo refused the sudoers rule (see above)"; }
fi
mv -f "$rule.tmp" "$rule"
say "sudoers rule $rule for $DEPLOY_USER"

say "doctor:"
doctor=0
"$NODE" "$cli" doctor >&2 || doctor=$?
[ "$activated" = 0 ] || die "release $VERSION did not pass its health gate (exit $activated): see doctor above and journalctl -u edge-classifier"
[ "$doctor" = 0 ] || die "doctor found a problem (see above)"
say "done: release $VERSION runs"
