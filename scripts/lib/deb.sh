# Sourced by the scripts that need Debian packages (scripts/test.sh, the benchmarks).
#
# SUDO: "sudo" when not root, else empty; for the sourcing script's own root-only
# commands too.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# install_missing_debs PKG...: installs those of the packages dpkg does not have, with
# sudo when not root; a prepared machine skips the slow apt step entirely.
install_missing_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  printf '\n==> installing Debian packages: %s\n' "${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
