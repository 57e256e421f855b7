"""Alert rules in the aggregator: evaluation on every snapshot, persistence, delivery.

The alert RPCs of AggregatorService are served from here too.

rules.py     a rule and its validation (config tables and AlertRule messages)
engine.py    the pure evaluation: (rules, snapshot, previous states, now) -> states, changes
store.py     rules created at run time and alert states, in one sqlite file
delivery.py  Alertmanager API v2 and a plain webhook: sends, resends, retries
manager.py   the observer that ties them together and feeds the streams
service.py   ListAlertRules, CreateAlertRule, DeleteAlertRule, ListAlerts, ResolveAlert,
             StreamAlerts
settings.py  the [alerts] table
"""
