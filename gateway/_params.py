"""The query parameters that select a view, declared once for every route that takes them.

REST, SSE and the alert list take the same `services`, `types` (and, for figures, `fields`):
comma-separated lists, read by `gateway._views.view_of_query`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

ServicesParam = Annotated[
    list[str] | None, Query(description="Only these services (comma-separated).")
]
"""`services=a,b`: only these services' rows (and alerts)."""
TypesParam = Annotated[
    list[str] | None, Query(description="Only these service types (comma-separated).")
]
"""`types=data,core`: only services of these types."""
FieldsParam = Annotated[
    list[str] | None,
    Query(description="Only these row fields (service_name, status always kept)."),
]
"""`fields=events_per_second,...`: only these row figures."""
