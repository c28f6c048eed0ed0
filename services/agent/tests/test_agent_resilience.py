"""The relay going away, the agent being killed, and the relay forgetting the agent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal

import pytest
from agent_fakes import FakeRelay, agent_command, clean_env, config_file_data

from relay_agent.config import read_config_file
from relay_agent.output import Chunk
from relay_agent.spool import Spool, SpoolRecord

FINISHED_OK = {"outcome": "exited", "exit_code": 0, "signal": None, "error": None}


def spooled(tmp_path) -> list:
    return sorted((tmp_path / "state" / "spool").glob("run-*.json"))


async def test_the_result_arrives_after_the_relay_was_away_during_the_run(
    relay: FakeRelay, start_agent, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="relay_agent")
    run = relay.add_run("echo before; sleep 1; echo after; exit 4")
    await start_agent()
    await relay.wait_until(lambda: run.outputs, what="first output")

    await relay.stop()  # connections refused from now on
    await asyncio.sleep(1.5)  # the command ends while the relay is away
    assert run.status is None
    await relay.start()  # same port
    await relay.wait_until(lambda: run.status, what="finish after the outage")

    assert run.text() == "before\nafter\n"
    assert run.finish == {
        "outcome": "exited",
        "exit_code": 4,
        "signal": None,
        "error": None,
    }
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("connection to relay lost") for m in messages) == 1
    assert sum(m.startswith("connection to relay restored") for m in messages) == 1
    await relay.wait_until(lambda: not spooled(tmp_path), what="an empty spool")


async def test_finish_answered_503_is_retried_until_accepted(
    relay: FakeRelay, start_agent, tmp_path
):
    relay.unavailable["finish"] = 3
    run = relay.add_run("echo hi")
    await start_agent()

    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish_attempts == 4
    assert run.finish["exit_code"] == 0
    assert run.text() == "hi\n"
    await relay.wait_until(lambda: not spooled(tmp_path), what="an empty spool")


@pytest.mark.parametrize("refused", [["finish"], ["output", "finish"]])
async def test_a_spooled_result_survives_an_agent_killed_hard(
    relay: FakeRelay, make_config, start_agent, tmp_path, refused
):
    # The first agent runs the command, but the relay answers 503 to its reports
    # until it is killed: the result exists only on disk.
    for kind in refused:
        relay.unavailable[kind] = 10_000
    # The sleep lets the output go out live (when the relay takes it) before the end.
    run = relay.add_run("echo 'out line'; echo 'err line' >&2; sleep 0.8; exit 5")
    config = make_config()
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config_file_data(config)))
    proc = await asyncio.create_subprocess_exec(
        *agent_command(), "run", "--config", str(path), env=clean_env()
    )
    await relay.wait_until(lambda: spooled(tmp_path), what="the spooled result")
    await relay.wait_until(
        lambda: run.finish_attempts + run.output_posts >= 2, what="report attempts"
    )
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    assert run.finishes == []
    [spool_file] = spooled(tmp_path)
    assert spool_file.stat().st_mode & 0o777 == 0o600
    record = json.loads(spool_file.read_text())
    assert record["finish"] == {
        "outcome": "exited",
        "exit_code": 5,
        "signal": None,
        "error": None,
    }
    assert len(record["chunks"]) == (2 if "output" in refused else 0)
    relay.unavailable.clear()

    await start_agent(config)  # same state_dir, same token
    await relay.wait_until(lambda: run.status, what="the spooled finish")
    await asyncio.sleep(0.5)

    assert len(run.finishes) == 1
    assert run.finish == {
        "outcome": "exited",
        "exit_code": 5,
        "signal": None,
        "error": None,
    }
    assert run.text("stdout") == "out line\n"
    assert run.text("stderr") == "err line\n"
    assert run.starts == 1
    await relay.wait_until(lambda: not spooled(tmp_path), what="an empty spool")


async def test_a_result_the_relay_refuses_for_good_is_set_aside(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    # A 400 (the relay will never take this report): kept aside, not retried.
    config = make_config()
    spool = Spool(tmp_path / "state" / "spool")
    known = relay.add_run("true")
    relay.queue.clear()
    known.lease_token = "lt_known"
    spool.save(SpoolRecord(known.run_id, "lt_known", FINISHED_OK))
    relay.refuse["finish"] = (400, "bad_request")
    await start_agent(config)

    await relay.wait_until(lambda: not spooled(tmp_path), what="an empty spool")

    assert known.finish_attempts == 1
    rejected = sorted((tmp_path / "state" / "spool" / "rejected").iterdir())
    assert [p.name.split("-")[1] for p in rejected] == [str(known.run_id)]


async def test_a_spooled_result_for_a_run_the_relay_forgot_is_discarded(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    # 404 unknown_run (its job was deleted, say): dropped, not set aside.
    config = make_config()
    spool = Spool(tmp_path / "state" / "spool")
    spool.save(SpoolRecord(999, "lt_x", {"outcome": "exited", "exit_code": 0}))
    forgotten = relay.add_run("true")
    known = relay.add_run("true")
    relay.queue.clear()
    forgotten.lease_token, forgotten.forgotten = "lt_forgotten", True
    known.lease_token = "lt_known"
    spool.save(
        SpoolRecord(
            forgotten.run_id, "lt_forgotten", FINISHED_OK, [Chunk(0, "stdout", "x\n")]
        )
    )
    spool.save(
        SpoolRecord(
            known.run_id, "lt_known", FINISHED_OK, [Chunk(0, "stdout", "kept\n")]
        )
    )
    await start_agent(config)

    await relay.wait_until(lambda: known.status, what="the good spooled result")

    assert known.text() == "kept\n"
    assert forgotten.unknown_answers == ["output"]
    assert forgotten.finishes == []
    await relay.wait_until(lambda: not spooled(tmp_path), what="an empty spool")
    assert not (tmp_path / "state" / "spool" / "rejected").exists()


async def pgid_from_output(relay: FakeRelay, run) -> int:
    await relay.wait_until(lambda: run.text().endswith("\n"), what="the pid line")
    return int(run.text().split()[0])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("report", ["lease", "output"])
async def test_unknown_run_on_a_report_stops_the_command_and_drops_the_run(
    relay: FakeRelay, start_agent, tmp_path, caplog, report
):
    if report == "output":
        relay.lease_seconds = 30  # renewals every 10 s: the output report sees it
        command = "echo $$; trap '' TERM; while true; do echo tick; sleep 0.05; done"
    else:
        relay.heartbeat_seconds = 60
        command = "echo $$; trap '' TERM; sleep 300 & wait"
    run = relay.add_run(command)
    await start_agent()

    pgid = await pgid_from_output(relay, run)
    run.forgotten = True  # its job was deleted
    await relay.wait_until(lambda: not group_alive(pgid), seconds=5, what="group gone")
    await asyncio.sleep(0.4)

    assert run.unknown_answers[0] == report
    assert run.finish_attempts == 0 and run.finishes == []
    assert spooled(tmp_path) == []
    assert not (tmp_path / "state" / "spool" / "rejected").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any("404 unknown_run" in m and "dropping" in m for m in messages)
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


async def test_unknown_run_on_the_start_report_never_runs_the_command(
    relay: FakeRelay, start_agent, tmp_path
):
    run = relay.add_run("echo ran > ran.txt")

    async def forget(run) -> None:
        run.forgotten = True

    relay.on_report["start"] = forget
    await start_agent()

    await relay.wait_until(lambda: run.unknown_answers, what="the start report")
    await asyncio.sleep(0.5)

    assert run.unknown_answers == ["start"]
    assert run.finish_attempts == 0
    assert not (tmp_path / "work" / "ran.txt").exists()
    assert spooled(tmp_path) == []


async def test_unknown_agent_enrolls_again_with_the_enroll_token(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"server": relay.url, "token": "agt_forgotten"}))
    config = make_config(
        token="agt_forgotten",
        enroll_token="enr_good",
        hostname="web-7",
        labels=["linux", "web"],
        path=path,
    )
    run = relay.add_run("echo after re-enrolling")
    await start_agent(config)

    await relay.wait_until(lambda: run.status, what="finish")

    [registration] = relay.registrations
    assert registration == {
        "auth": "enr_good",
        "hostname": "web-7",
        "ip": "127.0.0.1",
        "labels": ["linux", "web"],
        "new": True,
    }
    [agent] = [a for a in relay.agents.values() if a["hostname"] == "web-7"]
    assert run.agent_id == agent["id"]
    assert run.text() == "after re-enrolling\n"
    saved = read_config_file(path)
    assert saved["token"] == agent["token"]
    assert saved["agent_id"] == agent["id"]
    assert path.stat().st_mode & 0o777 == 0o600


async def test_unknown_agent_without_enroll_token_exits_1(
    relay: FakeRelay, make_config, start_agent, caplog
):
    run = relay.add_run("echo never")
    running = await start_agent(make_config(token="agt_forgotten"))

    code = await asyncio.wait_for(running.task, 5)

    assert code == 1
    assert relay.registrations == []
    assert run.starts == 0
    assert any("refused this agent's token" in r.getMessage() for r in caplog.records)
    assert all("agt_forgotten" not in r.getMessage() for r in caplog.records)


async def test_a_container_agent_enrolls_at_start_from_the_environment(
    relay: FakeRelay, make_config, start_agent
):
    run = relay.add_run("echo hello")
    await start_agent(make_config(token=None, enroll_token="enr_good", hostname="box"))

    await relay.wait_until(lambda: run.status, what="finish")

    assert [r["hostname"] for r in relay.registrations] == ["box"]
    assert run.text() == "hello\n"


async def test_hostname_taken_when_enrolling_again_logs_one_line_and_exits_1(
    relay: FakeRelay, make_config, start_agent, caplog
):
    # Our token was replaced, and the enrollment token may not take over web-7.
    relay.add_agent("web-7")
    run = relay.add_run("echo never")
    config = make_config(
        token="agt_forgotten", enroll_token="enr_good", hostname="web-7"
    )
    running = await start_agent(config)

    code = await asyncio.wait_for(running.task, 5)

    assert code == 1
    assert run.starts == 0
    # One attempt: the relay's answer would not change.
    assert [(r["hostname"], r["refused"]) for r in relay.registrations] == [
        ("web-7", True)
    ]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "hostname web-7" in errors[0] and "409 hostname_taken" in errors[0]
    assert all("agt_forgotten" not in r.getMessage() for r in caplog.records)


async def test_hostname_taken_at_start_exits_1_from_the_real_command(
    relay: FakeRelay, tmp_path
):
    relay.add_agent("box-1")
    env = clean_env(
        RELAY_SERVER=relay.url,
        RELAY_ENROLL_TOKEN="enr_good",
        RELAY_AGENT_HOSTNAME="box-1",
        RELAY_AGENT_IP="127.0.0.1",
        RELAY_AGENT_STATE_DIR=str(tmp_path / "state"),
        RELAY_AGENT_CONFIG=str(tmp_path / "absent.json"),
    )
    proc = await asyncio.create_subprocess_exec(
        *agent_command(),
        "run",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 15)

    assert proc.returncode == 1
    errors = [line for line in err.decode().splitlines() if " ERROR " in line]
    assert len(errors) == 1, err.decode()
    assert "hostname box-1 is registered already (409 hostname_taken)" in errors[0]
    assert "enr_good" not in err.decode()
