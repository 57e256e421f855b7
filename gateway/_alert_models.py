"""The /docs models of the alert JSON bodies (`mesh_common.alert_json` builds the bodies)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mesh_common.alert_json import State
from mesh_common.severity import SEVERITY_CHOICES

_FORBID = ConfigDict(extra="forbid")


class AlertOut(BaseModel):
    """One alert instance: one per rule and service (and kind)."""

    model_config = _FORBID

    id: str = Field(description="The instance: rule id, service and kind.")
    rule_id: str = Field(description="The rule's id.")
    name: str = Field(description="The rule's name (alertname).")
    service_name: str = Field(description="The service the alert is about.")
    service_type: str = Field(description="That service's type.")
    kind: str = Field(description="The kind of event, for a rule on kinds; empty otherwise.")
    state: State = Field(
        description="pending, firing or resolved (inactive: a dropped pending alert, in changes)."
    )
    severity: str = Field(description=f"{SEVERITY_CHOICES}.")
    value: float | None = Field(description="The figure's latest value (null for status).")
    value_text: str = Field(description="The figure's latest value for status.")
    active_time: str | None = Field(description="When the condition started to hold (UTC).")
    fired_time: str | None = Field(description="When the alert fired; null while pending.")
    resolved_time: str | None = Field(description="When it resolved; null unless resolved.")
    resolved_by: str = Field(description="Who resolved it by hand; empty when its condition did.")
    labels: dict[str, str] = Field(description="alertname, service, type, severity, ...")
    annotations: dict[str, str] = Field(description="The rule's, placeholders filled in.")


class AlertRuleOut(BaseModel):
    """One alert rule, in the native form (it can be posted again as it is, less id/source)."""

    model_config = _FORBID

    id: str = Field(description="The rule's id.")
    name: str = Field(description="The alert's name.")
    figure: str = Field(description="The row figure watched.")
    comparator: str = Field(description=">, >=, <, <=, == or !=.")
    threshold: float = Field(description="The number compared with.")
    threshold_text: str = Field(description="The text compared with (status rules).")
    clear_threshold: float | None = Field(description="Hysteresis: where a firing alert resolves.")
    for_seconds: float = Field(description="How long the condition must hold before firing.")
    keep_firing_for_seconds: float = Field(description="How long it keeps firing afterwards.")
    severity: str = Field(description=f"{SEVERITY_CHOICES}.")
    service_names: list[str] = Field(description="Only these services; empty means all.")
    service_types: list[str] = Field(description="Only services of these types.")
    kinds: list[str] = Field(description="The kinds of event watched; empty: the whole service.")
    labels: dict[str, str] = Field(description="Labels added to every alert.")
    annotations: dict[str, str] = Field(description="Annotations with placeholders.")
    source: str = Field(description="config (read-only) or api.")


class AlertRuleList(BaseModel):
    """The body of `GET /api/v1/alerts/rules`."""

    model_config = _FORBID

    rules: list[AlertRuleOut] = Field(description="Every rule in force, configured ones first.")
    count: int = Field(description="How many rules.")


class ActiveAlerts(BaseModel):
    """The body of `GET /api/v1/alerts/active`."""

    model_config = _FORBID

    alerts: list[AlertOut] = Field(description="Firing first, then pending (then resolved).")
    firing: int = Field(description="How many alerts are firing.")
    pending: int = Field(description="How many alerts are pending.")
    sequence: int = Field(description="The aggregator's latest alert change seen (resume point).")
    timestamp: str = Field(description="ISO 8601 UTC time of this answer.")


class AlertError(BaseModel):
    """The body of a refused alert request."""

    detail: str = Field(description="What was wrong, naming the field where there is one.")
    field: str | None = Field(default=None, description="The offending field of the body.")
