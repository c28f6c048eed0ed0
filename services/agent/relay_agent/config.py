"""The agent's settings: read from its JSON file and the environment, checked, saved.

Environment variables win over the file, so a container can run with no file at all
and a host can override one setting without editing the file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MIB = 1024 * 1024
# The most the protocol lets a claim ask the relay to wait, in seconds.
MAX_CLAIM_WAIT = 120.0

# The variables that hold secrets: they are never passed on to the jobs.
SECRET_ENV = ("RELAY_AGENT_TOKEN", "RELAY_ENROLL_TOKEN", "RELAY_PASSWORD")


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it, on one line."""


@dataclass(frozen=True)
class AllowList:
    """What this machine agrees to run, whatever the relay asks."""

    commands: tuple[re.Pattern[str], ...]
    workdirs: tuple[str, ...] | None = None
    env: tuple[re.Pattern[str], ...] | None = None


@dataclass
class AgentConfig:
    server: str
    token: str | None = None
    agent_id: int | None = None
    labels: list[str] = field(default_factory=list)
    hostname: str = field(default_factory=socket.gethostname)
    ip: str | None = None
    concurrency: int = 4
    workdir: str = field(default_factory=os.getcwd)
    state_dir: str = ""
    enroll_token: str | None = None
    kill_grace: float = 10.0
    shutdown_grace: float = 30.0
    report_grace: float = 10.0
    max_output_bytes: int = 10 * MIB
    claim_wait: float = 25.0
    retry_base: float = 0.5
    retry_max: float = 30.0
    allow: AllowList | None = None
    # The file the settings came from, so a new token from re-enrolling can be kept.
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.state_dir:
            self.state_dir = str(default_state_dir())


# The file's keys, each with the attribute it sets and how to read it.
_FILE_KEYS = {
    "server": "server",
    "token": "token",
    "agent_id": "agent_id",
    "labels": "labels",
    "hostname": "hostname",
    "ip": "ip",
    "concurrency": "concurrency",
    "workdir": "workdir",
    "state_dir": "state_dir",
    "enroll_token": "enroll_token",
    "kill_grace_seconds": "kill_grace",
    "shutdown_grace_seconds": "shutdown_grace",
    "report_grace_seconds": "report_grace",
    "max_output_bytes": "max_output_bytes",
    "claim_wait_seconds": "claim_wait",
    "retry_base_seconds": "retry_base",
    "retry_max_seconds": "retry_max",
    "allow": "allow",
}

_ENV_KEYS = {
    "RELAY_SERVER": "server",
    "RELAY_AGENT_TOKEN": "token",
    "RELAY_AGENT_LABELS": "labels",
    "RELAY_AGENT_HOSTNAME": "hostname",
    "RELAY_AGENT_IP": "ip",
    "RELAY_AGENT_CONCURRENCY": "concurrency",
    "RELAY_AGENT_WORKDIR": "workdir",
    "RELAY_AGENT_STATE_DIR": "state_dir",
    "RELAY_ENROLL_TOKEN": "enroll_token",
    "RELAY_AGENT_KILL_GRACE": "kill_grace_seconds",
    "RELAY_AGENT_SHUTDOWN_GRACE": "shutdown_grace_seconds",
    "RELAY_AGENT_MAX_OUTPUT_BYTES": "max_output_bytes",
}


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """$RELAY_AGENT_CONFIG, else the systemd credential, else /etc or per-user."""
    if environ.get("RELAY_AGENT_CONFIG"):
        return Path(environ["RELAY_AGENT_CONFIG"])

    # The unit hands the root-owned file over with LoadCredential=, readable by us only.
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / "agent.json").is_file():
        return Path(credentials) / "agent.json"

    if os.geteuid() == 0:
        return Path("/etc/relay-agent/agent.json")
    return Path.home() / ".config" / "relay-agent" / "agent.json"


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """systemd's StateDirectory= when there is one, else a root or per-user default."""
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/relay-agent")
    return Path.home() / ".local" / "state" / "relay-agent"


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] = os.environ
) -> AgentConfig:
    """Settings for `relay-agent run`; raises ConfigError naming the first problem."""
    explicit = path is not None
    config_path = Path(path) if explicit else default_config_path(environ)

    raw: dict[str, Any] = {}
    source: Path | None = None
    if config_path.exists() or explicit:
        raw = read_config_file(config_path)
        source = config_path
    elif not environ.get("RELAY_SERVER"):
        raise ConfigError(
            f"no config file at {config_path} and RELAY_SERVER is not set"
        )

    settings = _settings_from_file(raw, config_path)
    settings.update(_settings_from_env(environ))
    return _build(settings, source)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None

    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return raw


def save_config(path: Path, data: Mapping[str, Any]) -> None:
    """Write the file atomically, readable by its owner only: it holds the token."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, text.encode("utf-8"))


def atomic_write(path: Path, content: bytes) -> None:
    """Temp file, fsync, rename, fsync the folder: the old or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(content)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)

    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _settings_from_file(raw: Mapping[str, Any], path: Path) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in config file {path}")
    return dict(raw)


def _settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for variable, key in _ENV_KEYS.items():
        value = environ.get(variable)
        if value is None or value == "":
            continue
        settings[key] = value
    return settings


