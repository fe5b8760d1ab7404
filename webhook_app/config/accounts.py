"""Reading the OKX accounts: the one of OKX_API_KEY & co., or those OKX_ACCOUNTS lists, each from
its OKX_<NAME>_* variables, with the rules between them (all credentials or none, a bot under one
account only, no variable of an account not listed)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from webhook_app.config import values
from webhook_app.config.reader import Reader
from webhook_app.config.sections import ACCOUNT_VARIABLE_SUFFIXES, DEFAULT_ACCOUNT, OkxAccount

# OKX's API keys are UUIDs (36 characters), its secret keys 32 hex digits, passphrases at least 8
# characters: anything shorter is a paste gone wrong (and a one-letter value would make the log
# scrubber redact that letter everywhere).
MIN_CREDENTIAL_LENGTH = {"OKX_API_KEY": 16, "OKX_API_SECRET": 16, "OKX_API_PASSPHRASE": 8}
MAX_ACCOUNTS = 10
_ACCOUNT_NAME = re.compile(r"[a-z0-9_]{1,32}\Z")
# Any OKX_<NAME>_<suffix> variable: one set for an account not in OKX_ACCOUNTS is a mistake to name.
_ACCOUNT_VARIABLE = re.compile(r"OKX_([A-Z0-9_]+)_(" + "|".join(ACCOUNT_VARIABLE_SUFFIXES.values()) + r")\Z")
# Variables whose values are secrets, by how their names end (OKX_HEDGE_API_SECRET, WEBHOOK_SECRET...).
_SECRET_SUFFIXES = (
    "API_KEY",
    "API_SECRET",
    "API_PASSPHRASE",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_PREVIOUS",
    "ADMIN_TOKEN",
)
# The single-account variables that cannot stand beside OKX_ACCOUNTS: each account has its own.
# (OKX_BASE_URL and OKX_DEMO can: they are every account's defaults, and the deploy files set them.)
SINGLE_ACCOUNT_VARIABLES = (
    "OKX_API_KEY",
    "OKX_API_SECRET",
    "OKX_API_PASSPHRASE",
    "OKX_RATE_LIMIT",
)
DEFAULT_BASE_URL = "https://www.okx.com"
_CREDENTIALS = ("api_key", "api_secret", "passphrase")


def default_credentials(reader: Reader) -> tuple[str, str, str]:
    """OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE: all three or none, none too short to be real."""
    given = {
        "OKX_API_KEY": reader.text("OKX_API_KEY"),
        "OKX_API_SECRET": reader.text("OKX_API_SECRET"),
        "OKX_API_PASSPHRASE": reader.text("OKX_API_PASSPHRASE"),
    }
    if any(given.values()) and not all(given.values()):
        for name in (name for name, value in given.items() if not value):
            reader.bad(
                name,
                "is required when any OKX credential is set "
                "(set all three of OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE, or none)",
            )
    for name, value in given.items():
        if value and len(value) < MIN_CREDENTIAL_LENGTH[name]:
            reader.bad(name, too_short(MIN_CREDENTIAL_LENGTH[name]))
    return tuple(given.values())


def too_short(minimum: int) -> str:
    return (
        f"is too short to be a real OKX credential (at least {minimum} characters): "
        "copy it whole from OKX's API key page"
    )


def listed_accounts(reader: Reader, name: str, names: list[str]) -> tuple[OkxAccount, ...]:
    """The accounts listed in ``name`` (OKX_ACCOUNTS), each from its OKX_<NAME>_* variables."""
    for single in SINGLE_ACCOUNT_VARIABLES:
        if reader.text(single):
            reader.bad(
                name,
                f"cannot be used with {single}: with several accounts each has its own "
                f"OKX_<NAME>_{single[len('OKX_') :]}; remove {single}",
            )
    if len(names) > MAX_ACCOUNTS:
        reader.bad(name, f"lists {len(names)} accounts: at most {MAX_ACCOUNTS}")
    defaults = OkxAccount(
        "",
        base_url=reader.parsed("OKX_BASE_URL", values.base_url, DEFAULT_BASE_URL) or DEFAULT_BASE_URL,
        demo=bool(reader.flag("OKX_DEMO")),
    )
    accounts = tuple(_account(reader, n, defaults) for n in _valid_names(reader, name, names))
    _all_keys_or_none(reader, accounts)
    _each_bot_under_one_account(reader, accounts)
    return accounts


def _valid_names(reader: Reader, name: str, names: list[str]) -> list[str]:
    listed: list[str] = []
    secret_values = _secret_values(reader.environ)
    for position, account_name in enumerate(names, start=1):
        # A malformed name is not echoed: it may be a value pasted into the wrong variable.
        if not _ACCOUNT_NAME.match(account_name):
            reader.bad(name, f"name number {position} is not an account name: 1 to 32 letters, digits or _")
        elif account_name.lower() in secret_values:  # a secret pasted here: every message would name it
            reader.bad(name, f"name number {position} is the value of a secret setting, not an account name")
        elif account_name == DEFAULT_ACCOUNT:
            reader.bad(name, "default names the account of OKX_API_KEY & co.: give the accounts other names")
        elif account_name in listed:
            reader.bad(name, f"lists account {account_name} twice")
        else:
            listed.append(account_name)
    return listed


def _secret_values(environ: Mapping[str, str]) -> set[str]:
    """Every secret-holding variable's value, lower-cased (account names are compared without case)."""
    return {
        value.strip().lower()
        for variable, value in environ.items()
        if value.strip() and variable.endswith(_SECRET_SUFFIXES)
    }


