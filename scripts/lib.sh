# Shared set-up for the Makefile's scripts (sourced, not run). Every step is idempotent and cheap when done.
#
# Knobs (environment): VENV (.venv), PYTHON (python3.11, else python3), ODOO_SRC (default /opt/odoo19),
# CI (true: never clone Odoo, never prompt).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
VAR="$ROOT/var"
ODOO_DEFAULT=/opt/odoo19
ODOO_REPO=https://github.com/odoo/odoo.git
MODULE=epilot_outlook
# The module and its bridges to other Odoo apps (epilot_outlook_<app>/, auto-installed with their app): installed,
# upgraded and tested together, comma-separated.
MODULES=$(cd "$ROOT" && for manifest in "$MODULE"/__manifest__.py "$MODULE"_*/__manifest__.py; do
    [ -f "$manifest" ] && printf '%s,' "${manifest%/__manifest__.py}"; done | sed 's/,$//')
MODULES=${MODULES:-$MODULE}
DB_USER=$(id -un)
export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$VAR"

say()  { printf '==> %s\n' "$*"; }
warn() { printf '!!! %s\n' "$*" >&2; }
die()  { printf '!!! %s\n' "$*" >&2; exit 1; }

sha() { sha1sum | cut -c1-40; }
# An empty file only its owner can read (0600), created or truncated: for files that hold credentials.
private_file() { (umask 077 && : > "$1") && chmod 600 "$1"; }

# Run as root, or through sudo when there is one.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else die "need root for: $* (run it yourself, then retry)"; fi
}

apt_install() {
    say "installing Debian packages: $*"
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------- Odoo tree
is_odoo19() {
    [ -f "$1/odoo-bin" ] && grep -q 'version_info = (19, 0' "$1/odoo/release.py" 2>/dev/null
}

# Sets ODOO_SRC to a valid Odoo 19 tree, or to "" with ODOO_MISSING saying why. An explicit ODOO_SRC is used
# as given; only the default location is ever cloned into, and never on CI.
find_odoo() {
    local explicit=${ODOO_SRC:-}
    local src=${explicit:-$ODOO_DEFAULT}
    ODOO_MISSING=""
    if ! is_odoo19 "$src" && [ -z "$explicit" ] && [ ! -e "$src" ] && [ "${CI:-}" != true ]; then
        local failed="$VAR/odoo-clone-failed"
        if [ -n "$(find "$failed" -mmin -720 2>/dev/null)" ]; then
            say "not retrying the Odoo clone (failed less than 12 h ago; rm $failed to retry)"
        elif command -v git >/dev/null; then
            say "Odoo 19 not found; trying: git clone --depth 1 --branch 19.0 $ODOO_REPO $src"
            if GIT_TERMINAL_PROMPT=0 timeout 120 git clone -q --depth 1 --branch 19.0 "$ODOO_REPO" "$src" </dev/null; then
                rm -f "$failed"
            else
                rm -rf "$src"; touch "$failed"; warn "could not clone Odoo 19"
            fi
        fi
    fi
    if is_odoo19 "$src"; then
        ODOO_SRC=$(cd "$src" && pwd)
    else
        ODOO_SRC=""
        if [ -n "$explicit" ]; then ODOO_MISSING="ODOO_SRC=$explicit is not an Odoo 19 tree"
        else ODOO_MISSING="Odoo 19 not found at $ODOO_DEFAULT (set ODOO_SRC)"; fi
    fi
    export ODOO_SRC
}

# ---------------------------------------------------------------------------------------------- system
# PostgreSQL, running, with a superuser role for this user; headers for Odoo's source-built requirements.
ensure_system() {
    local missing=()
    command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
    local pkg
    for pkg in libldap2-dev libsasl2-dev libpq-dev; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    command -v gcc >/dev/null || missing+=(gcc)
    # Odoo's browser tests (the agents' tours) run headless Chromium; without it Odoo skips them.
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null ||
        missing+=(chromium)
    [ -z "$PYTHON" ] || "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing+=(python3-dev)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

    if ! psql -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
            say "starting PostgreSQL"
            local ver name
            if read -r ver name _ < <(pg_lsclusters -h 2>/dev/null); then
                as_root pg_ctlcluster "$ver" "$name" start
            else
                as_root service postgresql start
            fi
        fi
        local i
        for i in $(seq 30); do pg_isready -q && break; sleep 1; done
        if ! as_root su postgres -c "psql -tAc \"select 1 from pg_roles where rolname='$DB_USER'\"" | grep -q 1; then
            say "creating PostgreSQL superuser role $DB_USER"
            as_root su postgres -c "createuser -s '$DB_USER'"
        fi
        psql -d postgres -tAc 'select 1' >/dev/null || die "cannot reach PostgreSQL as $DB_USER"
    fi
}

db_exists() { [ "$(psql -d postgres -tAc "select 1 from pg_database where datname='$1'")" = 1 ]; }

# ---------------------------------------------------------------------------------------------- venv
# The venv is keyed on the requirement files: two stamps, one for our own requirements (enough without Odoo),
# one for Odoo's on top. Odoo is not pip-installed (that would pull lxml 6); odoo-bin runs from its tree.
ensure_venv() {
    [ -n "$PYTHON" ] || { apt_install python3 python3-venv; PYTHON=python3; }
    local python=$PYTHON
    local reqs=(-r requirements.txt -r requirements-dev.txt)
    local core_key odoo_key=""
    core_key=$({ "$python" -V 2>&1; cat requirements.txt requirements-dev.txt; } | sha)
    if [ -n "$ODOO_SRC" ]; then
        # cbor2 5.4.2 (pinned for Python < 3.12) has no wheel for 3.11 and does not build; 5.4.6 does.
        sed 's/^cbor2==5\.4\.2\b/cbor2==5.4.6/' "$ODOO_SRC/requirements.txt" > "$VAR/odoo-requirements.txt"
        reqs=(-r "$VAR/odoo-requirements.txt" "${reqs[@]}")
        odoo_key=$({ echo "$core_key"; cat "$VAR/odoo-requirements.txt"; } | sha)
    fi
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.stamp-core" 2>/dev/null)" = "$core_key" ] &&
       { [ -z "$odoo_key" ] || [ "$(cat "$VENV/.stamp-odoo" 2>/dev/null)" = "$odoo_key" ]; }; then
        return 0
    fi
    (
        flock 9
        if [ ! -x "$VENV/bin/python" ]; then
            "$python" -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
            say "creating $VENV with $("$python" -V 2>&1)"
            "$python" -m venv "$VENV"
        fi
        say "installing Python requirements into $VENV${odoo_key:+ (with those of Odoo 19)}"
        "$VENV/bin/pip" install -q "${reqs[@]}"
        echo "$core_key" > "$VENV/.stamp-core"
        [ -z "$odoo_key" ] || echo "$odoo_key" > "$VENV/.stamp-odoo"
    ) 9>"$VAR/.venv.lock"
}

