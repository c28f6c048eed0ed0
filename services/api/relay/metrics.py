"""What the relay counts, for Prometheus: fires, runs, lateness, agents.

One registry per application, so that tests (and several apps in one
process) never share counters.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.fires = Counter(
            "relay_fires_total",
            "Fires decided, by what they became (pending, skipped, cancelled).",
            ["status"],
            registry=self.registry,
        )
        self.fire_lateness = Histogram(
            "relay_fire_lateness_seconds",
            "How long after its scheduled time a fire was decided.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "relay_runs_finished_total",
            "Runs ended by their agent's report, by final status.",
            ["status"],
            registry=self.registry,
        )
        self.runs_lost = Counter(
            "relay_runs_lost_total",
            "Runs the relay took back from their agent (lease expired, agent offline).",
            registry=self.registry,
        )
        self.claims = Counter(
            "relay_runs_claimed_total",
            "Runs handed to agents.",
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "relay_scheduler_tick_seconds",
            "Time one scheduler pass took.",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=self.registry,
        )
        self.agents = Gauge(
            "relay_agents",
            "Registered agents, by whether they heartbeat.",
            ["status"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "relay_scheduler_leader",
            "1 while this relay's scheduler decides fires, else 0.",
            registry=self.registry,
        )
