"""The checked-in reference configs (tests/reference_configs/) are what conf/ and r1exp's
validation produce now: a change that alters any recipe x profile dry run fails here with its
diff, until the files are regenerated and the change is reviewed as theirs (CONTRIBUTING.md)."""

from __future__ import annotations

import difflib

import pytest
from reference_configs.generate import REFERENCE_DIR, REGENERATE, references

# Enough to read what changed; the rest is one `git diff` away after regenerating.
MAX_DIFF_LINES = 60


def test_reference_configs_are_what_conf_composes_now():
    on_disk = {p.name: p.read_text() for p in REFERENCE_DIR.glob("*.yaml")}
    report = difference_report(on_disk, references())
    if report:
        pytest.fail(report, pytrace=False)


def difference_report(checked_in: dict[str, str], regenerated: dict[str, str]) -> str:
    """'' when equal; else which files differ, their unified diff cut at MAX_DIFF_LINES, and
    the command that regenerates them."""
    changed = sorted(name for name in checked_in.keys() | regenerated.keys()
                     if checked_in.get(name) != regenerated.get(name))
    if not changed:
        return ""
    where = REFERENCE_DIR.relative_to(REFERENCE_DIR.parents[1])
    diff: list[str] = []
    for name in changed:
        diff += difflib.unified_diff(
            checked_in.get(name, "").splitlines(), regenerated.get(name, "").splitlines(),
            f"{where}/{name} (checked in)" if name in checked_in else "/dev/null",
            f"{where}/{name} (regenerated)" if name in regenerated else "/dev/null",
            n=2, lineterm="")
    shown = diff[:MAX_DIFF_LINES]
    if len(diff) > MAX_DIFF_LINES:
        shown.append(f"... {len(diff) - MAX_DIFF_LINES} more diff lines")
    return "\n".join([
        f"{len(changed)} of {len(regenerated)} reference configs no longer match what conf/ "
        f"and r1exp's validation produce: {', '.join(changed)}",
        *shown,
        f"If the change is intended, regenerate them with `{REGENERATE}` and commit the "
        f"reviewed `git diff {where}` with it.",
    ])


def test_the_report_names_every_changed_file_and_stops_its_diff_at_the_limit():
    before = {"a__cpu.yaml": "".join(f"line {i}\n" for i in range(200)), "gone__cpu.yaml": "x\n"}
    after = {"a__cpu.yaml": "".join(f"line {i * 2}\n" for i in range(200)),
             "new__cpu.yaml": "y\n"}
    report = difference_report(before, after)
    assert "a__cpu.yaml, gone__cpu.yaml, new__cpu.yaml" in report.splitlines()[0]
    assert len(report.splitlines()) == 1 + MAX_DIFF_LINES + 1 + 1
    assert "more diff lines" in report and REGENERATE in report
    assert difference_report(after, after) == ""
