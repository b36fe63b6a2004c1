#!/usr/bin/env bash
# Install aewatch as a systemd service (docs/deployment.md, "## systemd"). Run as root:
#
#   deploy/install.sh                 # the package from this checkout
#   deploy/install.sh dist/aewatch-0.1.0-py3-none-any.whl
#
# Creates /opt/aewatch/venv (PyTorch 2.13.0, CPU build, then aewatch), installs the
# reload helper, the unit (/etc/systemd/system/aewatch.service) and, when absent, an
# example /etc/aewatch/aewatch.yaml (state_dir: /var/lib/aewatch/state). Safe to run again,
# e.g. to upgrade: it keeps an existing config and password file and /var/lib/aewatch with
# the state folder in it, says when the kept config sets no state_dir there, and neither
# enables nor restarts the service.
#
# Environment:
#   PYTHON               interpreter for the venv (default /usr/bin/python3, 3.11 or later);
#                        it must live outside /home and /root, which the unit hides
#   AEWATCH_TORCH_INDEX  package index for torch, e.g. PyTorch's CPU-only index; unset:
#                        pip's configured index (plain PyPI may pick a large CUDA build)
set -euo pipefail

readonly PREFIX=/opt/aewatch
readonly VENV=$PREFIX/venv
readonly CONFIG_DIR=/etc/aewatch
readonly UNIT_DIR=/etc/systemd/system
readonly STATE_ROOT=/var/lib/aewatch  # StateDirectory=aewatch: the unit's one writable place
readonly TORCH_VERSION=2.13.0

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname -- "$here")
package=${1:-$checkout}
python=${PYTHON:-/usr/bin/python3}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

check_prerequisites() {
    [[ $(id -u) -eq 0 ]] || die "run as root (it writes $PREFIX, $CONFIG_DIR and $UNIT_DIR)"
    [[ -e $package ]] || die "no package at $package; give a checkout or a wheel"
    "$python" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        die "$python is not Python 3.11 or later with the venv module (apt install python3-venv)"
    local real
    real=$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')
    case $real in
        /home/* | /root/* | /run/user/*)
            die "$python is $real; ProtectHome= hides it from the service, use a system Python" ;;
    esac
}

install_venv() {
    if [[ ! -x $VENV/bin/python ]]; then
        "$python" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # Exactly this torch, first: a looser spec may pull a multi-GB CUDA build.
    local index=()
    if [[ -n ${AEWATCH_TORCH_INDEX:-} ]]; then
        index=(--index-url "$AEWATCH_TORCH_INDEX")
    fi
    "$VENV/bin/python" -m pip install --quiet "${index[@]}" "torch==$TORCH_VERSION"
    "$VENV/bin/python" -m pip install --quiet --upgrade "$package"
    "$VENV/bin/aewatch" --version
}

install_files() {
    install -D -m 0755 "$here/systemd/aewatch_reload.py" "$PREFIX/libexec/aewatch-reload"
    if [[ -f $checkout/docs/deployment.md ]]; then
        install -D -m 0644 "$checkout/docs/deployment.md" "$PREFIX/docs/deployment.md"
    fi
    install -D -m 0644 "$here/systemd/aewatch.service" "$UNIT_DIR/aewatch.service"
    # The service runs as a dynamic user, which reads the config through the
    # aewatch-config group (SupplementaryGroups= in the unit); secrets never go in it.
    getent group aewatch-config >/dev/null || groupadd --system aewatch-config
    install -d -m 0750 -o root -g aewatch-config "$CONFIG_DIR"
    if [[ ! -e $CONFIG_DIR/aewatch.yaml ]]; then
        install -m 0640 -o root -g aewatch-config "$checkout/config/aewatch.example.yaml" \
            "$CONFIG_DIR/aewatch.yaml"
        # Under systemd the password comes from LoadCredential=mqtt-password:...
        sed -i -E 's/^( *password: *)\{ *env: *[A-Za-z_][A-Za-z0-9_]* *\}/\1{credential: mqtt-password}/' \
            "$CONFIG_DIR/aewatch.yaml"
        grep -q '{credential: mqtt-password}' "$CONFIG_DIR/aewatch.yaml" ||
            echo "install.sh: set broker.password to {credential: mqtt-password} in" \
                "$CONFIG_DIR/aewatch.yaml" >&2
    fi
    # Bundles copied here before the first start are moved to /var/lib/private/aewatch
    # and given to the service's dynamic user by systemd (StateDirectory=). The state
    # folder in it (state_dir) is made by the daemon itself, mode 0700, as that user.
    if [[ ! -e $STATE_ROOT && ! -e /var/lib/private/aewatch ]]; then
        install -d -m 0755 "$STATE_ROOT"
    fi
    # LoadCredential= needs the file even when the broker takes no password.
    if [[ ! -e $CONFIG_DIR/mqtt-password ]]; then
        install -m 0600 -o root -g root /dev/null "$CONFIG_DIR/mqtt-password"
    fi
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
    fi
}

check_state_dir() {
    # A config kept from an older install may lack state_dir, or name a folder the unit
    # cannot write (ProtectSystem=strict leaves only $STATE_ROOT).
    if ! grep -Eq "^state_dir:[[:space:]]*[\"']?$STATE_ROOT/" "$CONFIG_DIR/aewatch.yaml"; then
        echo "install.sh: $CONFIG_DIR/aewatch.yaml sets no state_dir under $STATE_ROOT/;" \
            "add 'state_dir: $STATE_ROOT/state', or a crash loses acknowledged readings" \
            "and a restart raises open alerts again under new ids (docs/deployment.md," \
            "\"The state folder\")" >&2
    fi
}

print_next_steps() {
    cat <<EOF

aewatch is installed in $VENV; the unit is $UNIT_DIR/aewatch.service.
Next:
  1. Edit $CONFIG_DIR/aewatch.yaml: broker, inputs, models under /var/lib/aewatch/,
     metrics.port fixed (the reload helper reads it). Check it with
       $VENV/bin/aewatch check-config $CONFIG_DIR/aewatch.yaml
     (a {credential: ...} password needs CREDENTIALS_DIRECTORY=$CONFIG_DIR there).
  2. Put the broker password in $CONFIG_DIR/mqtt-password (mode 0600, root only),
     or drop "password:" and "username:" from the config for an anonymous broker.
  3. Copy the model bundles (aewatch train --out ...) into $STATE_ROOT/. The daemon
     keeps its journal and state key in $STATE_ROOT/state/ (state_dir): keep that
     folder across upgrades, and back up its state-key (docs/deployment.md).
  4. systemctl enable --now aewatch; journalctl -u aewatch -f
     After changing the config or a bundle: systemctl reload aewatch (it waits, and
     fails if the daemon keeps the old ones).
EOF
}

check_prerequisites
install_venv
install_files
check_state_dir
print_next_steps
