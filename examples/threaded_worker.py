"""A plain threaded worker (no asyncio) with the agent embedded: python examples/threaded_worker.py

Worker threads take jobs from a queue and observe each one as `job`, with its duration and
whether it failed; the producer counts `message` per job it enqueues (untimed).
`AgentServerThread` serves the agent from its own thread, so the rest of the program stays
ordinary blocking code.

    python examples/threaded_worker.py --agent-port 18015
    grpcurl -plaintext localhost:18015 metricsmesh.v1.EventRateService/GetEventRate
"""

from __future__ import annotations

import argparse
import queue
import random
import signal
import threading
import time

from agent import AgentServerThread, EventTracker

tracker = EventTracker("log-aggregator", kinds=["message", "job"])


def worker(jobs: queue.Queue[int], stop: threading.Event) -> None:
    done = tracker.counter("job")  # keep the counter: skips the kind lookup on every event
    while not stop.is_set():
        try:
            job = jobs.get(timeout=0.1)
        except queue.Empty:
            continue
        started = time.monotonic()
        time.sleep(0.001)  # the work; one job in 50 fails
        done.observe(time.monotonic() - started, error=job % 50 == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-port", type=int, default=18015, help="agent port (18015)")
    parser.add_argument("--rate", type=float, default=50.0, help="jobs per second (50)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    jobs: queue.Queue[int] = queue.Queue()
    threads = [threading.Thread(target=worker, args=(jobs, stop)) for _ in range(4)]
    with AgentServerThread(tracker, port=args.agent_port) as agent:
        print(f"agent serving on {agent.address}", flush=True)
        for thread in threads:
            thread.start()
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        produced = 0
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                jobs.put(produced)
                tracker.record("message")
                produced += 1
                time.sleep(random.expovariate(args.rate))
        except KeyboardInterrupt:
            pass
        stop.set()
        for thread in threads:
            thread.join()
    print(f"stopped after {produced} jobs", flush=True)


if __name__ == "__main__":
    main()
