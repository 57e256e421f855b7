"""The seeds' JavaScript WebSocket clients, as written, in real headless Chromium.

Each snippet, read from its requirement document (tests/seeds.py), runs in a page of the
gateway's own origin with only its URL replaced; a listener added after it collects what the
page received, and the page's console lines (the snippets' own `console.log`) are asserted
too. The screenshot shows what the page got.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import artifact, open_page
from tests.eventually import eventually
from tests.gateway_mesh import Mesh, running_mesh
from tests.seeds import javascript_client, run_snippet

SERVICES = 15


@pytest.fixture
async def console_page(mesh: Mesh) -> AsyncIterator[Any]:
    """A Chromium page on the gateway's origin (the WebSocket's origin check lets it in)."""
    async with open_page(mesh.url + "/health", width=1100, height=900) as console_page:
        console_page.console_lines = []
        console_page.console_errors = []
        console_page.on(  # the snippets' console.log lines (not the browser's own, e.g. a favicon)
            "console",
            lambda message: (
                message.type == "log" and console_page.console_lines.append(message.text)
            ),
        )
        console_page.on(
            "console",
            lambda message: (
                message.type == "error" and console_page.console_errors.append(message.text)
            ),
        )
        yield console_page


async def counted(mesh: Mesh, service: str, events: int) -> None:
    """Wait until the gateway serves `events` events of `service`."""

    async def probe() -> bool:
        body = await mesh.metrics()
        rows = {row["service_name"]: row for row in body["active_apis"]}
        return service in rows and rows[service]["total_events"] == events

    await eventually(probe, what=f"{events} events of {service}")


async def show(console_page: Any, title: str, received: list[dict[str, Any]], name: str) -> None:
    """Write what the page received into it, and take the screenshot."""
    lines = [json.dumps(message)[:160] for message in received]
    await console_page.evaluate(
        """([title, lines, consoleLines]) => {
          document.body.innerHTML = '';
          const h = document.createElement('h3');
          h.textContent = title;
          const pre = document.createElement('pre');
          pre.style.fontSize = '11px';
          pre.textContent = 'console:\\n' + consoleLines.join('\\n') + '\\n\\nreceived:\\n'
            + lines.join('\\n');
          document.body.append(h, pre);
        }""",
        [title, lines, console_page.console_lines[:12]],
    )
    await console_page.screenshot(path=artifact(name), full_page=True)


async def test_seed_002s_javascript_client_gets_confirmations_and_batches(
    mesh: Mesh, console_page: Any
) -> None:
    mesh.tracker("weather-api").record(n=5)
    await counted(mesh, "weather-api", 5)
    done = "received.filter((m) => m.type === 'metric_batch').length >= 4"
    received = await console_page.evaluate(
        run_snippet(javascript_client("002"), "ws://localhost:8765", done), mesh.ws_url
    )
    kinds = [message["type"] for message in received]
    assert kinds[0] == "welcome" and "error" not in kinds
    confirmed = next(m for m in received if m["type"] == "subscription_confirmed")
    assert confirmed["metric_types"] == ["system", "agent", "business"]
    interval = next(m for m in received if m["type"] == "update_interval_set")
    assert interval["interval_seconds"] == 2
    updated = next(m for m in received if m["type"] == "filters_updated")
    assert updated["filters"] == {"agent_ids": ["agent_1", "agent_2"]}
    assert [entry["agent_id"] for entry in updated["ignored"]] == ["agent_1", "agent_2"]
    assert all(entry["reason"].startswith("no such service") for entry in updated["ignored"])
    assert updated["applied"]["service_names"] == []  # the whole fleet, never an empty one
    batches = [m for m in received if m["type"] == "metric_batch"]
    # Each snapshot: 1 system + 15 agent + 15 business items, in batches of 20.
    assert [batch["count"] for batch in batches[-2:]] == [20, 11]
    items = [item for batch in batches[-2:] for item in batch["data"]]
    assert [item["metric_type"] for item in items] == (
        ["system"] + ["agent"] * SERVICES + ["business"] * SERVICES
    )
    weather = next(
        item["data"]
        for item in items
        if item["metric_type"] == "agent" and item["data"]["service_name"] == "weather-api"
    )
    assert weather["total_events"] == 5
    sequences = sorted({item["sequence"] for batch in batches for item in batch["data"]})
    assert len(sequences) >= 2
    assert console_page.console_lines[0] == "Connected to metrics stream"
    assert "Batch: 20 metrics" in console_page.console_lines
    assert "Batch: 11 metrics" in console_page.console_lines
    await show(console_page, "seed 002's JavaScript client", received, "ws-seed-002-js.png")


async def test_seed_002s_other_javascript_messages_in_the_browser(
    mesh: Mesh, console_page: Any
) -> None:
    # "Filtering", "Troubleshooting" and "Message Protocol" messages, as written.
    snippet = """
