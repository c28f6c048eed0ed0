"""Throughput of the relay's hot paths, beside a lean aiohttp server.

Starts a relay (SQLite, in a temporary folder) and the lean server on
127.0.0.1, loads each with wrk for a few seconds, and prints requests per
second. Needs wrk (Debian: apt-get install wrk).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
KEY = "bench-secret-key-0123456789abcdef-0123456789"
HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


def wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing answered {url}")


def wrk(url: str, script: str | None, token: str | None) -> float:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency"]
    if token and script is None:
        command += ["-H", f"Authorization: Bearer {token}"]
    if script:
        command += ["-s", script]
    output = subprocess.run([*command, url], capture_output=True, text=True).stdout
    for line in output.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit(f"bench: wrk said\n{output}")


def post_script(folder: Path, name: str, token: str, body: str, counter=False) -> str:
    path = folder / f"{name}.lua"
    lines = [
        'wrk.method = "POST"',
        f'wrk.headers["Authorization"] = "Bearer {token}"',
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if counter:
        # Each request a new chunk: the relay stores every one.
        lines += [
            "local seq = 0",
            "request = function()",
            "  seq = seq + 1",
            f"  return wrk.format(nil, nil, nil, string.format('{body}', seq))",
            "end",
        ]
    else:
        lines.append(f"wrk.body = '{body}'")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def start(command: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    log = (cwd / "server.log").open("a")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (Debian: apt-get install wrk)")

    folder = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    port, lean_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(folder),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SECRET_KEY": KEY,
        "BCRYPT_ROUNDS": "4",
    }
    subprocess.run(
        [BIN / "relay-migrate"], cwd=folder, env=env, check=True, capture_output=True
    )
    relay = start([str(BIN / "relay")], folder, env)
    lean = start(
        [sys.executable, str(HERE / "lean.py"), str(lean_port), KEY], folder, env
    )
    try:
        results = measure(
            folder, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{lean_port}"
        )
    finally:
        relay.terminate()
        lean.terminate()
        relay.wait(10)
        lean.wait(10)
    report(results)


def measure(
    folder: Path, relay: str, lean: str
) -> list[tuple[str, float, float | None]]:
    wait_ready(f"{relay}/readyz")
    wait_ready(f"{lean}/protected")
    account = {"username": "bench", "password": "bench-password"}
    call(f"{relay}/users", account)
    token = call(f"{relay}/login", account)["token"]
    agent = call(f"{relay}/agents", {"hostname": "bench-1", "ip": "127.0.0.1"}, token)[
        "token"
    ]
    call(f"{relay}/agent/heartbeat", {}, agent)
    run = held_run(relay, token, agent)

    heartbeat = post_script(folder, "heartbeat", agent, "{}")
    claim = post_script(folder, "claim", agent, '{"wait": 0}')
    chunk = '{"lease_token": "LEASE", "seq": %d, "stream": "stdout", "data": "x\\\\n"}'
    chunk = chunk.replace("LEASE", run["lease_token"])
    output = post_script(folder, "output", agent, chunk, counter=True)
    report_url = f"{relay}/agent/runs/{run['run_id']}/output"
    return [
        (
            "token check: GET /protected",
            wrk(f"{relay}/protected", None, token),
            wrk(f"{lean}/protected", None, token),
        ),
        (
            "heartbeat: POST /agent/heartbeat",
            wrk(f"{relay}/agent/heartbeat", heartbeat, None),
            wrk(f"{lean}/agent/heartbeat", heartbeat, None),
        ),
        (
            "claim, nothing due: POST /agent/claim",
            wrk(f"{relay}/agent/claim", claim, None),
            None,
        ),
        ("report: POST /agent/runs/{id}/output", wrk(report_url, output, None), None),
    ]


def held_run(relay: str, token: str, agent: str) -> dict:
    job = {
        "name": "bench",
        "schedule": "0 0 1 1 *",
        "command": "true",
        "target": {"labels": []},
    }
    created = call(f"{relay}/jobs", job, token)
    call(f"{relay}/jobs/{created['id']}/run", {}, token)
    for _ in range(50):
        runs = call(f"{relay}/agent/claim", {"wait": 1}, agent)["runs"]
        if runs:
            return runs[0]
    raise SystemExit("bench: the run was never claimable")


def report(results) -> None:
    print(f"{'path':44} {'relay req/s':>12} {'lean req/s':>12} {'ratio':>6}")
    for name, relay, lean in results:
        ratio = f"{relay / lean:.2f}" if lean else "-"
        lean_text = f"{lean:12.0f}" if lean else f"{'-':>12}"
        print(f"{name:44} {relay:12.0f} {lean_text} {ratio:>6}")


if __name__ == "__main__":
    main()