def _account(reader: Reader, name: str, defaults: OkxAccount) -> OkxAccount:
    """One account's variables; its problems each name the variable and the account. Its site and
    mode default to ``defaults``' (OKX_BASE_URL, OKX_DEMO)."""
    variable = OkxAccount(name).variable
    note = f" (account {name})"
    reader.notes.update({variable(field): note for field in ACCOUNT_VARIABLE_SUFFIXES})
    credentials = {field: reader.text(variable(field)) for field in _CREDENTIALS}
    for field, value in credentials.items():
        minimum = MIN_CREDENTIAL_LENGTH[f"OKX_{ACCOUNT_VARIABLE_SUFFIXES[field]}"]
        if value and len(value) < minimum:
            reader.bad(variable(field), too_short(minimum) + note)
    return OkxAccount(
        name,
        **credentials,
        base_url=reader.parsed(variable("base_url"), values.base_url, defaults.base_url),
        demo=reader.flag(variable("demo"), defaults.demo),
        rate_limit=reader.whole(variable("rate_limit"), 20, low=1, high=10_000),
        algo_ids=reader.parsed(variable("algo_ids"), values.algo_ids, frozenset()) or frozenset(),  # None: refused
    )


def _all_keys_or_none(reader: Reader, accounts: tuple[OkxAccount, ...]) -> None:
    """One account in dry-run beside live ones would drop its alerts unseen."""
    if not any(getattr(account, field) for account in accounts for field in _CREDENTIALS):
        return
    for account in accounts:
        for field in _CREDENTIALS:
            if not getattr(account, field):
                reader.bad(
                    account.variable(field),
                    f"is required for account {account.name}: once any account has an API key, "
                    "every account in OKX_ACCOUNTS needs its key, secret and passphrase "
                    "(set none at all for dry-run)",
                )


def _each_bot_under_one_account(reader: Reader, accounts: tuple[OkxAccount, ...]) -> None:
    """An OKX bot belongs to one account: listed under two, which key sends its alerts is unclear."""
    for index, account in enumerate(accounts):
        for other in accounts[index + 1 :]:
            for algo_id in sorted(account.algo_ids & other.algo_ids):
                reader.bad(
                    account.variable("algo_ids"),
                    f"bot {algo_id} is also listed in {other.variable('algo_ids')}: "
                    "a bot belongs to one account, list it under that one only",
                )


def unlisted_account_variables(reader: Reader, names: list[str]) -> None:
    """An OKX_<NAME>_* variable for an account not in OKX_ACCOUNTS: a typo, or a forgotten
    OKX_ACCOUNTS that would leave the account silently unused. ``names`` as listed, even
    malformed ones (already named as such)."""
    listed = {name.upper() for name in names}
    for variable in sorted(reader.environ):
        match = _ACCOUNT_VARIABLE.match(variable)
        if match and match.group(1) not in listed and reader.text(variable):
            reader.bad(variable, f"account {match.group(1).lower()} is not in OKX_ACCOUNTS")
