#!/bin/sh
# System packages the test suite needs beyond the Python lock (docs/operations.md "System packages"):
# installed from Debian's archive only when absent, so a machine that has them is left untouched.
#   postgresql  - initdb/pg_ctl for the Dagster-on-PostgreSQL tests (tests/support/postgres.py)
#   prometheus  - prometheus and promtool for the alert-rule tests (tests/ops/test_prometheus.py)
#   prometheus-alertmanager - alertmanager and amtool for the alert-route test (the same module)
#   chromium, chromium-driver - the headless browser and its WebDriver for the UI test (tests/ops/test_browser.py)
set -eu

missing=""
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-packages: missing Debian packages:$missing; run as root or install them: apt-get install -y$missing" >&2
    exit 1
fi
echo "system-packages: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # the list is meant to split into package names
apt-get install -y -q --no-install-recommends $missing
