import os
import stat

import pytest

from relay.settings import SettingsError, load_settings

KEY = "k" * 32


def test_defaults_follow_the_seed_server(tmp_path):
    settings = load_settings({"DATA_DIR": str(tmp_path), "SECRET_KEY": KEY})

    assert settings.port == 3000
    assert settings.host == "0.0.0.0"
    assert settings.bcrypt_rounds == 12
    assert settings.token_ttl_seconds == 43200
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}"


def test_a_missing_secret_key_is_generated_once_and_kept_private(tmp_path, caplog):
    first = load_settings({"DATA_DIR": str(tmp_path)})
    second = load_settings({"DATA_DIR": str(tmp_path)})

    key_file = tmp_path / "secret_key"
    assert first.secret_key == second.secret_key
    assert len(first.secret_key) >= 32
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert f"signing tokens with the generated key in {key_file}" in caplog.text


def test_secret_key_can_come_from_a_file(tmp_path):
    (tmp_path / "key").write_text("f" * 40 + "\n")

    settings = load_settings({"SECRET_KEY_FILE": str(tmp_path / "key")})

    assert settings.secret_key == "f" * 40


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be a whole number, not 'http'"),
        ({"PORT": "70000"}, "PORT must be between 1 and 65535, not 70000"),
        ({"BCRYPT_ROUNDS": "3"}, "BCRYPT_ROUNDS must be between 4 and 31, not 3"),
        (
            {"TOKEN_TTL": "soon"},
            "TOKEN_TTL must be seconds or a number with s, m, h or d, not 'soon'",
        ),
        ({"TOKEN_TTL": "10"}, "TOKEN_TTL must be at least 60 seconds, not 10"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 characters long"),
        (
            {"DATABASE_URL": "mysql://x@y/z"},
            "DATABASE_URL must use sqlite or postgresql, not 'mysql'",
        ),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
        ({"ACCESS_LOG": "maybe"}, "ACCESS_LOG must be true or false, not 'maybe'"),
    ],
)
def test_an_invalid_value_names_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError) as raised:
        load_settings({"DATA_DIR": str(tmp_path), "SECRET_KEY": KEY, **env})

    assert str(raised.value) == message


def test_token_ttl_takes_units(tmp_path):
    settings = load_settings({"SECRET_KEY": KEY, "TOKEN_TTL": "2h"})

    assert settings.token_ttl_seconds == 7200


def test_postgresql_urls_are_driven_by_asyncpg(tmp_path):
    settings = load_settings(
        {"SECRET_KEY": KEY, "DATABASE_URL": "postgresql://relay:p%40ss@db:5432/relay"}
    )

    assert settings.database_url == "postgresql+asyncpg://relay:p%40ss@db:5432/relay"
