"""Query parameters shared by the listings: pages, ids, flags."""

from aiohttp import web

from relay.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def page_limit(request: web.Request) -> int:
    value = request.query.get("limit")
    if value is None:
        return DEFAULT_LIMIT

    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit"
        )
    return int(value)


def query_id(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None

    if not value.isdigit() or len(value) > 12:
        raise InvalidInput(f"{name} must be a positive whole number", field=name)
    return int(value)


def query_flag(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    if value is None:
        return None

    if value not in ("true", "false"):
        raise InvalidInput(f"{name} must be true or false", field=name)
    return value == "true"


def page_of(items: list[dict], limit: int) -> dict:
    """The first `limit` items, and the cursor for the next page if there is one.

    Callers fetch limit + 1 rows: the extra one only says that more exist.
    """
    more = len(items) > limit
    shown = items[:limit]
    return {"items": shown, "next_cursor": str(shown[-1]["id"]) if more else None}


MAX_PREVIEW = 100


def preview_count(value) -> int:
    valid = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, str) and value.isdigit():
        value, valid = int(value), True
    if not valid or not 1 <= value <= MAX_PREVIEW:
        raise InvalidInput(
            f"count must be a whole number from 1 to {MAX_PREVIEW}", field="count"
        )
    return value
