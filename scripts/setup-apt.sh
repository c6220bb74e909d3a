#!/usr/bin/env bash
# Install the Debian packages kubelite needs, only those missing (idempotent):
#   setup-apt.sh "WHAT THEY ARE FOR" PACKAGE...
# No service of a package installed here is started or enabled: kubelite runs its own
# containerd, and the tests start their own registry on a free port (Debian's docker-registry
# would otherwise listen on :5000 from the moment it is installed). While apt runs, a
# policy-rc.d that refuses every start is in place (unless the machine has one of its own),
# which invoke-rc.d and deb-systemd-invoke obey; the new packages' units and init scripts are
# then disabled (and stopped, should the machine's own policy have let them start).
set -euo pipefail
what=$1
shift
missing=()
for p in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "kubelite set-up needs root to install the Debian packages for $what: ${missing[*]}" >&2
  exit 1
fi
echo "kubelite: installing Debian packages for $what (first run only, ~1 min): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
policy=${KUBELITE_POLICY_RC_D:-/usr/sbin/policy-rc.d}
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# kubelite set-up (scripts/setup-apt.sh): no service starts while its packages install\nexit 101\n' \
    >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
installed_packages() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort -u; }
installed_before=$(installed_packages)
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# the packages asked for and those they brought along (nfs-ganesha brings rpcbind, for one)
mapfile -t new_packages < <({ printf '%s\n' "${missing[@]}"; comm -13 <(echo "$installed_before") <(installed_packages); } | sort -u)
systemd_running=""
[ -d /run/systemd/system ] && systemd_running=1
for p in "${new_packages[@]}"; do
  while read -r f; do
    case "$f" in
      /lib/systemd/system/*.service | /usr/lib/systemd/system/*.service | \
        /lib/systemd/system/*.socket | /usr/lib/systemd/system/*.socket)
        unit=$(basename "$f")
        case "$unit" in *@.service | *@.socket) continue ;; esac
        deb-systemd-helper disable "$unit" >/dev/null 2>&1 || true
        if [ -n "$systemd_running" ]; then systemctl stop "$unit" >/dev/null 2>&1 || true; fi
        echo "kubelite: $p's service $unit is disabled (kubelite does not use it)"
        ;;
      /etc/init.d/*)
        name=$(basename "$f")
        update-rc.d "$name" disable >/dev/null 2>&1 || true
        if [ -z "$systemd_running" ]; then "$f" stop >/dev/null 2>&1 || true; fi
        ;;
    esac
  done < <(dpkg-query -L "$p" 2>/dev/null)
done
