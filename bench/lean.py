"""The leanest aiohttp server doing the relay's token check: the bar to beat."""

import sys
import time

import jwt
from aiohttp import web

KEY = sys.argv[2]


async def protected(request: web.Request) -> web.Response:
    token = request.headers.get("Authorization", "")[7:]
    try:
        claims = jwt.decode(token, KEY, algorithms=["HS256"])
    except jwt.PyJWTError:
        return web.json_response({"error": "unauthorized"}, status=401)
    return web.json_response(
        {"message": f"Hello {claims['name']}, you are authorized."}
    )


SEEN: dict[str, float] = {}


async def heartbeat(request: web.Request) -> web.Response:
    await request.read()
    SEEN[request.headers.get("Authorization", "")] = time.time()
    return web.json_response({"heartbeat_seconds": 10, "cancel": []})


app = web.Application()
app.router.add_get("/protected", protected)
app.router.add_post("/agent/heartbeat", heartbeat)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
