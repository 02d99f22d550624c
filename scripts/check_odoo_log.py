#!/usr/bin/env python3
"""Read an Odoo log and judge it for ``make test``.

    check_odoo_log.py tests   LOG MODULE   the -i ... --test-tags run
    check_odoo_log.py upgrade LOG MODULE   the -u ... run

Fails on: any ERROR or CRITICAL record; a WARNING about the module (its own loggers, or a message naming it)
while installing or upgrading it, i.e. before its first test starts; and, for ``tests``, a missing
``odoo.tests.result`` summary, failures or errors in it, or zero tests. Skipped tests are listed and count as
neither. The last line printed is always ``counts: <passed> <failed>`` for the caller's totals (failed also
counts each failed check).
"""
import re
import sys

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (?P<level>[A-Z]+) (?P<db>\S+) "
                    r"(?P<logger>[\w.]+): (?P<msg>.*)$")
# A test failure logged while a test had swapped the log format: no prefix, still a failure to show.
BARE_FAILURE = re.compile(r"^(?P<level>FAIL|ERROR): (?P<msg>.*)$")
SUMMARY = re.compile(r"(?P<failed>\d+) failed, (?P<errors>\d+) error\(s\) of (?P<run>\d+) tests")


def records(path):
    current = None
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = RECORD.match(line)
            bare = not match and BARE_FAILURE.match(line)
            if match or bare:
                if current:
                    yield current
                fields = match.groupdict() if match else {"level": "ERROR", "db": "?", "logger": "?",
                                                          "msg": bare.group(0)}
                current = dict(fields, text=line.rstrip("\n"))
            elif current:
                current["text"] += "\n" + line.rstrip("\n")
    if current:
        yield current


def main(kind, path, module):
    errors, hygiene, skipped, summary, in_tests = [], [], [], None, False
    for rec in records(path):
        logger, level, msg = rec["logger"], rec["level"], rec["msg"]
        if logger.startswith(f"odoo.addons.{module}.tests") or msg == "Starting post tests":
            in_tests = True
        if in_tests and level == "INFO" and msg.startswith("skipped "):
            skipped.append(msg)
        if logger == "odoo.tests.result" and SUMMARY.search(msg):
            summary = SUMMARY.search(msg)
        if level in ("ERROR", "CRITICAL"):
            errors.append(rec["text"])
        elif level == "WARNING" and not in_tests and (
                logger.startswith(f"odoo.addons.{module}") or module in msg):
            hygiene.append(rec["text"])

    passed = failed = 0
    if kind == "tests":
        if summary is None:
            print(f"Odoo suite: no odoo.tests.result summary in {path} (the module did not load?)")
            failed += 1
        else:
            run = int(summary["run"])
            bad = int(summary["failed"]) + int(summary["errors"])
            print(f"Odoo suite: {summary['failed']} failed, {summary['errors']} error(s) of {run} tests"
                  f"{f', {len(skipped)} skipped' if skipped else ''}")
            for msg in skipped:     # a skipped test did not pass: say which, and count it as neither
                print("  " + msg)
            passed, failed = run - bad - len(skipped), bad
            if run == 0:
                print("Odoo suite: zero tests ran; that is a failure, not a pass")
                failed += 1
    for title, found in (("ERROR/CRITICAL record(s)", errors),
                         (f"WARNING(s) about {module} while installing/upgrading it", hygiene)):
        if found:
            print(f"{kind}: {len(found)} {title} in {path}:")
            for text in found:
                print("  " + text.replace("\n", "\n  "))
    if hygiene or (errors and not failed):   # errors of failing tests are already counted as those tests
        failed += 1
    print(f"counts: {passed} {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
