"""The demo fleet: fifteen small FastAPI services with embedded agents, run by a supervisor.

`metrics-mesh demo` starts one process per instance of every registry entry (`service.py`;
`instances.py`: one service runs replicas), a fake upstream that the data services fetch from
(`upstream.py`), the aggregator and the gateway, and stops them all on Ctrl-C. `profiles.py`
says how busy each service is; `plan.py` which ones misbehave.
"""
