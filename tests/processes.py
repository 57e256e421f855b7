"""Process-tree look-ups in /proc, for the tests (and benchmarks) that check for orphans."""

from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = {int(each) for each in children.read_text().split()}
            except OSError:
                continue
            pending.extend(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone (PID 1 here does not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
