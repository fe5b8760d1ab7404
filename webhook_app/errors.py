"""The one base of every refusal: a request the service will not carry out, and what its HTTP
reply says. Each module raises its own kinds (an alert's fields, the sender, a duplicate, an
operator's parameter...); ``surfaces.web`` turns every one of them into its reply in one place.
This module imports nothing of the service, so every layer (the journal included) can import it."""

from __future__ import annotations


class Refused(Exception):
    """A refused request. ``status`` is the reply's HTTP status and ``kind`` its JSON ``status``;
    ``message`` the reply's message; ``errors`` its [{"field", "message"}], when it names fields
    (by default ``field`` alone, with the problem); ``extra`` further fields of the reply, in order;
    ``headers`` the reply's headers. ``str()`` is the problem itself, as a caller repeats it.
    ``template``: a page answers it instead (for a browser), rendered with no data."""

    status: int = 422
    kind: str = "invalid"
    template: str | None = None

    def __init__(
        self,
        problem: str,
        field: str | None = None,
        *,
        message: str | None = None,
        errors: list[dict] | None = None,
        headers: dict[str, str] | None = None,
        **extra,
    ):
        super().__init__(problem)
        self.field = field
        self.message = problem if message is None else message
        if errors is None and field is not None:
            errors = [{"field": field, "message": problem}]
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def not_sent(problem: str) -> str:
    """The reply's message for an alert refused before anything went to OKX."""
    return f"{problem}; nothing was sent"
