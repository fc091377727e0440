#!/bin/sh
# openshell's node installer, run by the init container of the DaemonSet
# `openshell kubernetes manifests` writes, once per node and again whenever the pod
# restarts. It copies openshell-runtime onto the host, registers it with the node's
# containerd as the runtime handler `openshell`, restarts containerd (or K3s) when
# the configuration changed, and labels the node so that pods of the RuntimeClass
# `openshell` are scheduled there.
#
# containerd gets a drop-in, conf.d/openshell.toml, imported by its main config;
# but containerd 1.x replaces a plugin's whole section with an imported file's,
# so when the main config configures the CRI plugin itself, the entry goes at
# its end instead, between two marker comments. And containerd 1.x forgets its
# default runtimes once a config names one: when runc came from the defaults,
# its tables (as `config dump` shows them) go along with the entry.
#
# Safely: containerd's main config is changed only after the real containerd on
# the host has loaded the new one (`containerd --config NEW config dump`), shows
# the entry, and has every other setting the current one has; it keeps its first
# pre-openshell copy as config.toml.openshell-backup.
# Every file replaced is kept as FILE.openshell-previous (or marked
# FILE.openshell-absent) until containerd or K3s has restarted with the new ones;
# when the restart fails, or K3s's rendered config.toml lacks the entry, the
# previous files come back and the restart is done again with them. A run
# interrupted half-way is finished (or undone) by the next one.
#
# Settings, all from the environment (the DaemonSet sets every one; tests point
# them at a temporary directory):
#   OPENSHELL_FLAVOR      containerd (a drop-in under conf.d) or k3s (templates)
#   OPENSHELL_HOST        where the host's directories are mounted here ("" = /)
#   OPENSHELL_HOST_EXEC   the prefix that runs a command in the host's mount
#                         namespace, where paths are the host's ("" = here)
#   OPENSHELL_FILES       the files to install (the ConfigMap's directory)
#   OPENSHELL_SOURCE      the runtime binary in this image
#   OPENSHELL_BINARY      where the runtime goes on the host (the entry's BinaryName)
#   OPENSHELL_CONFIG      containerd's main config file on the host
#   OPENSHELL_K3S_DIR     K3s's agent containerd directory on the host
#   OPENSHELL_NODE_LABEL  key=value set on the node when done
#   NODE_NAME             this node
#   OPENSHELL_RESTART     optional: the host command restarting containerd or K3s
#                         (default: systemctl restart containerd, k3s or k3s-agent)
#   OPENSHELL_KUBE_API    optional: the API server (default: the in-cluster one)
#   OPENSHELL_KUBE_CREDENTIALS  optional: the service account's token and ca.crt
set -eu

# shellcheck disable=SC2016 # the backquotes are text
MARKER='# Written by `openshell kubernetes manifests`'
# shellcheck disable=SC2016 # the backquotes are text
END='# End of what `openshell kubernetes manifests` wrote'
NEW=.openshell-new
PREVIOUS=.openshell-previous
ABSENT=.openshell-absent
BACKUP=.openshell-backup

say() { printf 'openshell-installer: %s\n' "$*"; }
fail() {
  printf 'openshell-installer: %s\n' "$*" >&2
  exit 1
}
# A host path, as this container sees it.
here() { printf '%s%s' "$OPENSHELL_HOST" "$1"; }
# shellcheck disable=SC2086 # the prefix is a command and its arguments
on_host() { $OPENSHELL_HOST_EXEC "$@"; }

# Records what FILE is before this run changes it, for `rollback`: once, until a
# run finishes.
remember() {
  if [ -e "$1$PREVIOUS" ] || [ -e "$1$ABSENT" ]; then return 0; fi
  if [ -e "$1" ]; then cp -p "$1" "$1$PREVIOUS"; else : >"$1$ABSENT"; fi
}

# put SRC DEST: DEST gets SRC's bytes, through a new file renamed into place (with
# the old one's mode).
put() {
  if cmp -s "$1" "$2"; then return 0; fi
  remember "$2"
  if [ -e "$2" ]; then
    cp -p "$2" "$2$NEW"
    cat "$1" >"$2$NEW"
  else
    cp "$1" "$2$NEW"
    chmod 0644 "$2$NEW"
  fi
  mv -f "$2$NEW" "$2"
}

