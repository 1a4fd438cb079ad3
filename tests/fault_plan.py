"""Faults tests/fault_proxy.py injects on purpose, and what it observed while serving.

Faults are evenly spaced rather than random: with rate r, arriving request k is hit when
floor((k + 1) r) > floor(k r). A test then knows exactly how many requests fail (rate 0.5:
every second one), and a client that retries sequentially never meets two faults in a row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

KINDS = ("error", "malformed", "slow")


@dataclass
class FaultPlan:
    error_rate: float = 0.0      # reply HTTP 500
    malformed_rate: float = 0.0  # reply HTTP 200 with a body that is not valid JSON
    slow_rate: float = 0.0       # wait slow_s before serving (a client timeout then fires)
    slow_s: float = 0.0

    def __post_init__(self):
        for kind in KINDS:
            rate = getattr(self, f"{kind}_rate")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{kind}_rate={rate} must be in [0, 1]")
        if self.slow_s < 0:
            raise ValueError(f"slow_s={self.slow_s} must be >= 0")


@dataclass
class ServerStats:
    in_flight: int = 0
    max_in_flight: int = 0       # most chat requests the server held at once
    requests: int = 0            # chat requests received
    completed: int = 0           # answered with a generation
    injected: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    completion_tokens: int = 0

    def enter(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def as_dict(self) -> dict:
        return asdict(self)


class FaultInjector:
    def __init__(self, plan: FaultPlan | None = None):
        self.set_plan(plan or FaultPlan())

    def set_plan(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._arrived = 0

    def draw(self) -> set[str]:
        """The faults for the next arriving request."""
        k = self._arrived
        self._arrived += 1
        hits = set()
        for kind in KINDS:
            rate = getattr(self.plan, f"{kind}_rate")
            if int((k + 1) * rate) > int(k * rate):
                hits.add(kind)
        return hits
