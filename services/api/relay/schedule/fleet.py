"""Which agents can take a run now, and which one should."""

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import count


@dataclass(frozen=True)
class FleetAgent:
    id: int
    labels: frozenset[str]


class Fleet:
    """The online agents at one moment, with the work each already holds.

    A run for "any agent with these labels" goes to the matching agent holding
    the fewest active runs; ties go to the one picked least recently, so a
    quiet fleet still takes turns instead of sending everything to one machine.
    """

    def __init__(
        self,
        agents: Iterable[FleetAgent],
        load: dict[int, int],
        turns: "Turns | None" = None,
    ) -> None:
        self.agents = {agent.id: agent for agent in agents}
        self.load = {agent_id: load.get(agent_id, 0) for agent_id in self.agents}
        self.turns = turns or Turns()
        self._matching: dict[frozenset[str], list[FleetAgent]] = {}

    def is_online(self, agent_id: int) -> bool:
        return agent_id in self.agents

    def matching(self, labels: Iterable[str]) -> list[FleetAgent]:
        # Thousands of fires in a tick ask about a few label sets: keep answers.
        wanted = frozenset(labels)
        found = self._matching.get(wanted)
        if found is None:
            found = [agent for agent in self.agents.values() if wanted <= agent.labels]
            self._matching[wanted] = found
        return found

    def choose(self, labels: Iterable[str], avoid: int | None = None) -> int | None:
        """The agent to give one run to, preferring any but `avoid`."""
        candidates = self.matching(labels)
        if not candidates:
            return None

        others = [agent for agent in candidates if agent.id != avoid]
        chosen = min(others or candidates, key=self._preference)
        self.assign(chosen.id)
        return chosen.id

    def assign(self, agent_id: int) -> None:
        self.load[agent_id] = self.load.get(agent_id, 0) + 1
        self.turns.take(agent_id)

    def _preference(self, agent: FleetAgent) -> tuple[int, int, int]:
        return (self.load[agent.id], self.turns.last(agent.id), agent.id)


class Turns:
    """When each agent was last given a run; kept across scheduler ticks."""

    def __init__(self) -> None:
        self._counter = count(1)
        self._last: dict[int, int] = {}

    def take(self, agent_id: int) -> None:
        self._last[agent_id] = next(self._counter)

    def last(self, agent_id: int) -> int:
        return self._last.get(agent_id, 0)