# Whether any of the files was replaced by a run that has not finished.
pending() {
  for f in "$@"; do
    if [ -e "$f$PREVIOUS" ] || [ -e "$f$ABSENT" ]; then return 0; fi
  done
  return 1
}

rollback() {
  for f in "$@"; do
    if [ -e "$f$PREVIOUS" ]; then
      mv -f "$f$PREVIOUS" "$f"
    elif [ -e "$f$ABSENT" ]; then
      rm -f "$f" "$f$ABSENT"
    fi
  done
}

commit() {
  for f in "$@"; do rm -f "$f$PREVIOUS" "$f$ABSENT"; done
}

# Whether a containerd config (a dump, or K3s's rendered file) has the entry
# with this binary (containerd 2 dumps strings in single quotes).
registered() {
  sed -n '/runtimes\.openshell\.options\]/,/^ *\[/p' "$1" |
    grep -qF -e "BinaryName = \"$OPENSHELL_BINARY\"" -e "BinaryName = '$OPENSHELL_BINARY'"
}

restart() {
  if [ -n "${OPENSHELL_RESTART:-}" ]; then
    on_host sh -c "$OPENSHELL_RESTART"
  elif [ "$OPENSHELL_FLAVOR" = containerd ]; then
    on_host systemctl restart containerd
  elif on_host systemctl is-active --quiet k3s; then
    on_host systemctl restart k3s
  else
    on_host systemctl restart k3s-agent
  fi
}

# apply CHECK FILE...: restart with the files in place and CHECK; on failure, the
# previous files back and a restart with them.
apply() {
  check=$1
  shift
  if restart && $check; then
    commit "$@"
    return 0
  fi
  rollback "$@"
  restart || say "restarting with the previous files failed too"
  fail "$OPENSHELL_FLAVOR did not restart with openshell's runtime; the previous files are back"
}

install_binary() {
  dest=$(here "$OPENSHELL_BINARY")
  mkdir -p "$(dirname "$dest")"
  if ! cmp -s "$OPENSHELL_SOURCE" "$dest"; then
    cp "$OPENSHELL_SOURCE" "$dest$NEW"
    chmod 0755 "$dest$NEW"
    mv -f "$dest$NEW" "$dest"
    say "installed $OPENSHELL_BINARY"
  fi
  on_host "$OPENSHELL_BINARY" --version >/dev/null ||
    fail "$OPENSHELL_BINARY does not run on this node (it needs glibc and libseccomp2); nothing else was changed"
}

# The version containerd reads its main config (a path here) as: the file's, else
# (no file) that of this containerd's default config.
config_version() {
  if [ -e "$1" ]; then
    v=$(sed -n 's/^version *= *\([0-9][0-9]*\).*/\1/p' "$1")
    [ -n "$v" ] || fail "$OPENSHELL_CONFIG has no version: a version 1 config; migrate it first (containerd config migrate)"
  else
    v=$(on_host containerd config default | sed -n 's/^version *= *\([0-9][0-9]*\).*/\1/p')
  fi
  case $v in
    2 | 3) printf '%s' "$v" ;;
    *) fail "$OPENSHELL_CONFIG: config version '$v' is neither 2 nor 3" ;;
  esac
}

# with_imports FILE GLOB: the main config FILE importing GLOB too.
with_imports() {
  line=$(grep '^imports *=' "$1" || true)
  case $line in
    "") printf 'imports = ["%s"]\n' "$2" && cat "$1" ;;
    *"\"$2\""*) cat "$1" ;;
    *]*) sed "s|^imports *= *\[|imports = [\"$2\", |" "$1" ;;
    *) fail "$OPENSHELL_CONFIG: its imports span several lines; add \"$2\" to them yourself" ;;
  esac
}

