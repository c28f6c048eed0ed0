import asyncio
import signal
import subprocess
import time

import aiohttp
import pytest
from api_support import PASSWORD, RelayProcess, console_script

from relay_migrator import head_revision


@pytest.fixture
def relay(tmp_path):
    process = RelayProcess(tmp_path)
    process.migrate()
    process.start()
    yield process
    process.stop()


async def test_the_contract_holds_against_the_running_server(relay):
    account = {"username": "testuser", "password": PASSWORD}
    async with aiohttp.ClientSession(relay.url) as http:
        created = await http.post("/users", json=account)
        login = await http.post("/login", json=account)
        token = (await login.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        greeting = await http.get("/protected", headers=headers)
        agent = await http.post(
            "/agents", json={"hostname": "web-1", "ip": "192.168.1.2"}, headers=headers
        )
        listed = await http.get("/agents", headers=headers)

        assert created.status == 201
        assert (await login.json())["message"] == "Login successful"
        assert await greeting.json() == {
            "message": "Hello testuser, you are authorized."
        }
        assert agent.status == 201
        assert [a["hostname"] for a in await listed.json()] == ["web-1"]


def _run_to_exit(process: RelayProcess, folder) -> subprocess.CompletedProcess:
    """Start `relay` as the operator would, for a start that should fail."""
    return subprocess.run(
        [console_script("relay")],
        env=process.env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_server_stops_cleanly_on_sigterm(relay):
    assert relay.stop() == 0


def test_an_unmigrated_database_is_refused_with_one_line(tmp_path):
    process = RelayProcess(tmp_path)

    result = _run_to_exit(process, tmp_path)

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"relay: the database is at revision none, not {head_revision()}: "
        "run relay-migrate first"
    )


def test_a_second_relay_on_the_same_sqlite_file_refuses_to_start(relay, tmp_path):
    second = RelayProcess(tmp_path)

    result = _run_to_exit(second, tmp_path)

    assert result.returncode == 1
    database = tmp_path / "relay.db"
    assert result.stderr.splitlines()[-1] == (
        f"relay: another relay is already serving {database}; SQLite allows one"
    )


def test_an_invalid_setting_stops_the_start_with_one_line(tmp_path):
    process = RelayProcess(tmp_path, env={"PORT": "http"})

    result = _run_to_exit(process, tmp_path)

    assert result.returncode == 1
    assert result.stderr == "relay: PORT must be a whole number, not 'http'\n"


async def test_stopping_answers_waiting_claims_at_once(relay):
    account = {"username": "ops", "password": PASSWORD}
    async with aiohttp.ClientSession(relay.url) as http:
        await http.post("/users", json=account)
        token = (await (await http.post("/login", json=account)).json())["token"]
        body = {"hostname": "web-1", "ip": "127.0.0.1"}
        headers = {"Authorization": f"Bearer {token}"}
        agent = await (await http.post("/agents", json=body, headers=headers)).json()
        agent_headers = {"Authorization": f"Bearer {agent['token']}"}
        claim = asyncio.create_task(
            http.post("/agent/claim", json={"wait": 25}, headers=agent_headers)
        )
        await asyncio.sleep(0.5)

        started = time.monotonic()
        relay.process.send_signal(signal.SIGTERM)
        answer = await claim
        code = await asyncio.to_thread(relay.process.wait, 15)

        assert (answer.status, (await answer.json())["runs"]) == (200, [])
        assert code == 0
        assert time.monotonic() - started < 5
