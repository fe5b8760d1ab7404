"""The database password never reaches the log, in whatever form DATABASE_URL carries it."""

import re

import pytest

from tests.conftest import WEBHOOK_SECRET, make_config
from tests.service_process import ServiceProcess
from webhook_app.config import redacted_url

UNREACHABLE = "127.0.0.1:1"  # nothing listens there: the pool logs its connection errors itself

# DATABASE_URL -> the password it carries, as written
PASSWORD_FORMS = {
    "plain": (f"postgresql://relay:pl41n-pw-zz@{UNREACHABLE}/db", "pl41n-pw-zz"),
    "query parameter": (f"postgresql://relay@{UNREACHABLE}/db?password=qu3ry-pw-zz", "qu3ry-pw-zz"),
    "unencoded @": (f"postgresql://relay:r4w@pw-zz@{UNREACHABLE}/db", "r4w@pw-zz"),
    "percent-encoded @": (f"postgresql://relay:p3rc%40pw-zz@{UNREACHABLE}/db", "p3rc%40pw-zz"),
    "unencoded /": (f"postgresql://relay:sl4sh/pw-zz@{UNREACHABLE}/db", "sl4sh/pw-zz"),
    "unencoded ?": (f"postgresql://relay:qu3st?pw-zz@{UNREACHABLE}/db", "qu3st?pw-zz"),
    "unencoded #": (f"postgresql://relay:h4sh#pw-zz@{UNREACHABLE}/db", "h4sh#pw-zz"),
}


def fragments(password: str) -> set[str]:
    """The password and every piece of it a library might show on its own (libpq reads an
    unencoded @ as the end of the password and shows the rest as the host)."""
    decoded = password.replace("%40", "@")
    pieces = {password, decoded, decoded.replace("@", "%40")}
    pieces.update(piece for piece in re.split(r"[@/?#]", decoded) if len(piece) >= 4)
    return pieces


@pytest.mark.parametrize("form", PASSWORD_FORMS)
def test_the_database_password_is_never_printed_at_start(form):
    url, password = PASSWORD_FORMS[form]
    service = ServiceProcess({"WEBHOOK_SECRET": WEBHOOK_SECRET, "DATABASE_URL": url})
    try:
        with pytest.raises(AssertionError, match="service exited"):
            service.start(timeout=30)
        output = service.log()
    finally:
        service.discard()
    assert "DATABASE_URL" in output and "127.0.0.1" in output  # it did say what failed, and where
    for piece in fragments(password):
        assert piece not in output, f"{piece!r} printed:\n{output}"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=s3cret&x=1",
            "postgresql://u@h/db?sslmode=require&password=***&x=1",
        ),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40ss@h/db?password=two", "postgresql://u:***@h/db?password=***"),
        ("postgresql://u@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
    ],
)
def test_redacted_url_hides_the_password_wherever_it_is(url, shown):
    assert redacted_url(url) == shown


def test_every_form_of_the_database_password_is_a_secret_to_scrub():
    for url, password in PASSWORD_FORMS.values():
        secrets = make_config(webhook_secret=WEBHOOK_SECRET, database_url=url).secret_values
        decoded = password.replace("%40", "@")
        assert {password, decoded, decoded.replace("@", "%40")} <= set(secrets), url
