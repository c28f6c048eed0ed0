"""The allowlist in the agent's own config: the relay cannot run anything else."""

from __future__ import annotations

import pytest
from agent_fakes import FakeRelay

from relay_agent.config import ConfigError, parse_allow
from relay_agent.policy import refusal


async def test_a_command_outside_the_allowlist_is_refused_not_run(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    marker = tmp_path / "ran"
    allow = parse_allow({"commands": [r"echo [a-z]+", r"/usr/local/bin/backup\.sh"]})
    refused = relay.add_run(f"echo pwned > {marker}")
    allowed = relay.add_run("echo fine")
    await start_agent(make_config(allow=allow))

    await relay.wait_until(lambda: refused.status and allowed.status, what="finishes")

    assert refused.finish == {
        "outcome": "refused",
        "exit_code": None,
        "signal": None,
        "error": "command does not match any pattern in the agent's allowlist",
    }
    assert refused.starts == 0
    assert refused.outputs == {}
    assert not marker.exists()
    assert allowed.text() == "fine\n"
    assert allowed.finish["outcome"] == "exited"


async def test_a_dangerous_env_is_refused_under_an_allowlist(
    relay: FakeRelay, make_config, start_agent
):
    allow = parse_allow({"commands": ["true"]})
    run = relay.add_run("true", env={"LD_PRELOAD": "/tmp/evil.so"})
    await start_agent(make_config(allow=allow))

    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish["outcome"] == "refused"
    assert run.finish["error"] == (
        "environment variable LD_PRELOAD is not allowed by the agent's allowlist"
    )


def test_commands_must_match_whole():
    allow = parse_allow({"commands": [r"echo [a-z]+"]})

    assert refusal(allow, "echo hello", "/", {}) is None
    assert refusal(allow, "echo hello; rm -rf /", "/", {}) is not None
    assert refusal(allow, "echo hello\nrm -rf /", "/", {}) is not None
    assert refusal(allow, "xecho hello", "/", {}) is not None
    assert refusal(None, "rm -rf /", "/", {}) is None


def test_workdirs_are_compared_by_whole_path_components(tmp_path):
    (tmp_path / "app" / "sub").mkdir(parents=True)
    (tmp_path / "app2").mkdir()
    allow = parse_allow({"commands": [".*"], "workdirs": [str(tmp_path / "app")]})

    assert refusal(allow, "ls", str(tmp_path / "app"), {}) is None
    assert refusal(allow, "ls", str(tmp_path / "app" / "sub"), {}) is None
    assert refusal(allow, "ls", str(tmp_path / "app2"), {}) == (
        f"working directory {tmp_path / 'app2'} is not in the agent's allowlist"
    )
    assert refusal(allow, "ls", str(tmp_path / "app" / ".." / "app2"), {}) is not None


def test_env_patterns_replace_the_default_deny_list():
    default = parse_allow({"commands": [".*"]})
    explicit = parse_allow({"commands": [".*"], "env": ["APP_.*"]})

    assert refusal(default, "x", "/", {"APP_MODE": "1", "TZ": "UTC"}) is None
    for name in ("PATH", "LD_LIBRARY_PATH", "BASH_ENV", "PYTHONPATH", "IFS"):
        assert refusal(default, "x", "/", {name: "v"}) is not None, name
    assert refusal(explicit, "x", "/", {"APP_MODE": "1"}) is None
    assert refusal(explicit, "x", "/", {"TZ": "UTC"}) is not None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, "allow.commands is required"),
        ({"commands": "echo"}, "must be a list"),
        ({"commands": [], "workdirs": ["relative"]}, "absolute paths"),
        ({"commands": [], "extra": 1}, "unknown key 'extra'"),
    ],
)
def test_bad_allowlists_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_allow(value)


def test_an_empty_command_list_refuses_everything():
    assert refusal(parse_allow({"commands": []}), "true", "/", {}) is not None


async def test_a_workdir_sent_by_the_relay_must_be_in_the_allowlist(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    config = make_config()
    config.allow = parse_allow({"commands": ["pwd"], "workdirs": [config.workdir]})
    inside = relay.add_run("pwd")
    outside = relay.add_run("pwd", workdir=str(tmp_path))
    await start_agent(config)

    await relay.wait_until(lambda: inside.status and outside.status, what="finishes")

    assert inside.text() == f"{config.workdir}\n"
    assert outside.finish["outcome"] == "refused"
    assert outside.finish["error"] == (
        f"working directory {tmp_path} is not in the agent's allowlist"
    )
