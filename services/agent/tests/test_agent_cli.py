"""`relay-agent enroll` and the checks `relay-agent run` makes on its settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from agent_fakes import FakeRelay, agent_command, clean_env

from relay_agent import cli
from relay_agent.config import (
    ConfigError,
    _pick_address,
    default_config_path,
    load_config,
)


async def enroll(*args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *agent_command(),
        "enroll",
        *args,
        env=clean_env(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode, out.decode(), err.decode()


async def test_enroll_with_a_password_writes_a_0600_config(relay: FakeRelay, tmp_path):
    path = tmp_path / "etc" / "agent.json"

    code, out, err = await enroll(
        "--server",
        relay.url,
        "--username",
        "alice",
        "--labels",
        "linux, web",
        "--hostname",
        "web-1",
        "--ip",
        "192.0.2.10",
        "--config",
        str(path),
        RELAY_PASSWORD="s3cret",
    )

    assert code == 0, err
    [agent] = [a for a in relay.agents.values() if a["hostname"] == "web-1"]
    assert out == f"enrolled as agent {agent['id']} (web-1); config written to {path}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {
        "server": relay.url,
        "agent_id": agent["id"],
        "token": agent["token"],
        "hostname": "web-1",
        "labels": ["linux", "web"],
    }
    [registration] = relay.registrations
    assert registration["auth"] in relay.user_tokens
    assert registration["ip"] == "192.0.2.10"
    assert "s3cret" not in out + err


async def test_enroll_with_an_enroll_token_keeps_other_settings(
    relay: FakeRelay, tmp_path
):
    path = tmp_path / "agent.json"
    path.write_text(
        json.dumps({"server": "http://old", "concurrency": 2, "token": "agt_old"})
    )

    code, _, err = await enroll(
        "--server",
        relay.url,
        "--enroll-token",
        "enr_good",
        "--hostname",
        "db-1",
        "--config",
        str(path),
        "--keep-enroll-token",
    )

    assert code == 0, err
    saved = json.loads(path.read_text())
    assert saved["concurrency"] == 2
    assert saved["server"] == relay.url
    assert saved["enroll_token"] == "enr_good"
    assert saved["token"] != "agt_old"
    assert relay.registrations[0]["new"] is True
    assert saved["labels"] == []


async def test_enroll_token_for_a_known_hostname_exits_1_and_keeps_the_config(
    relay: FakeRelay, tmp_path
):
    # An enrollment token registers new hostnames only (409 hostname_taken).
    relay.add_agent("db-1", token="agt_old")
    path = tmp_path / "agent.json"
    before = json.dumps({"server": relay.url, "token": "agt_old"})
    path.write_text(before)

    code, out, err = await enroll(
        "--server",
        relay.url,
        "--enroll-token",
        "enr_good",
        "--hostname",
        "db-1",
        "--config",
        str(path),
    )

    assert code == 1
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("relay-agent: enrolling failed: HTTP 409 hostname_taken: ")
    assert "Agent db-1 is registered already" in line
    assert "use --username" in line
    assert path.read_text() == before
    [agent] = [a for a in relay.agents.values() if a["hostname"] == "db-1"]
    assert agent["token"] == "agt_old"


async def test_enroll_with_a_wrong_password_exits_1_and_writes_nothing(
    relay: FakeRelay, tmp_path
):
    path = tmp_path / "agent.json"

    code, _, err = await enroll(
        "--server",
        relay.url,
        "--username",
        "alice",
        "--config",
        str(path),
        RELAY_PASSWORD="wrong",
    )

    assert code == 1
    assert err.splitlines() == [
        "relay-agent: enrolling failed: HTTP 401 invalid_credentials: "
        "bad username or password"
    ]
    assert not path.exists()


def test_enroll_without_credentials_exits_2(capsys, tmp_path):
    code = cli.main(["enroll", "--server", "http://127.0.0.1:9", "--config", "x"])

    assert code == 2
    assert capsys.readouterr().err == (
        "relay-agent: give --username (with a password) or --enroll-token\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"server": "ftp://x", "token": "t"}', "server 'ftp://x' is not an http"),
        ('{"server": "http://r"}', "no agent token: run `relay-agent enroll`"),
        ('{"server": "http://r", "token": "t", "concurency": 2}', "unknown key"),
        ('{"server": "http://r", "token": "t", "concurrency": 0}', "between 1 and 100"),
        ('{"server": "http://r", "token": "t", "workdir": "/nope"}', "not a directory"),
        (
            '{"server": "http://r", "token": "t", "allow": {"commands": ["("]}}',
            "bad regular expression",
        ),
    ],
)
def test_bad_config_gives_one_line_and_exit_2(
    capsys, tmp_path, monkeypatch, content, message
):
    monkeypatch.setenv("RELAY_AGENT_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "agent.json"
    path.write_text(content)

    code = cli.main(["run", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("relay-agent: ")
    assert message in err


async def test_bad_config_exit_code_of_the_real_command(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        *agent_command(),
        "run",
        "--config",
        str(tmp_path / "missing.json"),
        env=clean_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()

    assert proc.returncode == 2
    missing = tmp_path / "missing.json"
    assert err.decode() == f"relay-agent: config file {missing} does not exist\n"


def test_environment_alone_is_a_config(tmp_path):
    env = {
        "RELAY_SERVER": "http://relay:8080/",
        "RELAY_AGENT_TOKEN": "agt_env",
        "RELAY_AGENT_LABELS": "linux,gpu",
        "RELAY_AGENT_CONCURRENCY": "7",
        "RELAY_AGENT_WORKDIR": str(tmp_path),
        "RELAY_AGENT_STATE_DIR": str(tmp_path / "state"),
        "RELAY_ENROLL_TOKEN": "enr_env",
        "RELAY_AGENT_HOSTNAME": "box-1",
        "RELAY_AGENT_KILL_GRACE": "2.5",
        "RELAY_AGENT_CONFIG": str(tmp_path / "absent.json"),
    }

    config = load_config(None, env)

    assert config.server == "http://relay:8080"
    assert config.token == "agt_env"
    assert config.labels == ["linux", "gpu"]
    assert config.concurrency == 7
    assert config.workdir == str(tmp_path)
    assert config.state_dir == str(tmp_path / "state")
    assert config.enroll_token == "enr_env"
    assert config.hostname == "box-1"
    assert config.kill_grace == 2.5
    assert config.shutdown_grace == 30.0
    assert config.path is None


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(
        json.dumps({"server": "http://file", "token": "t", "concurrency": 2})
    )
    env = {"RELAY_AGENT_CONCURRENCY": "5", "RELAY_AGENT_STATE_DIR": str(tmp_path)}

    config = load_config(path, env)

    assert (config.server, config.concurrency, config.path) == ("http://file", 5, path)


def test_no_file_and_no_server_is_an_error(tmp_path):
    env = {"RELAY_AGENT_CONFIG": str(tmp_path / "absent.json")}

    with pytest.raises(ConfigError, match=r"no config file at .*absent\.json"):
        load_config(None, env)


def test_default_config_path(tmp_path, monkeypatch):
    assert default_config_path({"RELAY_AGENT_CONFIG": "/x/a.json"}) == Path("/x/a.json")
    (tmp_path / "agent.json").write_text("{}")
    assert default_config_path({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == (
        tmp_path / "agent.json"
    )
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_config_path({}) == Path("/etc/relay-agent/agent.json")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_config_path({}) == tmp_path / ".config/relay-agent/agent.json"


def test_primary_address_prefers_a_routable_ipv4():
    assert _pick_address(["127.0.0.1", "fe80::1%eth0", "10.1.2.3", "2001:db8::5"]) == (
        "10.1.2.3"
    )
    assert _pick_address(["::1", "2001:db8::5"]) == "2001:db8::5"
    assert _pick_address(["127.0.0.1", "::1"]) == "127.0.0.1"
    assert _pick_address([]) == "127.0.0.1"
