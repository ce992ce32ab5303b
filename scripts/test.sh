#!/usr/bin/env bash
# Runs the whole test suite. Installs the system packages the tests need
# (Dovecot, Tesseract) when they are missing and this user can (root with
# apt-get). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr tesseract-ocr-fra)
[ -d /usr/share/tesseract-ocr ] && ! ls /usr/share/tesseract-ocr/*/tessdata/fra.traineddata >/dev/null 2>&1 \
    && need+=(tesseract-ocr-fra)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "test: ${need[*]} missing and cannot be installed here; tests needing it will be skipped (they fail under CI=true)" >&2
    fi
fi

exec .venv/bin/pytest "$@"