def _build(settings: Mapping[str, Any], source: Path | None) -> AgentConfig:
    config = AgentConfig(server=_server(settings.get("server")), path=source)

    config.token = _optional_str(settings, "token")
    config.enroll_token = _optional_str(settings, "enroll_token")
    if not config.token and not config.enroll_token:
        raise ConfigError(
            "no agent token: run `relay-agent enroll`, or set RELAY_AGENT_TOKEN "
            "or RELAY_ENROLL_TOKEN"
        )

    if settings.get("agent_id") is not None:
        config.agent_id = _integer(settings, "agent_id", 1, None)
    if "labels" in settings:
        config.labels = parse_labels(settings["labels"])
    config.hostname = _optional_str(settings, "hostname") or config.hostname
    config.ip = _optional_str(settings, "ip")

    config.concurrency = _integer(settings, "concurrency", 1, 100, config.concurrency)
    config.max_output_bytes = _integer(
        settings, "max_output_bytes", 0, None, config.max_output_bytes
    )
    config.kill_grace = _seconds(settings, "kill_grace_seconds", config.kill_grace)
    config.shutdown_grace = _seconds(
        settings, "shutdown_grace_seconds", config.shutdown_grace
    )
    config.report_grace = _seconds(
        settings, "report_grace_seconds", config.report_grace
    )
    # The relay holds a claim at most its CLAIM_WAIT_MAX, whatever we ask.
    config.claim_wait = _seconds(settings, "claim_wait_seconds", config.claim_wait)
    if config.claim_wait > MAX_CLAIM_WAIT:
        raise ConfigError(
            f"claim_wait_seconds must be at most {MAX_CLAIM_WAIT:g}, "
            f"not {config.claim_wait:g}"
        )
    config.retry_base = _seconds(settings, "retry_base_seconds", config.retry_base)
    config.retry_max = _seconds(settings, "retry_max_seconds", config.retry_max)
    if config.retry_base <= 0 or config.retry_max < config.retry_base:
        raise ConfigError("retry_base_seconds must be > 0 and <= retry_max_seconds")

    if "allow" in settings:
        config.allow = parse_allow(settings["allow"])
    # Last: the state directory is created when missing, so only for a good config.
    config.workdir = _directory(settings.get("workdir"), "workdir", config.workdir)
    config.state_dir = _state_dir(settings.get("state_dir"), config.state_dir)
    return config


def _server(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("no relay server: set 'server' in the config or RELAY_SERVER")
    return check_server_url(value)


def check_server_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"server {value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _optional_str(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string")
    return value or None


def _integer(
    settings: Mapping[str, Any],
    key: str,
    low: int,
    high: int | None,
    default: int | None = None,
) -> int:
    value = settings.get(key, default)
    try:
        if isinstance(value, bool | float):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a whole number, not {value!r}") from None
    if number < low or (high is not None and number > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{key} must be {limit}, not {number}")
    return number


def _seconds(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number of seconds, not {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"{key} must be a finite number >= 0, not {value!r}")
    return number


def parse_labels(value: Any) -> list[str]:
    """Labels as a list, or as "a,b" from the command line or the environment."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise ConfigError("labels must be a list of strings or 'a,b'")
    return [item for item in items if item]


def _directory(value: Any, key: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a path")
    if not os.path.isdir(value):
        raise ConfigError(f"{key} {value} is not a directory")
    return os.path.abspath(value)


def _state_dir(value: Any, default: str) -> str:
    path = default if value is None else value
    if not isinstance(path, str) or not path:
        raise ConfigError("state_dir must be a path")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create state_dir {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"state_dir {path} is not writable")
    return os.path.abspath(path)


def parse_allow(value: Any) -> AllowList:
    """The allowlist: "commands" (required), "workdirs" and "env" (optional)."""
    if not isinstance(value, dict):
        raise ConfigError("allow must be an object with 'commands'")
    unknown = sorted(set(value) - {"commands", "workdirs", "env"})
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in allow")
    if "commands" not in value:
        raise ConfigError("allow.commands is required when allow is set")

    commands = tuple(_patterns(value["commands"], "allow.commands"))
    env = None
    if "env" in value:
        env = tuple(_patterns(value["env"], "allow.env"))

    workdirs = None
    if "workdirs" in value:
        dirs = value["workdirs"]
        if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
            raise ConfigError("allow.workdirs must be a list of paths")
        if not all(os.path.isabs(d) for d in dirs):
            raise ConfigError("allow.workdirs must hold absolute paths")
        workdirs = tuple(os.path.realpath(d) for d in dirs)
    return AllowList(commands=commands, workdirs=workdirs, env=env)


def _patterns(value: Any, key: str) -> list[re.Pattern[str]]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{key} must be a list of regular expressions")
    patterns = []
    for pattern in value:
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(
                f"{key}: bad regular expression {pattern!r}: {exc}"
            ) from None
    return patterns


def primary_ip() -> str:
    """This machine's address as its name resolves, without sending anything."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except (OSError, UnicodeError):
        return "127.0.0.1"
    addresses = [info[4][0] for info in infos]
    return _pick_address(addresses)


def _pick_address(addresses: list[str]) -> str:
    usable = []
    for text in dict.fromkeys(addresses):
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        usable.append(address)
    # IPv4 first: it is what people expect to read in an agent list.
    usable.sort(key=lambda address: address.version)
    return str(usable[0]) if usable else "127.0.0.1"
