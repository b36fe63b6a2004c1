#!/bin/sh
# Make the secrets the compose stack reads, in deploy/container/secrets/:
#   mqtt-password            aewatch's MQTT password (compose secret mqtt-password)
#   mqtt-password.USER       the password of each further MQTT user named on the command line
#   mosquitto-passwd         the broker's password file: every user above, hashed
#   grafana-admin-password   Grafana's admin password
#
# Usage: deploy/container/make-secrets.sh [USER...]     e.g. make-secrets.sh sensors
#
# A password that exists is kept; a missing one is made at random. mosquitto-passwd is
# remade from the plain-text files every time, so to add a user run this again with the
# name, to remove one delete its mqtt-password.USER and run it again; then
# `docker compose -f deploy/container/compose.yaml up -d --force-recreate mosquitto-auth mosquitto`.
# Hashing uses mosquitto_passwd where it is installed, else the eclipse-mosquitto:2 image.
#
# The folder is 0700, so no other user of this host can read it. The files in it are 0644:
# compose bind-mounts a secret file with its owner and mode from this host, and the
# containers read them as their own users (aewatch 10001, grafana 472), not as you.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${AEWATCH_SECRETS_DIR:-$here/secrets}
mosquitto_image=${MOSQUITTO_IMAGE:-eclipse-mosquitto:2}

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

random_password() {
    # 24 random bytes, base64 without the characters that need quoting in a shell or URL
    head -c 24 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'
}

keep_or_make() {  # FILE: leave an existing password alone, else write a new one
    if [ ! -s "$1" ]; then
        random_password >"$1"
        echo "made $1" >&2
    fi
    chmod 0644 "$1"
}

check_user() {
    case "$1" in
        aewatch) echo "aewatch is always made (mqtt-password); name only further users" >&2; exit 2 ;;
        *[!A-Za-z0-9_.-]* | '') echo "user name '$1': use letters, digits, _ . -" >&2; exit 2 ;;
    esac
}

hash_passwords() {  # plain "user:password" lines on stdin -> mosquitto password file on stdout
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        work=$(mktemp -d)
        cat >"$work/passwd"
        mosquitto_passwd -U "$work/passwd" >&2
        cat "$work/passwd"
        rm -rf "$work"
    else
        # stdin in, stdout out: no bind mount, so no file changes owner on this host
        docker run --rm -i --entrypoint /bin/sh "$mosquitto_image" -c \
            'cat >/tmp/passwd && mosquitto_passwd -U /tmp/passwd >&2 && cat /tmp/passwd'
    fi
}

for user in "$@"; do check_user "$user"; done

keep_or_make "$dir/mqtt-password"
keep_or_make "$dir/grafana-admin-password"
for user in "$@"; do keep_or_make "$dir/mqtt-password.$user"; done

{
    printf 'aewatch:%s\n' "$(cat "$dir/mqtt-password")"
    for file in "$dir"/mqtt-password.*; do
        [ -e "$file" ] || continue
        printf '%s:%s\n' "${file##*/mqtt-password.}" "$(cat "$file")"
    done
} | hash_passwords >"$dir/mosquitto-passwd.new"
mv "$dir/mosquitto-passwd.new" "$dir/mosquitto-passwd"
chmod 0644 "$dir/mosquitto-passwd"
echo "made $dir/mosquitto-passwd ($(wc -l <"$dir/mosquitto-passwd") users)" >&2
