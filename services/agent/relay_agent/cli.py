"""`relay-agent enroll` and `relay-agent run`.

Exit codes: 0 done, 1 the relay refused or stayed away, 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay_agent import __version__
from relay_agent.client import RelayClient, RelayError
from relay_agent.config import (
    ConfigError,
    check_server_url,
    default_config_path,
    load_config,
    parse_labels,
    primary_ip,
    read_config_file,
    save_config,
)
from relay_agent.worker import Agent

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_RELAY = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        if args.command == "enroll":
            return enroll(args)
        return run(args)
    except ConfigError as exc:
        print(f"relay-agent: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("RELAY_AGENT_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    enroll_cmd = commands.add_parser("enroll", help="register this machine")
    enroll_cmd.add_argument("--server", default=os.environ.get("RELAY_SERVER"))
    enroll_cmd.add_argument("--username", default=os.environ.get("RELAY_USERNAME"))
    enroll_cmd.add_argument(
        "--password", help="better: RELAY_PASSWORD, or type it at the prompt"
    )
    enroll_cmd.add_argument(
        "--enroll-token", default=os.environ.get("RELAY_ENROLL_TOKEN")
    )
    enroll_cmd.add_argument(
        "--labels", default="", help="comma-separated, e.g. linux,web"
    )
    enroll_cmd.add_argument("--hostname", default=None)
    enroll_cmd.add_argument("--ip", default=None, help="default: this host's address")
    enroll_cmd.add_argument("--config", default=None, help="where to write the config")
    enroll_cmd.add_argument(
        "--keep-enroll-token",
        action="store_true",
        help="store the enrollment token so the agent can enroll again by itself",
    )

    run_cmd = commands.add_parser("run", help="run jobs for the relay")
    run_cmd.add_argument("--config", default=None)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiohttp's own access and client logs say nothing we do not already log.
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- enroll ---------------------------------------------------------------------


def enroll(args: argparse.Namespace) -> int:
    if not args.server:
        raise ConfigError("--server is required (or set RELAY_SERVER)")
    server = check_server_url(args.server)
    if not args.enroll_token and not args.username:
        raise ConfigError("give --username (with a password) or --enroll-token")

    path = Path(args.config) if args.config else default_config_path()
    existing = read_config_file(path) if path.exists() else {}
    hostname = args.hostname or socket.gethostname()
    ip = args.ip or primary_ip()
    labels = parse_labels(args.labels)
    password = None if args.enroll_token else _password(args)

    try:
        agent = asyncio.run(
            _register(
                server, args.enroll_token, args.username, password, hostname, ip, labels
            )
        )
    except RelayError as exc:
        hint = ""
        if exc.code == "hostname_taken" and args.enroll_token:
            hint = (
                " (an enrollment token registers new hostnames only: use --username,"
                " or --hostname to pick another name)"
            )
        print(
            f"relay-agent: enrolling failed: {_one_line(str(exc))}{hint}",
            file=sys.stderr,
        )
        return EXIT_RELAY

    data: dict[str, Any] = dict(existing)
    data.update(
        server=server,
        agent_id=agent["id"],
        token=agent["token"],
        hostname=hostname,
        labels=labels,
    )
    if args.keep_enroll_token and args.enroll_token:
        data["enroll_token"] = args.enroll_token
    try:
        save_config(path, data)
    except OSError as exc:
        print(f"relay-agent: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"enrolled as agent {agent['id']} ({hostname}); config written to {path}")
    return EXIT_OK


def _password(args: argparse.Namespace) -> str:
    if args.password:
        return args.password
    if os.environ.get("RELAY_PASSWORD"):
        return os.environ["RELAY_PASSWORD"]
    return getpass.getpass(f"Password for {args.username}: ")


async def _register(
    server: str,
    enroll_token: str | None,
    username: str | None,
    password: str | None,
    hostname: str,
    ip: str,
    labels: list[str],
) -> dict[str, Any]:
    async with RelayClient(server) as client:
        token = enroll_token
        if token is None:
            token = await client.login(username or "", password or "")
        return await client.register(token, hostname, ip, labels)


# --- run ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return asyncio.run(_run_agent(Agent(config)))


async def _run_agent(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.request_stop)
    try:
        return await agent.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
