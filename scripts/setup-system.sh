#!/usr/bin/env bash
# System packages the project needs beyond Python: TeX Live (the PDF report) and Chromium (the HTML
# report's browser test). Debian/Ubuntu, run as root (or with sudo available). Idempotent: installs
# only what is missing. SLURM for the cluster integration test is installed by
# tests/slurm/local_slurm.sh install.
set -euo pipefail

PACKAGES=(texlive-latex-recommended texlive-fonts-recommended lmodern latexmk chromium)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${PACKAGES[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system packages missing (${missing[*]}) and apt-get is not available: install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
