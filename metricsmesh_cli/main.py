"""Entry point of the `metrics-mesh` console script."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the `metrics-mesh` command line and return its exit status."""
    args = sys.argv[1:] if argv is None else argv
    print(
        "metrics-mesh: the command line is not built yet "
        f"(asked for: {' '.join(args) or 'nothing'}); see the open issues.",
        file=sys.stderr,
    )
    return 2
