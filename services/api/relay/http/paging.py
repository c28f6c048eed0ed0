"""Query parameters shared by the listings: pages, ids, flags."""

from aiohttp import web

from relay.errors import InvalidInput, NotFound

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Ids are 32-bit integer columns; a larger number names no row, and PostgreSQL
# refuses it as a query parameter rather than finding nothing.
MAX_ID = 2**31 - 1


def whole_number(value: str, most: int) -> int | None:
    """The number an ASCII digit string spells, if it is at most `most`.

    str.isdigit() alone also accepts digits int() cannot read, such as "²",
    and int() refuses strings of more than 4300 digits.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(most)):
        return None
    number = int(value)
    return number if number <= most else None


def path_id(value: str) -> int | None:
    """A row id from a URL path, or None when it cannot name a row."""
    return whole_number(value, MAX_ID)


def id_in_path(request: web.Request, name: str, noun: str, code: str) -> int:
    """The id a path names, or a 404 saying there is no such thing."""
    value = request.match_info[name]
    number = path_id(value)
    if number is None:
        raise NotFound(f"No {noun} {value}", code=code)
    return number


def page_limit(request: web.Request) -> int:
    value = request.query.get("limit")
    if value is None:
        return DEFAULT_LIMIT

    limit = whole_number(value, MAX_LIMIT)
    if limit is None or limit < 1:
        raise InvalidInput(
            f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit"
        )
    return limit


def query_id(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None

    number = whole_number(value, MAX_ID)
    if number is None:
        raise InvalidInput(
            f"{name} must be a whole number from 0 to {MAX_ID}", field=name
        )
    return number


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
    if isinstance(value, str):
        value = whole_number(value, MAX_PREVIEW)
        valid = value is not None
    if not valid or not 1 <= value <= MAX_PREVIEW:
        raise InvalidInput(
            f"count must be a whole number from 1 to {MAX_PREVIEW}", field="count"
        )
    return value
