#!/usr/bin/env bash
# Offline checks of the shipped Prometheus and Alertmanager files: the
# scrape config and the rules load, the rule unit tests pass, the
# Alertmanager config is valid. Needs promtool and amtool (Debian:
# `apt-get install prometheus prometheus-alertmanager`). .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")"
for tool in promtool amtool; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is missing: install Debian's prometheus and prometheus-alertmanager packages" >&2
        exit 1
    fi
done
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/rules/*.yml
promtool test rules prometheus/tests/*.yml
amtool check-config alertmanager/alertmanager.yml
