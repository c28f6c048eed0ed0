"""Fixtures for the agent tests: the fake relay, agent settings, running agents."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The helpers live next to this file; --import-mode=importlib does not add it to
# sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))

from agent_fakes import FakeRelay, RunningAgent

from relay_agent.config import AgentConfig
from relay_agent.worker import Agent

# --- fixtures -------------------------------------------------------------------


@pytest.fixture
async def relay():
    fake = FakeRelay()
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.errors == [], fake.errors


@pytest.fixture
def make_config(relay: FakeRelay, tmp_path: Path) -> Callable[..., AgentConfig]:
    """Agent settings with short timings, pointed at the fake relay."""
    workdir = tmp_path / "work"
    workdir.mkdir()

    def make(**overrides: Any) -> AgentConfig:
        settings: dict[str, Any] = {
            "server": relay.url,
            "hostname": "test-host",
            "ip": "127.0.0.1",
            "workdir": str(workdir),
            "state_dir": str(tmp_path / "state"),
            "concurrency": 4,
            "kill_grace": 0.5,
            "shutdown_grace": 0.5,
            "report_grace": 3.0,
            "claim_wait": 1,
            "retry_base": 0.05,
            "retry_max": 0.3,
        }
        settings.update(overrides)
        if "token" not in settings:
            settings["token"] = relay.add_agent(settings["hostname"])
        return AgentConfig(**settings)

    return make


@pytest.fixture
async def start_agent(make_config):
    """Start an agent in this process; every one started is stopped at the end."""
    started: list[RunningAgent] = []

    async def start(config: AgentConfig | None = None) -> RunningAgent:
        agent = Agent(config or make_config())
        running = RunningAgent(agent, asyncio.create_task(agent.run()))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()
