"""The local allowlist: what this machine runs, decided here and not by the relay.

A compromised relay can send any command; with an allowlist in the agent's own config
file it can only pick among the commands the machine's owner wrote down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from relay_agent.config import AllowList

# With an allowlist but no "env" patterns, these names are refused: each of them can
# make an allowed command run other code (a library, a PATH entry, a startup file).
_DANGEROUS_ENV = re.compile(
    r"LD_.*|DYLD_.*|PATH|IFS|ENV|BASH_ENV|BASH_FUNC_.*|SHELLOPTS|BASHOPTS|PS4"
    r"|GCONV_PATH|HOSTALIASES|LOCPATH|NLSPATH|PYTHON.*|PERL5?LIB|PERL5OPT|RUBYOPT"
    r"|RUBYLIB|NODE_OPTIONS|NODE_PATH|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|GIT_.*"
)


def refusal(
    allow: AllowList | None, command: str, workdir: str, env: Mapping[str, str]
) -> str | None:
    """Why this run must not be executed here, or None when it may be."""
    if allow is None:
        return None

    if not any(pattern.fullmatch(command) for pattern in allow.commands):
        return "command does not match any pattern in the agent's allowlist"

    if allow.workdirs is not None and not _inside_any(workdir, allow.workdirs):
        return f"working directory {workdir} is not in the agent's allowlist"

    for name in sorted(env):
        if not _env_allowed(allow, name):
            return (
                f"environment variable {name} is not allowed by the agent's allowlist"
            )
    return None


def _inside_any(workdir: str, allowed: tuple[str, ...]) -> bool:
    # Compare resolved paths by whole components: /srv/app2 is not inside /srv/app.
    real = os.path.realpath(workdir)
    return any(
        real == base or real.startswith(base.rstrip("/") + "/") for base in allowed
    )


def _env_allowed(allow: AllowList, name: str) -> bool:
    if allow.env is not None:
        return any(pattern.fullmatch(name) for pattern in allow.env)
    return _DANGEROUS_ENV.fullmatch(name) is None
