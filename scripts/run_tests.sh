#!/usr/bin/env bash
# `make test`: the Odoo-free suite (always), then the Odoo suite (when an Odoo 19 tree is found), then one
# summary line `make test: N passed, N failed`. Exits non-zero on any failure and never passes on zero tests.
source "$(dirname "$0")/lib.sh"

find_odoo
[ -z "$ODOO_SRC" ] || ensure_system
ensure_venv

total_passed=0 total_failed=0
add_counts() { total_passed=$((total_passed + $1)); total_failed=$((total_failed + $2)); }

# ---------------------------------------------------------------------------------------------- (a) pytest
say "Odoo-free suite: pytest tests"
junit="$VAR/pytest-junit.xml"
rm -f "$junit"
set +e
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider --junitxml="$junit"
rc=$?
set -e
read -r p f < <("$VENV/bin/python" - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 0); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
n = lambda key: sum(int(s.get(key, 0)) for s in suites)
print(n("tests") - n("failures") - n("errors") - n("skipped"), n("failures") + n("errors"))
PY
)
case $rc in
    0) ;;
    5) echo "pytest: no tests collected (exit 5); that is a failure, not a pass"; f=$((f + 1)) ;;
    *) [ "$f" -gt 0 ] || f=1 ;;   # an error pytest did not count as a test (collection, usage, crash)
esac
echo "Odoo-free suite: $p passed, $f failed (pytest exit $rc)"
add_counts "$p" "$f"

# ---------------------------------------------------------------------------------------------- (b) Odoo
if [ -z "$ODOO_SRC" ]; then
    n=$("$VENV/bin/python" scripts/count_odoo_tests.py 2>/dev/null || echo '?')
    echo "!!! ODOO SUITE NOT RUN: $ODOO_MISSING; $n Odoo tests skipped !!!"
else
    set +e
    scripts/run_odoo_tests.sh 2>&1 | tee "$VAR/odoo-suite.out"
    rc=${PIPESTATUS[0]}
    set -e
    read -r p f < <(sed -n 's/^counts: //p' "$VAR/odoo-suite.out" | awk '{p+=$1; f+=$2} END {print p+0, f+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    echo "Odoo suite (with install and upgrade checks): $p passed, $f failed"
    add_counts "$p" "$f"
fi

echo "make test: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ] && [ "$total_passed" -gt 0 ]
