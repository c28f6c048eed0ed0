"""Settings read once from the environment, typed, failing loudly."""

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

MIN_SECRET_KEY_LENGTH = 32
SECRET_KEY_FILE_NAME = "secret_key"


class SettingsError(Exception):
    """A variable has a value Relay cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    data_dir: Path
    database_url: str
    secret_key: str
    bcrypt_rounds: int
    token_ttl_seconds: int
    access_log: bool
    log_level: str
    db_pool_size: int
    db_pool_timeout_seconds: float
    heartbeat_seconds: int
    lease_seconds: int
    claim_wait_max_seconds: int
    output_limit_bytes: int
    run_retention_per_job: int
    run_retention_days: int
    scheduler_enabled: bool
    clock_rate: float = 1.0
    clock_epoch: datetime | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    read = _Reader(env)

    data_dir = Path(read.text("DATA_DIR", "data"))
    database_url = read.database_url(data_dir)
    settings = Settings(
        host=read.text("HOST", "0.0.0.0"),
        port=read.integer("PORT", 3000, low=1, high=65535),
        data_dir=data_dir,
        database_url=database_url,
        secret_key="",
        bcrypt_rounds=read.integer("BCRYPT_ROUNDS", 12, low=4, high=31),
        token_ttl_seconds=read.duration("TOKEN_TTL", 12 * 3600, low=60),
        access_log=read.flag("ACCESS_LOG", False),
        log_level=read.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
        db_pool_size=read.integer("DB_POOL_SIZE", 10, low=1, high=1000),
        db_pool_timeout_seconds=read.integer("DB_POOL_TIMEOUT", 10, low=1, high=600),
        heartbeat_seconds=read.integer("HEARTBEAT_SECONDS", 10, low=1, high=3600),
        lease_seconds=read.integer("LEASE_SECONDS", 60, low=5, high=86400),
        claim_wait_max_seconds=read.integer("CLAIM_WAIT_MAX", 30, low=0, high=120),
        output_limit_bytes=read.integer(
            "OUTPUT_LIMIT_BYTES", 1024 * 1024, low=1024, high=1024**3
        ),
        run_retention_per_job=read.integer("RUN_RETENTION_PER_JOB", 1000, low=1),
        run_retention_days=read.integer("RUN_RETENTION_DAYS", 90, low=1),
        scheduler_enabled=read.flag("SCHEDULER", True),
        clock_rate=read.rate("CLOCK_RATE"),
        clock_epoch=read.moment("CLOCK_EPOCH"),
    )
    secret_key = read.secret("SECRET_KEY")
    if secret_key is None:
        secret_key = _generated_secret_key(data_dir)
    return replace(settings, secret_key=secret_key)


def load_env_file() -> None:
    """Read .env in the working directory; the environment wins over it."""
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)


def first_line(exc: BaseException) -> str:
    """What a failure says, in one line: the driver's own words if it has some."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] or type(original).__name__


def load_database_url(env: Mapping[str, str] | None = None) -> str:
    """Only the database URL: what the migrator needs, with no secret made."""
    read = _Reader(os.environ if env is None else env)
    return read.database_url(Path(read.text("DATA_DIR", "data")))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None

        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, low: int, high: int = 2**31) -> int:
        value = self.raw(name)
        if value is None:
            return default

        try:
            number = int(value)
        except ValueError:
            raise SettingsError(
                f"{name} must be a whole number, not {value!r}"
            ) from None
        if not low <= number <= high:
            raise SettingsError(
                f"{name} must be between {low} and {high}, not {number}"
            )
        return number

    def duration(self, name: str, default: int, low: int) -> int:
        """Seconds, or a number with a unit: 90s, 30m, 12h, 7d."""
        value = self.raw(name)
        if value is None:
            return default

        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        factor = units.get(value[-1].lower(), 1)
        digits = value[:-1] if value[-1].lower() in units else value
        if not (digits.isascii() and digits.isdigit()):
            raise SettingsError(
                f"{name} must be seconds or a number with s, m, h or d, not {value!r}"
            )
        seconds = int(digits) * factor
        if seconds < low:
            raise SettingsError(f"{name} must be at least {low} seconds, not {seconds}")
        return seconds

    def rate(self, name: str) -> float:
        value = self.raw(name)
        if value is None:
            return 1.0

        try:
            rate = float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {value!r}") from None
        if not 1.0 <= rate <= 3600.0:
            raise SettingsError(f"{name} must be between 1 and 3600, not {value}")
        return rate

    def moment(self, name: str) -> datetime | None:
        value = self.raw(name)
        if value is None:
            return None

        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise SettingsError(f"{name} must be an ISO 8601 time with an offset")
        return moment

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default

        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, not {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).upper()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}")
        return value

    def secret(self, name: str) -> str | None:
        """The value of NAME, or the contents of the file NAME_FILE names."""
        value = self.raw(name)
        path = self.raw(f"{name}_FILE")
        if value is None and path is not None:
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(
                    f"{name}_FILE cannot be read: {exc.strerror}"
                ) from None
        if value is not None and len(value) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                f"{name} must be at least {MIN_SECRET_KEY_LENGTH} characters long"
            )
        return value

    def database_url(self, data_dir: Path) -> str:
        value = self.raw("DATABASE_URL")
        if value is None:
            return f"sqlite+aiosqlite:///{data_dir / 'relay.db'}"

        try:
            url = make_url(value)
        except ArgumentError:
            raise SettingsError("DATABASE_URL is not a database URL") from None
        driver = DRIVERS.get(url.drivername)
        if driver is None:
            raise SettingsError(
                f"DATABASE_URL must use sqlite or postgresql, not {url.drivername!r}"
            )
        return _render(url.set(drivername=driver))


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _generated_secret_key(data_dir: Path) -> str:
    """Keep one random key beside the data, so tokens survive a restart."""
    path = data_dir / SECRET_KEY_FILE_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            key = path.read_text().strip()
        else:
            key = secrets.token_urlsafe(48)
            _write_private(path, key)
    except OSError as exc:
        raise SettingsError(
            f"SECRET_KEY is not set and {path} cannot be used: {exc.strerror}"
        ) from None

    log.warning(
        "SECRET_KEY is not set; signing tokens with the generated key in %s", path
    )
    return key


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
