from aiohttp import web
from api_support import make_settings

from relay.app import create_app
from relay.keys import CLOCK, DATABASE
from relay_migrator import head_revision


async def test_healthz_answers_while_the_process_is_up(client):
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_answers_when_the_database_is_at_head(client):
    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.json() == {"status": "ready", "revision": head_revision()}


async def test_readyz_is_503_when_the_database_does_not_answer(client):
    await client.app[DATABASE].engine.dispose()
    client.app[DATABASE].engine = _unreachable_engine()

    response = await client.get("/readyz")

    assert response.status == 503
    assert await response.json() == {
        "error": "database_unavailable",
        "message": "The database is unavailable",
    }


def _unreachable_engine():
    from relay.db.engine import create_engine

    return create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none", pool_timeout=1)


async def test_unknown_paths_get_a_json_404(client):
    response = await client.get("/no/such/page")

    assert response.status == 404
    assert await response.json() == {"error": "not_found", "message": "Not Found"}


async def test_wrong_methods_get_a_json_405(client):
    response = await client.delete("/users")

    assert response.status == 405
    assert await response.json() == {
        "error": "method_not_allowed",
        "message": "Method Not Allowed",
    }


async def test_an_unmigrated_database_stops_the_app_from_starting(
    empty_database_url, tmp_path
):
    app = create_app(make_settings(empty_database_url, tmp_path))
    runner = web.AppRunner(app)

    try:
        await runner.setup()
    except Exception as exc:
        message = str(exc)
    finally:
        await runner.cleanup()

    assert message == (
        f"the database is at revision none, not {head_revision()}: "
        "run relay-migrate first"
    )


async def test_metrics_count_fires_claims_results_and_agents(client, user, scheduler):
    from api_support import enroll

    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    await scheduler.tick()
    job = {
        "name": "counted",
        "schedule": "0 10 * * *",
        "command": "true",
        "target": {"labels": ["linux"]},
    }
    await client.post("/jobs", json=job, headers=user.headers)
    await client.app[CLOCK].advance(30)
    await scheduler.tick()
    [run] = await agent.claim()
    await agent.run_to_end(run)

    response = await client.get("/metrics")
    text = await response.text()

    assert response.status == 200
    for line in (
        'relay_fires_total{status="pending"} 1.0',
        "relay_runs_claimed_total 1.0",
        'relay_runs_finished_total{status="succeeded"} 1.0',
        'relay_agents{status="online"} 1.0',
        "relay_fire_lateness_seconds_count 1.0",
    ):
        assert line in text.splitlines()
