"""A claimed run executes and its output, exit code and environment are right."""

from __future__ import annotations

import os

from agent_fakes import FakeRelay


async def test_run_output_arrives_in_order_with_exit_code(
    relay: FakeRelay, start_agent
):
    run = relay.add_run("echo one; echo two >&2; sleep 0.6; echo three; exit 3")
    await start_agent()

    await relay.wait_until(lambda: run.status, what="finish")

    assert run.text() == "one\ntwo\nthree\n"
    assert run.text("stdout") == "one\nthree\n"
    assert run.text("stderr") == "two\n"
    assert [(seq, stream) for seq, stream, _ in run.chunks()][-1][1] == "stdout"
    assert run.finish == {
        "outcome": "exited",
        "exit_code": 3,
        "signal": None,
        "error": None,
    }
    assert run.status == "failed"
    assert run.starts == 1


async def test_output_is_streamed_while_the_command_runs(relay: FakeRelay, start_agent):
    run = relay.add_run("echo first; sleep 2; echo second")
    await start_agent()

    await relay.wait_until(lambda: run.outputs, what="first chunk")

    assert run.text() == "first\n"
    assert run.status is None
    await relay.wait_until(lambda: run.status, what="finish")
    assert run.text() == "first\nsecond\n"
    assert run.finish["exit_code"] == 0
    assert run.status == "succeeded"


async def test_big_output_is_cut_into_chunks_of_at_most_64_kib(
    relay: FakeRelay, start_agent
):
    # 300 000 bytes, two-byte characters included, in one burst.
    line = "é" * 49 + "x" * 51 + "\n"
    run = relay.add_run(f"for i in $(seq 2000); do printf '%s' '{line}'; done")
    await start_agent()

    await relay.wait_until(lambda: run.status, what="finish")

    assert run.text() == line * 2000
    sizes = [len(data.encode()) for _, _, data in run.chunks()]
    assert max(sizes) <= 64 * 1024
    assert len(sizes) >= 5
    assert run.finish["exit_code"] == 0


async def test_env_and_workdir_are_applied(
    relay: FakeRelay, make_config, start_agent, monkeypatch
):
    monkeypatch.setenv("FROM_AGENT", "agent-value")
    monkeypatch.setenv("RELAY_AGENT_TOKEN", "agt_secret_value")
    monkeypatch.setenv("RELAY_ENROLL_TOKEN", "enr_secret_value")
    config = make_config()
    run = relay.add_run(
        'pwd; echo "$JOB_VAR|$FROM_AGENT|$OVERRIDE|${RELAY_AGENT_TOKEN-unset}'
        '|${RELAY_ENROLL_TOKEN-unset}"',
        env={"JOB_VAR": "job value", "OVERRIDE": "from job"},
    )
    monkeypatch.setenv("OVERRIDE", "from agent")
    await start_agent(config)

    await relay.wait_until(lambda: run.status, what="finish")

    assert (
        run.text() == f"{config.workdir}\njob value|agent-value|from job|unset|unset\n"
    )
    assert run.finish["exit_code"] == 0


async def test_a_command_killed_by_a_signal_is_signaled(relay: FakeRelay, start_agent):
    run = relay.add_run("echo bye; kill -KILL $$")
    await start_agent()

    await relay.wait_until(lambda: run.status, what="finish")

    assert run.text() == "bye\n"
    assert run.finish == {
        "outcome": "signaled",
        "exit_code": None,
        "signal": 9,
        "error": None,
    }


async def test_a_command_that_cannot_start_is_an_error(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    gone = tmp_path / "gone"
    gone.mkdir()
    config = make_config(workdir=str(gone))
    os.rmdir(gone)
    run = relay.add_run("echo never")
    await start_agent(config)

    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish["outcome"] == "error"
    assert run.finish["error"].startswith("could not start the command: ")
    assert "No such file or directory" in run.finish["error"]
    assert run.outputs == {}


async def test_runs_in_parallel_up_to_the_concurrency(
    relay: FakeRelay, make_config, start_agent
):
    runs = [relay.add_run("sleep 0.5") for _ in range(3)]
    await start_agent(make_config(concurrency=2))

    await relay.wait_until(lambda: all(r.status for r in runs), what="three finishes")

    first, second, third = runs
    assert relay.claims[0]["slots"] == 2
    # The first two overlap; the third waits for a free slot.
    assert second.started_at < first.finished_at
    assert third.started_at > min(first.started_at, second.started_at) + 0.45
    assert all(c["slots"] <= 2 for c in relay.claims)


async def test_heartbeats_follow_the_relay_interval_and_list_running_runs(
    relay: FakeRelay, start_agent
):
    run = relay.add_run("sleep 1")
    await start_agent()

    await relay.wait_until(lambda: run.status, what="finish")

    running_lists = [beat["running"] for beat in relay.heartbeats]
    assert [run.run_id] in running_lists
    # 0.2 s apart for over a second: at least four, not a flood.
    assert 4 <= len(relay.heartbeats) <= 12
    assert run.leases >= 2  # every lease_seconds / 3 = 0.2 s for a 1 s command


async def test_a_malformed_assignment_is_finished_as_an_error(
    relay: FakeRelay, start_agent
):
    run = relay.add_run("echo never", env={"A": "1"})
    run.extra["env"] = {"A": 1}  # not a string

    await start_agent()
    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish == {
        "outcome": "error",
        "exit_code": None,
        "signal": None,
        "error": "malformed assignment: env must map names to strings",
    }
    assert run.starts == 0
