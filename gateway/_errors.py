"""The gateway's errors.

MeshError (mesh_common.errors)
 └── GatewayError
      ├── ProtocolError   a WebSocket client message the protocol cannot accept
      ├── AlertFormError  an alert rule body (REST) that cannot be mapped onto an AlertRule
      ├── AlertRequestError  an alert request answered with an HTTP error (status, detail)
      ├── HistoryCallError   a history call the aggregator refused or could not answer
      ├── IngestCallError    an ingestion call (Ingest, ListPushed, GetIngestStats) that failed
      ├── OtlpHttpError      an OTLP/HTTP request answered with an error (status, gRPC code)
      └── TicketLimitError   a stream ticket refused: too many unspent (429 per identity, 503)
Configuration errors are mesh_common's ConfigError, and a request parameter that cannot be
read its ParamError, shared by every component.
"""

from __future__ import annotations

import grpc

from mesh_common.errors import MeshError


class GatewayError(MeshError):
    """Base class of every error the gateway raises on purpose."""


class ProtocolError(GatewayError):
    """A client message the WebSocket protocol cannot accept; the text goes back to the client."""


class AlertFormError(GatewayError, ValueError):
    """An alert rule body that cannot be mapped onto an AlertRule; names the field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        """The offending field of the body (dotted for nested ones, `body` for the whole)."""
        self.reason = reason


class AlertRequestError(GatewayError):
    """An alert endpoint's request that gets an error answer: its HTTP status and detail."""

    def __init__(
        self, status: int, detail: str, *, field: str | None = None, challenge: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        """The offending field of the body, when there is one."""
        self.challenge = challenge
        """The `WWW-Authenticate` value of a 401."""


class HistoryCallError(GatewayError):
    """A history call to the aggregator that failed: its gRPC code, why, the field at fault."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        """The gRPC status code's name (INVALID_ARGUMENT, DEADLINE_EXCEEDED, ...)."""
        self.detail = detail
        self.field = field
        """The request field a BadRequest field violation named (`query`, `step`, ...)."""


class IngestCallError(GatewayError):
    """An ingestion call to the aggregator that failed: the HTTP status that answers it, why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        """422, 401, 403, 429, 503 (unreachable, ingestion disabled), 504 or 502."""
        self.detail = detail


class OtlpHttpError(GatewayError):
    """An OTLP/HTTP request answered with an error: its HTTP status, why, and the gRPC code.

    The code goes into the `google.rpc.Status` body OTLP/HTTP answers errors with.
    """

    def __init__(self, status: int, detail: str, code: grpc.StatusCode) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code


class TicketLimitError(GatewayError):
    """A stream ticket refused because too many are unspent: its HTTP status and Retry-After."""

    def __init__(self, status: int, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.status = status
        """429 (one identity's limit) or 503 (the gateway's)."""
        self.retry_after = retry_after
        """Whole seconds until the oldest unspent ticket concerned runs out."""
