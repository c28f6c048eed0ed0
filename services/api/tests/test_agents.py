import asyncio

import pytest
from api_support import Person


async def _register(client, person: Person, **body):
    body = {"hostname": "web-1", "ip": "192.168.1.2", **body}
    return await client.post("/agents", json=body, headers=person.headers)


async def test_registering_an_agent_returns_it_with_a_token_shown_once(client, user):
    response = await _register(client, user, labels=["linux", "web"])

    assert response.status == 201
    body = await response.json()
    assert body["token"].startswith("agt_")
    del body["token"], body["created_at"]
    assert body == {
        "id": 1,
        "hostname": "web-1",
        "ip": "192.168.1.2",
        "labels": ["linux", "web"],
        "status": "offline",
        "last_seen_at": None,
    }


async def test_listing_agents_never_shows_tokens(client, user):
    await _register(client, user)
    await _register(client, user, hostname="db-1", ip="fe80::1")

    response = await client.get("/agents", headers=user.headers)

    assert response.status == 200
    listed = await response.json()
    assert [(agent["hostname"], agent["ip"]) for agent in listed] == [
        ("web-1", "192.168.1.2"),
        ("db-1", "fe80::1"),
    ]
    assert all("token" not in agent for agent in listed)


async def test_registering_a_known_hostname_updates_that_agent(client, user):
    first = await (await _register(client, user)).json()

    response = await _register(client, user, hostname="WEB-1", ip="10.0.0.9")

    assert response.status == 200
    again = await response.json()
    assert again["id"] == first["id"]
    assert again["ip"] == "10.0.0.9"
    assert again["token"] != first["token"]
    listed = await (await client.get("/agents", headers=user.headers)).json()
    assert len(listed) == 1


async def test_racing_registrations_of_one_hostname_make_one_agent(client, user):
    responses = await asyncio.gather(*(_register(client, user) for _ in range(5)))

    assert sorted(response.status for response in responses) == [
        200,
        200,
        200,
        200,
        201,
    ]
    listed = await (await client.get("/agents", headers=user.headers)).json()
    assert len(listed) == 1


async def test_agents_filter_by_label(client, user):
    await _register(client, user, labels=["linux"])
    await _register(client, user, hostname="db-1", labels=["linux", "db"])

    response = await client.get("/agents?label=db", headers=user.headers)

    assert [agent["hostname"] for agent in await response.json()] == ["db-1"]


@pytest.mark.parametrize("method", ["get", "post"])
async def test_the_registry_needs_a_user_token(client, method):
    response = await getattr(client, method)("/agents", json={})

    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"


async def test_an_agent_token_cannot_act_as_a_user(client, user):
    token = (await (await _register(client, user)).json())["token"]

    response = await client.get("/agents", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 401
    assert await response.json() == {
        "error": "unauthorized",
        "message": "An agent token cannot act as a user",
    }


@pytest.mark.parametrize(
    "hostname",
    ["-web", "web-", "we_b", "a" * 64, "a..b", "web 1", ("a" * 60 + ".") * 5, "x\n"],
)
async def test_invalid_hostnames_are_refused(client, user, hostname):
    response = await _register(client, user, hostname=hostname)

    assert response.status == 400
    body = await response.json()
    assert body["field"] == "hostname"
    assert (
        body["message"]
        == "hostname must be letters, digits and '-' in dot-separated labels"
    )


@pytest.mark.parametrize("ip", ["256.1.1.1", "1.2.3", "web-1", "::g", "1.2.3.4/24"])
async def test_invalid_ips_are_refused(client, user, ip):
    response = await _register(client, user, ip=ip)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "ip must be an IPv4 or IPv6 address",
        "field": "ip",
    }


@pytest.mark.parametrize("labels", ["linux", [1], ["has space"], ["x"] * 33, [""]])
async def test_invalid_labels_are_refused(client, user, labels):
    response = await _register(client, user, labels=labels)

    assert response.status == 400
    assert (await response.json())["field"] == "labels"


async def test_a_refused_registration_adds_no_agent(client, user):
    await _register(client, user, ip="not-an-ip")

    listed = await (await client.get("/agents", headers=user.headers)).json()

    assert listed == []


async def test_ipv6_addresses_are_stored_in_canonical_form(client, user):
    response = await _register(
        client, user, ip="2001:0db8:0000:0000:0000:0000:0000:0001"
    )

    assert (await response.json())["ip"] == "2001:db8::1"


async def _enrollment_token(client, person, **body) -> str:
    response = await client.post(
        "/enrollment-tokens", json=body, headers=person.headers
    )
    assert response.status == 201
    return (await response.json())["token"]


async def test_an_enrollment_token_registers_a_new_machine(client, user):
    token = await _enrollment_token(client, user)

    response = await client.post(
        "/agents",
        json={"hostname": "db-1", "ip": "10.0.0.5"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status == 201
    assert (await response.json())["hostname"] == "db-1"


async def test_an_enrollment_token_cannot_take_over_a_known_hostname(client, user):
    await _register(client, user)
    token = await _enrollment_token(client, user)

    response = await client.post(
        "/agents",
        json={"hostname": "web-1", "ip": "10.0.0.5"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status == 409
    assert await response.json() == {
        "error": "hostname_taken",
        "message": "Agent web-1 is registered already, and not by you",
    }


async def test_an_expired_enrollment_token_is_refused(client, user, clock):
    token = await _enrollment_token(client, user, ttl_seconds=60)
    await clock.advance(61)

    response = await client.post(
        "/agents",
        json={"hostname": "db-1", "ip": "10.0.0.5"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status == 401
    assert await response.json() == {
        "error": "unauthorized",
        "message": "The enrollment token is not valid or has expired",
    }


async def test_only_the_admin_relabels_an_agent(client, admin, user):
    agent = await (await _register(client, user, labels=["linux"])).json()
    body = {"labels": ["linux", "gpu"]}

    refused = await client.patch(
        f"/agents/{agent['id']}", json=body, headers=user.headers
    )
    changed = await client.patch(
        f"/agents/{agent['id']}", json=body, headers=admin.headers
    )

    assert refused.status == 403
    assert changed.status == 200
    assert (await changed.json())["labels"] == ["gpu", "linux"]
