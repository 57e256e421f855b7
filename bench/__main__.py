"""Run the benchmarks: every `bench/bench_*.py` module's `main()`, one after the other.

python -m bench              # all of them
python -m bench agent gateway  # only the modules whose name contains one of these words
python -m bench soak --minutes 10  # the fault loop (not part of "all")
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    if argv[:1] == ["soak"]:  # the fault loop: minutes long, never part of "all"
        importlib.import_module("bench.bench_soak").main(argv[1:])
        return 0
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith("bench_") and info.name != "bench_soak"
    )
    chosen = [name for name in names if not argv or any(word in name for word in argv)]
    if not chosen:
        print(f"no benchmark matches {argv}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as error:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"!!! {name} failed: {error!r}", flush=True)
        print(f"--- {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
