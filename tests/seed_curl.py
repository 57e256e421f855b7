"""The curl commands of a requirement document's section, read from it to run as written.

`curl_commands("003", "Querying Metrics")` is every command of the first ```bash block under
that heading, as written (continuation lines and quoted newlines kept; comments left out);
`run_curl` runs one with real
`curl` in bash, its `http://localhost:8000` pointed at the gateway under test (the only change).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess

from tests.seeds import document

SEED_URL = "http://localhost:8000"
"""Where the documents' examples expect the API."""


def curl_commands(seed: str, heading: str) -> list[str]:
    """The commands of the first ```bash block under `### heading` of document `seed`."""
    text = document(seed)
    start = text.index(f"### {heading}\n")
    block = re.search(r"```bash\n(.*?)```", text[start:], flags=re.DOTALL)
    assert block is not None, f"document {seed}: no ```bash block under {heading!r}"
    commands: list[str] = []
    pending = ""
    for line in block.group(1).splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line
        if pending.endswith("\\\n") or not _complete(pending):
            continue  # a continuation line, or a quote still open
        commands.append(pending.strip())
        pending = ""
    assert not pending, f"document {seed}: an unfinished command under {heading!r}"
    return commands


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # "No closing quotation"
        return False
    return True


async def run_curl(command: str, base_url: str) -> tuple[int, str]:
    """Run `command` (a curl line) against `base_url`; (HTTP status, body)."""
    assert command.startswith("curl ") and SEED_URL in command, command
    pointed = command.replace(SEED_URL, base_url, 1)
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f"{pointed} --silent --show-error --write-out '\\n%{{http_code}}'",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    body, _, status = out.decode().rpartition("\n")
    return int(status), body