const ws = new WebSocket('ws://localhost:8765');
ws.onopen = () => {
    ws.send(JSON.stringify({
        type: 'set_filters',
        filters: {
            fields: ['throughput_tps', 'error_rate', 'cpu_utilization']
        }
    }));
    ws.send(JSON.stringify({
        type: 'subscribe',
        metric_types: ['all']
    }));
    ws.send(JSON.stringify({
        type: 'unsubscribe',
        metric_types: ['hero']
    }));
    ws.send(JSON.stringify({
        type: 'set_update_interval',
        interval_seconds: 1.0  // Update every second
    }));
    ws.send(JSON.stringify({ type: 'ping' }));
};
"""
    # Done at the first batch after the last reply (a batch may come between two replies).
    done = "received.some((m) => m.type === 'pong') && received.at(-1).type === 'metric_batch'"
    received = await console_page.evaluate(
        run_snippet(snippet, "ws://localhost:8765", done), mesh.ws_url
    )
    by_type = {message["type"]: message for message in received}
    assert "error" not in by_type
    assert by_type["filters_updated"]["applied"]["fields"] == ["throughput_tps", "error_rate"]
    assert by_type["filters_updated"]["ignored"][0]["field"] == "cpu_utilization"
    assert by_type["subscription_confirmed"]["metric_types"] == ["all"]
    assert by_type["unsubscription_confirmed"]["metric_types"] == ["hero"]
    assert "hero" not in by_type["unsubscription_confirmed"]["subscriptions"]
    assert by_type["update_interval_set"]["interval_seconds"] == 1.0
    assert by_type["pong"]["timestamp"].endswith("Z")
    batch = by_type["metric_batch"]
    system = next(item for item in batch["data"] if item["metric_type"] == "system")
    assert set(system["data"]) == {"throughput_tps", "error_rate"}
    await show(console_page, "seed 002's filtering messages", received, "ws-seed-002-filters.png")


async def test_seed_003s_javascript_client_gets_data_metrics(mesh: Mesh, console_page: Any) -> None:
    mesh.tracker("carbon-intensity-service").record(n=3)
    await counted(mesh, "carbon-intensity-service", 3)
    done = (
        "received.filter((m) => m.type === 'subscription_confirmed').length === 2"
        " && received.at(-1).type === 'metric_update'"
    )
    received = await console_page.evaluate(
        run_snippet(javascript_client("003"), "ws://localhost:8000/ws/metrics", done), mesh.ws_url
    )
    confirmations = [m for m in received if m["type"] == "subscription_confirmed"]
    assert [m["subscription"] for m in confirmations] == ["metrics", "alerts"]
    update = received[-1]
    assert update["type"] == "metric_update"
    metrics = update["data"]["metrics"]
    carbon = [
        metric
        for metric in metrics
        if metric["labels"].get("service") == "carbon-intensity-service"
        and metric["name"] == "total_events"
    ]
    assert carbon and carbon[0]["value"] == 3 and carbon[0]["type"] == "counter"
    assert any(line.startswith("New metrics:") for line in console_page.console_lines)
    await show(console_page, "seed 003's JavaScript client", received, "ws-seed-003-js.png")


# Seed 002's test client page is served from its own origin ("Then open the test client in
# your browser: http://localhost:5000/websocket_test_client.html"): here a real HTTP server on
# localhost and a free port serves it, so the WebSocket's Origin header is that page's.
SEED_002_PAGE = "websocket_test_client.html"
REFUSED = """
(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onopen = () => resolve('open');
  ws.onclose = (event) => resolve('closed ' + event.code);
})
"""


@pytest.fixture
def seed_page(tmp_path: Path) -> Iterator[str]:
    """The URL of seed 002's test client page on its own origin, http://localhost:PORT."""
    (tmp_path / SEED_002_PAGE).write_text("<!doctype html><h3>seed 002 test client</h3>")
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/{SEED_002_PAGE}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the page without logging each request."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


async def test_the_seeds_test_page_origin_is_refused_unless_configured(
    mesh: Mesh, console_page: Any, seed_page: str
) -> None:
    await console_page.goto(seed_page)
    assert (await console_page.evaluate("location.origin")).startswith("http://localhost:")
    # A page of another origin must not read the fleet with its visitor's browser (CSWSH).
    assert await console_page.evaluate(REFUSED, mesh.ws_url) == "closed 1006"
    handshake = [line for line in console_page.console_errors if "WebSocket" in line]
    assert handshake and "403" in handshake[0], console_page.console_errors


async def test_the_seeds_test_page_works_once_its_origin_is_in_cors_origins(
    seed_page: str,
) -> None:
    origin = seed_page.rsplit("/", 1)[0]
    async with running_mesh(cors_origins=(origin,)) as mesh:
        await mesh.metrics()
        async with open_page(seed_page) as console_page:
            done = "received.some((m) => m.type === 'metric_batch')"
            received = await console_page.evaluate(
                run_snippet(javascript_client("002"), "ws://localhost:8765", done), mesh.ws_url
            )
    kinds = [message["type"] for message in received]
    assert kinds[0] == "welcome" and "subscription_confirmed" in kinds
    assert "metric_batch" in kinds


async def test_a_standalone_html_file_works_once_null_is_in_cors_origins(tmp_path: Path) -> None:
    # Seed 002's "standalone HTML file", opened from disk: its Origin is "null".
    page_file = tmp_path / "websocket_test_client.html"
    page_file.write_text("<!doctype html><h3>seed 002 test client</h3>")
    for origins, verdict in (((), "closed 1006"), (("null",), "open")):
        async with running_mesh(cors_origins=origins) as mesh:
            await mesh.metrics()
            async with open_page(page_file.as_uri()) as console_page:
                assert await console_page.evaluate(REFUSED, mesh.ws_url) == verdict, origins