# ---------------------------------------------------------------------------------------------- Odoo helpers
odoo_bin() { "$VENV/bin/python" "$ODOO_SRC/odoo-bin" "$@"; }

addons_path() { echo "$ODOO_SRC/addons,$ODOO_SRC/odoo/addons,$ROOT"; }

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A Fernet key for the module's token vault in FILE (made once, private); prints the key.
read_or_make_key() {
    if [ ! -s "$1" ]; then
        (umask 077 && "$VENV/bin/python" -c \
            'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > "$1")
        say "generated a token encryption key in $1" >&2
    fi
    cat "$1"
}

# Content hash of the modules' files that an upgrade (-u) would see (their tests need none).
module_hash() {
    (cd "$ROOT" && for module in ${MODULES//,/ }; do
        find "$module" -path "$module/tests" -prune -o -type f ! -name '*.pyc' -print0; done | sort -z |
        xargs -0 sha1sum) | sha
}

# The Odoo modules ours depend on (their manifests' depends, ours left out), comma-separated; "" when the main
# module has no manifest.
module_depends() {
    [ -f "$ROOT/$MODULE/__manifest__.py" ] || return 0
    "$VENV/bin/python" - "$ROOT" ${MODULES//,/ } <<'PY'
import ast, pathlib, sys
root, ours = pathlib.Path(sys.argv[1]), sys.argv[2:]
depends = []
for module in ours:
    manifest = ast.literal_eval((root / module / "__manifest__.py").read_text())
    depends += [name for name in manifest.get("depends", ["base"]) if name not in ours and name not in depends]
print(",".join(depends))
PY
}
