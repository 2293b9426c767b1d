#!/usr/bin/env python3
"""Counts individual test cases from a meson test log.

Every test program speaks TAP (cmocka with CMOCKA_MESSAGE_OUTPUT=TAP, the shell
tests by hand), so each `ok`/`not ok` line is one real test case. A program that
crashed or timed out before printing its plan counts as one failure.
Prints the closing line CI reads: `N passed, N failed, N skipped`. Above it: each
failed case with the first diagnostic lines it printed, and every `# note:` line
(a test's way of saying something a reader of the CI output must see, such as a
tier that ran on a weaker vehicle than intended).
"""
import json
import re
import sys

TAP_LINE = re.compile(r'^(not ok|ok)\b(.*)$')
NOTE_LINE = re.compile(r'^#\s*note:\s*(.*)$')  # lower case: a test's own word
DIAGNOSTICS_PER_FAILURE = 6  # the first 3, then the first 3 that name an error
ERROR_WORDS = re.compile(r'error|fail|cannot|check', re.I)
DIAGNOSTICS_IN_ALL = 40  # the end of a CI log is what gets read: keep the count in view


def main(path):
    passed = failed = skipped = 0
    failures = []
    notes = []
    with open(path) as f:
        for line in f:
            test = json.loads(line)
            name = test.get('name', '?')
            result = test.get('result', '')
            returncode = test.get('returncode', 0)
            out = test.get('stdout', '') or ''
            cases = own_failed = own_skipped_not_ok = 0
            diagnostics = None  # the lines after a failed case, until the next case
            for raw in out.splitlines():
                line = raw.strip()
                note = NOTE_LINE.match(line)
                if note:
                    notes.append(f'{name}: {note.group(1)}')
                m = TAP_LINE.match(line)
                if not m:
                    if diagnostics is not None and line.startswith('#'):
                        diagnostics.append(line)
                    continue
                diagnostics = None
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
                    diagnostics = []
                    failures.append((f'{name}:{rest.strip()}', diagnostics))
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
                failures.append((f'{name}: {result} (exit status {returncode})', []))
    for note in notes:
        print(f'NOTE {note}')
    budget = DIAGNOSTICS_IN_ALL
    for fail, diagnostics in failures:
        print(f'FAILED {fail}')
        half = DIAGNOSTICS_PER_FAILURE // 2
        errors = [d for d in diagnostics[half:] if ERROR_WORDS.search(d)]
        diagnostics = diagnostics[:half] + errors[:half]
        for line in diagnostics[:budget]:
            print(f'    {line}')
        budget -= min(budget, len(diagnostics))
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else 'build/meson-logs/testlog.json'))
