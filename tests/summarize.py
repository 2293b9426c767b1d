#!/usr/bin/env python3
"""Counts individual test cases from a meson test log.

Every test program speaks TAP (cmocka with CMOCKA_MESSAGE_OUTPUT=TAP, the shell
tests by hand), so each `ok`/`not ok` line is one real test case. A program that
crashed or timed out before printing its plan counts as one failure.
Prints the closing line CI reads: `N passed, N failed, N skipped`.
"""
import json
import re
import sys

TAP_LINE = re.compile(r'^(not ok|ok)\b(.*)$')


def main(path):
    passed = failed = skipped = 0
    failures = []
    with open(path) as f:
        for line in f:
            test = json.loads(line)
            name = test.get('name', '?')
            result = test.get('result', '')
            returncode = test.get('returncode', 0)
            out = test.get('stdout', '') or ''
            cases = own_failed = own_skipped_not_ok = 0
            for raw in out.splitlines():
                m = TAP_LINE.match(raw.strip())
                if not m:
                    continue
                cases += 1
                rest = m.group(2)
                if re.search(r'#\s*skip', rest, re.I):
                    skipped += 1
                    own_skipped_not_ok += m.group(1) == 'not ok'
                elif m.group(1) == 'ok':
                    passed += 1
                else:
                    failed += 1
                    own_failed += 1
                    failures.append(f'{name}:{rest.strip()}')
            if result in ('OK', 'EXPECTEDFAIL') or own_failed:
                continue
            if result == 'SKIP' and cases == 0:
                skipped += 1
            elif own_skipped_not_ok and returncode == 0:
                # cmocka writes a skipped case as "not ok N # SKIP", which meson calls a
                # failure; the TAP directive says skip, and the program exited cleanly.
                continue
            else:
                # Crashed, timed out or exited non-zero (a sanitizer report at exit, say)
                # beyond what its own test cases said.
                failed += 1
                failures.append(f'{name}: {result} (exit status {returncode})')
    for fail in failures:
        print(f'FAILED {fail}')
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else 'build/meson-logs/testlog.json'))
