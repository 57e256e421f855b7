"""The requirement documents' own client code, read from them, for the tests to run as written.

The documents are `../shared/seeds/NNN_*.txt` beside the checkout (CI always has them): a test
runs a document's snippet rather than a copy that could drift from it. `javascript_client("002")`
is the first ```javascript block of seed 002 that opens a WebSocket; `run_snippet` wraps such a
snippet into a Playwright page function that collects every message it receives;
`sql_under("004", "Get service health")` is the ```sql block under that heading of seed 004.
"""

from __future__ import annotations

import re
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
"""The requirement documents: /work/shared/seeds for a checkout at /work/<name>."""
JAVASCRIPT_BLOCK = re.compile(r"^[ \t]*```javascript\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
SQL_BLOCK = re.compile(r"^[ \t]*```sql\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)

# Runs a snippet (its `const ws`), collects every message until `done(received)` says so.
HARNESS = """
(url) => new Promise((resolve) => {
  const received = [];
  %(snippet)s
  ws.addEventListener('message', (event) => {
    received.push(JSON.parse(event.data));
    if (%(done)s) {
      ws.close();
      resolve(received);
    }
  });
})
"""


def document(seed: str) -> str:
    """The text of requirement document `seed` ("002" reads 002_*.txt)."""
    found = sorted(SEEDS.glob(f"{seed}_*.txt"))
    assert len(found) == 1, f"expected one requirement document {SEEDS}/{seed}_*.txt, found {found}"
    return found[0].read_text()


def javascript_client(seed: str) -> str:
    """The first ```javascript block of document `seed` that contains `new WebSocket(`."""
    for block in JAVASCRIPT_BLOCK.findall(document(seed)):
        if "new WebSocket(" in block:
            return str(block)
    raise AssertionError(
        f"requirement document {seed} ({SEEDS}) has no ```javascript block with `new WebSocket(`"
    )


def sql_under(seed: str, heading: str) -> str:
    """The first ```sql block after the Markdown heading `heading` of document `seed`."""
    text = document(seed)
    found = re.search(rf"^#+[ \t]+{re.escape(heading)}[ \t]*$", text, re.MULTILINE)
    assert found, f"requirement document {seed} ({SEEDS}) has no heading {heading!r}"
    block = SQL_BLOCK.search(text, found.end())
    assert block, f"requirement document {seed} has no ```sql block under {heading!r}"
    return block.group(1)


def run_snippet(snippet: str, seed_url: str, done: str) -> str:
    """The page function running `snippet` with its URL replaced by the argument `url`.

    `done` is a JavaScript expression over `received` (every message so far, parsed): when it
    is true the socket closes and the function resolves to `received`.
    """
    assert snippet.count(f"'{seed_url}'") == 1, f"the snippet does not connect to {seed_url} once"
    return HARNESS % {"snippet": snippet.replace(f"'{seed_url}'", "url"), "done": done}
