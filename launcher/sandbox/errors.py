"""Errors shaped like the real API's (FastAPI): 422 always carries the list shape
`{"detail": [{"loc", "msg", "type", ...}]}` (the SDK parses every 422 that way and crashes on a
string), every other error a string `detail`."""

from typing import Any

from django.http import JsonResponse

_NO_INPUT = object()


class ApiError(Exception):
    """A non-422 error: status code plus a human-readable `detail` string."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        response = JsonResponse({"detail": self.detail}, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def validation_item(
    loc: tuple | list, msg: str, type_: str, value: Any = _NO_INPUT, ctx: dict | None = None
) -> dict:
    """One entry of a 422 `detail` list. `value` is echoed as `input` unless it is sensitive."""
    item: dict[str, Any] = {"type": type_, "loc": list(loc), "msg": msg}
    if value is not _NO_INPUT and not _is_sensitive_location(loc):
        item["input"] = value
    if ctx:
        item["ctx"] = ctx
    return item


def _is_sensitive_location(loc) -> bool:
    return any(
        part == "sensitive_input_values" or (isinstance(part, str) and part.startswith("$"))
        for part in loc
    )


class ValidationFailed(Exception):
    """A 422 with one entry per problem found."""

    def __init__(self, items: list[dict]):
        super().__init__(f"{len(items)} validation error(s)")
        self.items = items

    def response(self) -> JsonResponse:
        return JsonResponse({"detail": self.items}, status=422)


class Problems:
    """Collects validation problems so a request gets all of them at once, like FastAPI."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, loc, msg: str, type_: str, value: Any = _NO_INPUT, ctx: dict | None = None):
        self.items.append(validation_item(loc, msg, type_, value, ctx))

    def extend(self, items: list[dict]) -> None:
        self.items.extend(items)

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
