"""Errors the aggregator raises, each with a message the operator can act on.

MeshError (mesh_common.errors)
 └── AggregatorError
      ├── AggregatorStateError   start/stop called in the wrong order, or shutting down
      ├── TooManySubscribers     the StreamSnapshots cap is reached
      ├── RuleError              an alert rule is refused (names the rule's field)
      ├── RuleReadOnly           a rule of the config file cannot be deleted at run time
      ├── AlertNotFound          no rule or alert has the id (a LookupError)
      ├── AlertStoreError        the alert store cannot be read or written (names the file)
      ├── RetagError             an answer's bytes cannot be re-tagged into a row (parsed instead)
      ├── HistoryStoreError      the history store cannot be opened, read or written
      ├── HistoryQueryError      a history query asks for what cannot be answered
      │    └── SelectorError     a series selector is malformed or asks for what is unsupported
      ├── RegexError             a label regex is not in the supported RE2 syntax
      ├── HistoryTimeout         a history query ran past its time limit
      ├── Refused                a pushed item is not kept (says why, names the cap's setting)
      ├── BatchTooLarge          a push holds more items than max_batch (refused whole)
      ├── UnknownType            a pushed metric is neither a gauge nor a counter
      └── RegistrationRefused    an agent's registration is not kept (RegistrationService)
           ├── RegistrationInvalid   a field is wrong (names it)
           ├── RegistrationTaken     the name or address belongs to another service or source
           ├── RegistrationsFull     max_registrations are held
           └── RegistrationUnknown   no such registration (renew: register again)
Configuration errors are mesh_common's ConfigError, shared by every component.
"""

from __future__ import annotations

from mesh_common.errors import MeshError


class AggregatorError(MeshError):
    """Base class of every error raised by the aggregator."""


class AggregatorStateError(AggregatorError):
    """A lifecycle method was called in a state where it cannot run (e.g. start twice)."""


class TooManySubscribers(AggregatorError):
    """The subscriber cap is reached; the message names the limit."""


class RuleError(AggregatorError, ValueError):
    """A rule is refused; the message names the field and the reason.

    `field` is the rule's key as the mesh file's `[[alerts.rules]]` table and the gateway's
    native JSON form spell it (`figure`, `threshold`, `for_seconds`, ...; the selectors as
    the rule's source spells them: `service_names` / `service_types` for an AlertRule
    message, `services` / `types` for a table). CreateAlertRule sends it in the status
    details (`aggregator._alerts.service`).
    """

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"rule field {field_name!r}: {reason}")
        self.field = field_name
        self.reason = reason


class RuleReadOnly(AggregatorError):
    """A rule from the config file cannot be deleted at run time."""


class AlertNotFound(AggregatorError, LookupError):
    """No rule or alert has the given id (a LookupError: KeyError's str() would quote it)."""


class AlertStoreError(AggregatorError):
    """The alert store cannot be read or written; the message names the file."""


class RetagError(AggregatorError, ValueError):
    """The bytes are not a well-formed message (or hold a group): copy by parsing instead."""


class HistoryStoreError(AggregatorError):
    """A history backend failed; the message names the database and the problem."""


class HistoryQueryError(AggregatorError, ValueError):
    """A history query cannot be answered as asked; `field` names the parameter at fault.

    The message names the limit or the part (a tier and its resolution, a figure); `field`
    (`query`, `start_time`, `end_time`, `step`, `time`) is what a BadRequest field violation
    carries, so no caller reads the message to find it.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class SelectorError(HistoryQueryError):
    """A series selector that cannot be read; names the part and where it starts.

    `position` is the 0-based character offset of the part in the selector's text (also in
    the message, as "at position N").
    """

    def __init__(self, reason: str, position: int, *, field: str = "query") -> None:
        super().__init__(f"{reason} (at position {position})", field=field)
        self.reason = reason
        self.position = position


class RegexError(AggregatorError, ValueError):
    """A label regex that is not in the supported RE2 syntax; `position` is where (0-based)."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} (at position {position} of the regex)")
        self.reason = reason
        self.position = position


class HistoryTimeout(AggregatorError):
    """A history query ran past its time limit (the query timeout or the call's deadline)."""


class Refused(AggregatorError):
    """A pushed item the ingestion path does not keep.

    `reason` says why; `limit` names the `[ingest]` setting of the cap that refused it ("" when
    the item itself was wrong).
    """

    def __init__(self, reason: str, limit: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


class BatchTooLarge(AggregatorError):
    """A push holds more items than `max_batch` (refused whole: INVALID_ARGUMENT, 422)."""


class UnknownType(AggregatorError, ValueError):
    """A pushed metric without a type (PUSHED_METRIC_TYPE_UNSPECIFIED or unknown)."""


class RegistrationRefused(AggregatorError):
    """An agent's registration, renewal or removal that the aggregator refuses (says why)."""


class RegistrationInvalid(RegistrationRefused, ValueError):
    """A field of a registration is wrong; `field` names it (RegisterRequest's spelling)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name


class RegistrationTaken(RegistrationRefused):
    """The name is another source's service, or the address another service's registration."""


class RegistrationsFull(RegistrationRefused):
    """The aggregator holds `max_registrations` registrations; the message names the setting."""


class RegistrationUnknown(RegistrationRefused, LookupError):
    """No registration of that service at that address (removed, or never held)."""
