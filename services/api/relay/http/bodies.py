"""Reading request bodies and their fields, with errors that name the field."""

import json
import unicodedata
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from relay.errors import InvalidInput

MISSING = object()
# Control, format, and line or paragraph separators: nothing a name needs.
CONTROL = ("Cc", "Cf", "Zl", "Zp")


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        raw = await request.read()
    except (HttpProcessingError, ClientPayloadError, RequestPayloadError):
        raise InvalidInput("Body cannot be read", code="invalid_body") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("Body is not valid UTF-8", code="invalid_body") from None

    try:
        body = json.loads(text) if text.strip() else MISSING
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and integers too long to convert;
        # RecursionError, nesting deeper than any request needs.
        raise InvalidInput("Body is not valid JSON", code="invalid_body") from None
    if not isinstance(body, dict):
        raise InvalidInput("Body must be a JSON object", code="invalid_body")
    # Only an escape can smuggle in a lone surrogate, which no database stores.
    escaped = "\\ud" in text or "\\uD" in text
    if escaped and not _encodable(json.dumps(body, ensure_ascii=False)):
        raise InvalidInput(
            "Body holds text that is not valid Unicode", code="invalid_body"
        )
    return body


def string_field(
    body: dict[str, Any], field: str, *, required: bool = True, strip: bool = False
) -> str | None:
    value = body.get(field, MISSING)
    if value is MISSING or value is None:
        if required:
            raise InvalidInput(
                f"{field} is required", code="missing_field", field=field
            )
        return None

    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not _encodable(value):
        raise InvalidInput(f"{field} is not valid Unicode", field=field)
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL", field=field)
    if strip:
        value = value.strip()
    if value == "":
        raise InvalidInput(f"{field} must not be empty", field=field)
    return value


def _encodable(text: str) -> bool:
    # JSON can spell lone surrogates ("\\ud800") that no database can store.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) in CONTROL for char in text)


def integer_field(
    body: dict[str, Any], field: str, default: int | None, low: int, high: int
) -> int | None:
    value = body.get(field, MISSING)
    if value is MISSING or value is None:
        return default

    # bool is an int in Python; true is not a number here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number", field=field)
    if not low <= value <= high:
        raise InvalidInput(f"{field} must be between {low} and {high}", field=field)
    return value