# own_config FILE VERSION: the main config without openshell's entry nor blank
# lines at its end (a version line alone when there is no file).
own_config() {
  if [ -e "$1" ]; then
    awk -v begin="$MARKER" -v end="$END" '
      index($0, begin) == 1 { skip = 1 }
      !skip && $0 == "" { blank++ }
      !skip && $0 != "" { for (; blank > 0; blank--) print ""; print }
      index($0, end) == 1 { skip = 0 }' "$1"
  else
    printf 'version = %s\n' "$2"
  fi
}

# Whether a config (not its comments) names the CRI plugin an entry belongs to.
configures_cri() {
  plugin=$(grep -m1 '^\[plugins\.' "$2" | sed 's/^\[plugins\."\([^"]*\)".*/\1/')
  grep -v '^[[:space:]]*#' "$1" | grep -qF "$plugin"
}

# A config dump's settings, but the imports and openshell's runtime.
settings() {
  sed -e '/^imports = /d' -e '/runtimes\.openshell\]$/,/^$/d' -e '/runtimes\.openshell\.options\]$/,/^$/d' "$1"
}

has_runc() { grep -q 'runtimes\.runc\]$' "$1"; }

# The tables of the runtime runc in a dump, every field explicit.
runc_tables() {
  sed -n -e '/runtimes\.runc\]$/,/^$/p' -e '/runtimes\.runc\.options\]$/,/^$/p' "$1"
}

# What containerd runs with now (the main config, or its defaults), to $work/before.
dump_current() {
  if [ ! -e "$main" ]; then
    on_host containerd config default >"$work/before"
  elif ! on_host containerd --config "$OPENSHELL_CONFIG" config dump >"$work/before" 2>&1; then
    fail "containerd does not load $OPENSHELL_CONFIG as it is: $(tail -n 5 "$work/before")"
  fi
}

# stage_containerd EXTRA: the candidate main config importing the drop-in or,
# when the main config configures the CRI plugin itself (containerd 1.x would
# replace that whole section with the drop-in's), with the entry at its end and
# no drop-in; the file EXTRA (tables) after the entry.
stage_containerd() {
  entry=$OPENSHELL_FILES/entry-v$version.toml
  if configures_cri "$work/own" "$entry"; then
    { cat "$work/own" "$entry" "$1" && printf '%s\n' "$END"; } >"$candidate"
    if [ -e "$drop_in" ]; then
      remember "$drop_in"
      rm -f "$drop_in"
    fi
  else
    with_imports "$work/own" "$conf_d/*.toml" >"$candidate"
    cat "$OPENSHELL_FILES/drop-in-v$version.toml" "$1" >"$work/drop-in"
    put "$work/drop-in" "$drop_in"
  fi
}

# The candidate as containerd loads it, to $work/after; the entry must be there.
dump_candidate() {
  if ! on_host containerd --config "$OPENSHELL_CONFIG.openshell-candidate" config dump >"$work/after" 2>&1 ||
    ! registered "$work/after"; then
    rollback "$drop_in"
    fail "containerd does not load the config with openshell's runtime, left as it was: $(tail -n 5 "$work/after")"
  fi
}

# The candidate, staged and loaded: containerd 1.x forgets its default runtimes
# once a config names one, so runc comes along as it was; then every other
# setting must be as before.
prepare_containerd() {
  : >"$work/extra"
  stage_containerd "$work/extra"
  dump_candidate
  if has_runc "$work/before" && ! has_runc "$work/after"; then
    runc_tables "$work/before" >"$work/extra"
    stage_containerd "$work/extra"
    dump_candidate
  fi
  settings "$work/before" >"$work/before.kept"
  settings "$work/after" >"$work/after.kept"
  if ! cmp -s "$work/before.kept" "$work/after.kept"; then
    rollback "$drop_in"
    fail "with openshell's runtime, containerd's other settings would change (containerd 1.x replaces a plugin's whole section with each imported file's): add the entry to the file that configures the CRI plugin yourself; left as it was"
  fi
}

