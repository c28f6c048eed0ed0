"""Helpers shared by the relay's tests: settings, personas, registration."""

from dataclasses import dataclass

from relay.settings import load_settings

TEST_SECRET_KEY = "test-secret-key-0123456789abcdef-0123456789"
PASSWORD = "correct horse"


def make_settings(database_url: str, data_dir, **overrides: str):
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": TEST_SECRET_KEY,
        "BCRYPT_ROUNDS": "4",
        "SCHEDULER": "false",
        **overrides,
    }
    return load_settings(env)


@dataclass
class Person:
    id: int
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(client, username: str, password: str = PASSWORD) -> Person:
    body = {"username": username, "password": password}
    created = await client.post("/users", json=body)
    assert created.status == 201, await created.text()
    user = await created.json()

    login = await client.post("/login", json=body)
    assert login.status == 200
    return Person(user["id"], username, (await login.json())["token"])