install_containerd() {
  main=$(here "$OPENSHELL_CONFIG")
  conf_d=$(dirname "$OPENSHELL_CONFIG")/conf.d
  drop_in=$(here "$conf_d")/openshell.toml
  candidate=$main.openshell-candidate
  version=$(config_version "$main") || exit 1
  mkdir -p "$(here "$conf_d")"
  dump_current
  own_config "$main" "$version" >"$work/own"
  prepare_containerd
  if [ -e "$main" ] && [ ! -e "$main$BACKUP" ]; then cp -p "$main" "$main$BACKUP"; fi
  put "$candidate" "$main"
  if pending "$drop_in" "$main"; then
    apply true "$drop_in" "$main"
    say "containerd restarted with runtime handler openshell"
  else
    say "containerd has runtime handler openshell already"
  fi
}

k3s_rendered() { registered "$(here "$OPENSHELL_K3S_DIR")/config.toml"; }

install_k3s() {
  dir=$(here "$OPENSHELL_K3S_DIR")
  [ -d "$dir" ] || fail "$OPENSHELL_K3S_DIR is missing: not a K3s node? (the containerd flavor is for plain containerd)"
  for t in config.toml.tmpl config-v3.toml.tmpl; do
    if [ -e "$dir/$t" ] && ! grep -qF "$MARKER" "$dir/$t"; then
      fail "$OPENSHELL_K3S_DIR/$t is not openshell's: add the runtime entry to it yourself (openshell kubernetes manifests)"
    fi
  done
  for t in config.toml.tmpl config-v3.toml.tmpl; do put "$OPENSHELL_FILES/$t" "$dir/$t"; done
  if pending "$dir/config.toml.tmpl" "$dir/config-v3.toml.tmpl" || ! k3s_rendered; then
    apply k3s_rendered "$dir/config.toml.tmpl" "$dir/config-v3.toml.tmpl"
    say "K3s restarted with runtime handler openshell"
  else
    say "K3s has runtime handler openshell already"
  fi
}

# The label, by a merge patch of this node; the token goes on stdin, never on a
# command line (this pod shares the host's process list).
label_node() {
  api=${OPENSHELL_KUBE_API:-}
  if [ -z "$api" ]; then
    host=${KUBERNETES_SERVICE_HOST:?not in a pod: set OPENSHELL_KUBE_API}
    case $host in *:*) host="[$host]" ;; esac
    api="https://$host:$KUBERNETES_SERVICE_PORT"
  fi
  credentials=${OPENSHELL_KUBE_CREDENTIALS:-/var/run/secrets/kubernetes.io/serviceaccount}
  key=${OPENSHELL_NODE_LABEL%%=*}
  value=${OPENSHELL_NODE_LABEL#*=}
  printf 'Authorization: Bearer %s\n' "$(cat "$credentials/token")" |
    curl --fail --silent --show-error --retry 10 --retry-connrefused --retry-delay 3 --max-time 30 \
      --cacert "$credentials/ca.crt" -H @- -H 'Content-Type: application/merge-patch+json' -X PATCH \
      --data "{\"metadata\":{\"labels\":{\"$key\":\"$value\"}}}" -o /dev/null "$api/api/v1/nodes/$NODE_NAME"
  say "labeled node $NODE_NAME $OPENSHELL_NODE_LABEL"
}

cleanup() {
  rm -rf "$work"
  if [ -n "${candidate:-}" ]; then rm -f "$candidate"; fi
}

: "${OPENSHELL_FLAVOR:?}" "${OPENSHELL_HOST?}" "${OPENSHELL_HOST_EXEC?}" "${OPENSHELL_FILES:?}"
: "${OPENSHELL_SOURCE:?}" "${OPENSHELL_BINARY:?}" "${OPENSHELL_NODE_LABEL:?}" "${NODE_NAME:?}"
case $OPENSHELL_FLAVOR in
  containerd) : "${OPENSHELL_CONFIG:?}" ;;
  k3s) : "${OPENSHELL_K3S_DIR:?}" ;;
  *) fail "OPENSHELL_FLAVOR '$OPENSHELL_FLAVOR' is neither containerd nor k3s" ;;
esac
work=$(mktemp -d)
trap cleanup EXIT
install_binary
"install_$OPENSHELL_FLAVOR"
label_node
