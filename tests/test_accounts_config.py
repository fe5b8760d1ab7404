"""Several OKX accounts from one service (issue 15): OKX_ACCOUNTS and each account's
OKX_<NAME>_* variables; every problem named at start, one line each, never a value."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import DELETE
from tests.service_process import REPO, free_port, procfile_command
from webhook_app.config import ACCOUNT_VARIABLE_SUFFIXES, Config, ConfigError, OkxAccount
from webhook_app.logs import SecretScrubber

WEBHOOK_SECRET = "webhook-secret-0123456789"
MAIN_BOT, HEDGE_BOT, OTHER_HEDGE_BOT = "581628185981813760", "690000000000000001", "690000000000000002"
MAIN = {
    "OKX_MAIN_API_KEY": "main-key-0123456789",
    "OKX_MAIN_API_SECRET": "main-secret-0123456789abcdef",
    "OKX_MAIN_API_PASSPHRASE": "main-pass-01",
    "OKX_MAIN_ALGO_IDS": MAIN_BOT,
}
HEDGE = {
    "OKX_HEDGE_API_KEY": "hedge-key-0123456789",
    "OKX_HEDGE_API_SECRET": "hedge-secret-0123456789abc",
    "OKX_HEDGE_API_PASSPHRASE": "hedge-pass-01",
    "OKX_HEDGE_BASE_URL": "https://eea.okx.com",
    "OKX_HEDGE_ALGO_IDS": f"{HEDGE_BOT}, {OTHER_HEDGE_BOT}",
}
CREDENTIAL_VARIABLES = [
    f"OKX_{name}_{suffix}" for name in ("MAIN", "HEDGE") for suffix in ("API_KEY", "API_SECRET", "API_PASSPHRASE")
]
# Values that must never appear in a message (the API keys are not secrets, but are not echoed either).
NEVER_SHOWN = [WEBHOOK_SECRET, *(value for name, value in {**MAIN, **HEDGE}.items() if "_API_" in name)]


def accounts_env(tmp_path, **changes) -> dict[str, str]:
    """A valid environment with two live accounts, main and hedge, each with its bots; each
    keyword changes one variable (DELETE removes it)."""
    environ = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/instance/alerts.db",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OKX_ACCOUNTS": "main,hedge",
        **MAIN,
        **HEDGE,
    }
    for name, value in changes.items():
        if value is DELETE:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def without_credentials(**changes):
    return {name: DELETE for name in CREDENTIAL_VARIABLES} | changes


def problems_of(environ) -> ConfigError:
    with pytest.raises(ConfigError) as failure:
        Config.from_env(environ)
    message = str(failure.value)
    assert len(message.splitlines()) == len(failure.value.problems)  # one line each
    for value in NEVER_SHOWN:
        assert value not in message
    return failure.value


def test_two_accounts_each_with_its_key_site_and_bots(tmp_path):
    config = Config.from_env(accounts_env(tmp_path))
    assert [account.name for account in config.okx.accounts] == ["main", "hedge"]
    main, hedge = config.okx.account("main"), config.okx.account("hedge")
    assert main == OkxAccount(
        "main",
        MAIN["OKX_MAIN_API_KEY"],
        MAIN["OKX_MAIN_API_SECRET"],
        MAIN["OKX_MAIN_API_PASSPHRASE"],
        "https://www.okx.com",
        False,
        20,
        frozenset({MAIN_BOT}),
    )
    assert (hedge.api_key, hedge.api_secret, hedge.passphrase) == (
        HEDGE["OKX_HEDGE_API_KEY"],
        HEDGE["OKX_HEDGE_API_SECRET"],
        HEDGE["OKX_HEDGE_API_PASSPHRASE"],
    )
    assert hedge.base_url == "https://eea.okx.com" and hedge.algo_ids == {HEDGE_BOT, OTHER_HEDGE_BOT}
    assert config.okx.account("default") is None and config.okx.account("hdge") is None
    assert config.okx.has_credentials and not config.okx.dry_run
    # The accounts are the only holders of credentials: "the" base URL is the first account's.
    first = config.okx.accounts[0]
    assert (first.api_key, first.base_url, first.rate_limit) == (MAIN["OKX_MAIN_API_KEY"], "https://www.okx.com", 20)


def test_three_accounts_each_with_its_own_base_url_demo_rate_limit_and_bots(tmp_path):
    demo = {
        "OKX_DEMO_API_KEY": "demo-key-0123456789",
        "OKX_DEMO_API_SECRET": "demo-secret-0123456789abc",
        "OKX_DEMO_API_PASSPHRASE": "demo-pass-01",
        "OKX_DEMO_DEMO": "1",
        "OKX_DEMO_RATE_LIMIT": "5",
        "OKX_DEMO_ALGO_IDS": "700000000000000003",
    }
    environ = accounts_env(tmp_path, OKX_ACCOUNTS="main, hedge, demo", OKX_HEDGE_RATE_LIMIT="10", **demo)
    config = Config.from_env(environ)
    settings = {a.name: (a.base_url, a.demo, a.rate_limit, a.algo_ids) for a in config.okx.accounts}
    assert settings == {
        "main": ("https://www.okx.com", False, 20, {MAIN_BOT}),
        "hedge": ("https://eea.okx.com", False, 10, {HEDGE_BOT, OTHER_HEDGE_BOT}),
        "demo": ("https://www.okx.com", True, 5, {"700000000000000003"}),
    }
    assert config.okx.account("demo").passphrase == "demo-pass-01"


def test_without_any_credentials_every_account_is_in_dry_run(tmp_path):
    config = Config.from_env(accounts_env(tmp_path, **without_credentials()))
    assert config.okx.dry_run and not config.okx.has_credentials
    assert [(a.name, a.has_credentials) for a in config.okx.accounts] == [("main", False), ("hedge", False)]
    assert config.okx.account("hedge").algo_ids == {HEDGE_BOT, OTHER_HEDGE_BOT}  # routing works in dry-run too


def test_dry_run_1_keeps_every_account_from_sending(tmp_path):
    config = Config.from_env(accounts_env(tmp_path, DRY_RUN="1"))
    assert config.okx.dry_run and config.okx.has_credentials


def test_routing_data_and_the_allowlist_as_the_union_of_every_accounts_bots(tmp_path):
    config = Config.from_env(accounts_env(tmp_path, ALLOWED_ALGO_IDS="123"))
    assert config.okx.account("hedge").algo_ids == {HEDGE_BOT, OTHER_HEDGE_BOT}
    assert config.okx.account("main").algo_ids == {MAIN_BOT}
    assert config.protection.allowed_algo_ids == {MAIN_BOT, HEDGE_BOT, OTHER_HEDGE_BOT, "123"}


def test_no_account_listing_bots_leaves_the_allowlist_open(tmp_path):
    config = Config.from_env(accounts_env(tmp_path, OKX_MAIN_ALGO_IDS=DELETE, OKX_HEDGE_ALGO_IDS=DELETE))
    assert config.protection.allowed_algo_ids == frozenset()  # empty: any bot
    assert all(account.algo_ids == frozenset() for account in config.okx.accounts)


def test_every_accounts_secret_and_passphrase_is_scrubbed_and_never_shown(tmp_path):
    config = Config.from_env(accounts_env(tmp_path))
    for name in ("OKX_MAIN_API_SECRET", "OKX_MAIN_API_PASSPHRASE", "OKX_HEDGE_API_SECRET", "OKX_HEDGE_API_PASSPHRASE"):
        value = {**MAIN, **HEDGE}[name]
        assert value in config.secret_values, name  # the log scrubber's list
        assert value not in repr(config), name
        assert all(value not in repr(account) for account in config.okx.accounts), name
    assert "accounts=['main', 'hedge']" in repr(config)


def test_the_single_account_variables_are_the_account_named_default(tmp_path):
    environ = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/instance/alerts.db",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OKX_API_KEY": "k" * 20,
        "OKX_API_SECRET": "s" * 32,
        "OKX_API_PASSPHRASE": "p" * 12,
        "OKX_BASE_URL": "https://us.okx.com",
        "OKX_DEMO": "1",
        "OKX_RATE_LIMIT": "7",
        "ALLOWED_ALGO_IDS": MAIN_BOT,
    }
    config = Config.from_env(environ)
    assert config.okx.accounts == (
        OkxAccount("default", "k" * 20, "s" * 32, "p" * 12, "https://us.okx.com", True, 7, frozenset({MAIN_BOT})),
    )
    assert config.okx.account("default") == config.okx.accounts[0]
    assert not config.okx.dry_run and config.protection.allowed_algo_ids == {MAIN_BOT}
    assert Config.from_env({**environ, "OKX_API_KEY": "", "OKX_API_SECRET": "", "OKX_API_PASSPHRASE": ""}).okx.dry_run


def test_account_names_are_case_insensitive(tmp_path):
    """As in an alert's "account": OKX_ACCOUNTS=Main,HEDGE lists main and hedge."""
    config = Config.from_env(accounts_env(tmp_path, OKX_ACCOUNTS="Main, HEDGE"))
    assert [account.name for account in config.okx.accounts] == ["main", "hedge"]
    assert config.okx.account("hedge").api_key == HEDGE["OKX_HEDGE_API_KEY"]
    assert problems_of(accounts_env(tmp_path, OKX_ACCOUNTS="main,hedge,MAIN")).problems == [
        ("OKX_ACCOUNTS", "lists account main twice")
    ]


def test_okx_base_url_and_okx_demo_beside_okx_accounts_are_every_accounts_defaults(tmp_path):
    """What a one-click deploy sets (app.json, render.yaml) stays valid once OKX_ACCOUNTS is added:
    OKX_BASE_URL and OKX_DEMO are the site and mode of every account that sets none of its own."""
    environ = accounts_env(
        tmp_path, OKX_BASE_URL="https://eea.okx.com", OKX_DEMO="1", OKX_HEDGE_BASE_URL=DELETE, OKX_MAIN_DEMO="0"
    )
    config = Config.from_env(environ)
    assert {a.name: (a.base_url, a.demo) for a in config.okx.accounts} == {
        "main": ("https://eea.okx.com", False),
        "hedge": ("https://eea.okx.com", True),
    }
    own = Config.from_env(accounts_env(tmp_path, OKX_BASE_URL="https://us.okx.com", OKX_DEMO="0"))
    assert {a.name: (a.base_url, a.demo) for a in own.okx.accounts} == {
        "main": ("https://us.okx.com", False),
        "hedge": ("https://eea.okx.com", False),
    }


@pytest.mark.parametrize(
    "name, field, variable",
    [
        ("hedge", "api_key", "OKX_HEDGE_API_KEY"),
        ("hedge", "api_secret", "OKX_HEDGE_API_SECRET"),
        ("hedge", "passphrase", "OKX_HEDGE_API_PASSPHRASE"),
        ("sub_2", "base_url", "OKX_SUB_2_BASE_URL"),
        ("main", "demo", "OKX_MAIN_DEMO"),
        ("main", "rate_limit", "OKX_MAIN_RATE_LIMIT"),
        ("main", "algo_ids", "OKX_MAIN_ALGO_IDS"),
        ("default", "api_key", "OKX_API_KEY"),
        ("default", "passphrase", "OKX_API_PASSPHRASE"),
        ("default", "rate_limit", "OKX_RATE_LIMIT"),
        ("default", "algo_ids", "ALLOWED_ALGO_IDS"),
    ],
)
def test_each_field_names_the_variable_behind_it(name, field, variable):
    assert OkxAccount(name).variable(field) == variable


def test_the_per_account_variables_are_exactly_the_documented_suffixes():
    assert set(ACCOUNT_VARIABLE_SUFFIXES.values()) == {
        "API_KEY",
        "API_SECRET",
        "API_PASSPHRASE",
        "BASE_URL",
        "DEMO",
        "RATE_LIMIT",
        "ALGO_IDS",
    }
    with pytest.raises(ValueError):
        OkxAccount("main").variable("name")


REQUIRED = "is required for account hedge"
BAD_ENVIRONMENTS = {
    "hedge-without-passphrase": ({"OKX_HEDGE_API_PASSPHRASE": DELETE}, ["OKX_HEDGE_API_PASSPHRASE"], REQUIRED),
    "hedge-without-any-credential": (
        {"OKX_HEDGE_API_KEY": DELETE, "OKX_HEDGE_API_SECRET": DELETE, "OKX_HEDGE_API_PASSPHRASE": DELETE},
        ["OKX_HEDGE_API_KEY", "OKX_HEDGE_API_SECRET", "OKX_HEDGE_API_PASSPHRASE"],
        REQUIRED,
    ),
    "only-a-key-for-main-nothing-for-hedge": (
        without_credentials(OKX_MAIN_API_KEY=MAIN["OKX_MAIN_API_KEY"]),
        [
            "OKX_MAIN_API_SECRET",
            "OKX_MAIN_API_PASSPHRASE",
            "OKX_HEDGE_API_KEY",
            "OKX_HEDGE_API_SECRET",
            "OKX_HEDGE_API_PASSPHRASE",
        ],
        "is required for account",
    ),
    "short-secret": (
        {"OKX_HEDGE_API_SECRET": "0123456789abcde"},
        ["OKX_HEDGE_API_SECRET"],
        "is too short to be a real OKX credential (at least 16 characters): copy it whole from OKX's API key page "
        "(account hedge)",
    ),
    "short-passphrase": ({"OKX_MAIN_API_PASSPHRASE": "pass-01"}, ["OKX_MAIN_API_PASSPHRASE"], "(account main)"),
    "name-with-a-dash": ({"OKX_ACCOUNTS": "main,hedge,my-acct"}, ["OKX_ACCOUNTS"], "name number 3"),
    "name-too-long": ({"OKX_ACCOUNTS": "main,hedge," + "a" * 33}, ["OKX_ACCOUNTS"], "1 to 32 letters"),
    "duplicate-name": ({"OKX_ACCOUNTS": "main,hedge,main"}, ["OKX_ACCOUNTS"], "lists account main twice"),
    "default-is-taken": ({"OKX_ACCOUNTS": "main,hedge,default"}, ["OKX_ACCOUNTS"], "default names the account"),
    "with-okx-api-key": (
        {"OKX_API_KEY": "k" * 20},
        ["OKX_ACCOUNTS"],
        "cannot be used with OKX_API_KEY: with several accounts each has its own OKX_<NAME>_API_KEY; "
        "remove OKX_API_KEY",
    ),
    "with-api-secret-and-passphrase": (
        {"OKX_API_SECRET": "s" * 32, "OKX_API_PASSPHRASE": "p" * 12},
        ["OKX_ACCOUNTS", "OKX_ACCOUNTS"],
        "cannot be used with OKX_API_",
    ),
    "bad-default-base-url": (
        {"OKX_BASE_URL": "http://eea.okx.com"},
        ["OKX_BASE_URL"],
        "must be an https:// URL",
    ),
    "bad-default-demo": ({"OKX_DEMO": "maybe"}, ["OKX_DEMO"], "must be 1 or 0"),
    "with-rate-limit": ({"OKX_RATE_LIMIT": "20"}, ["OKX_ACCOUNTS"], "cannot be used with OKX_RATE_LIMIT"),
    "bot-under-two-accounts": (
        {"OKX_MAIN_ALGO_IDS": f"{MAIN_BOT},{HEDGE_BOT}"},
        ["OKX_MAIN_ALGO_IDS"],
        f"bot {HEDGE_BOT} is also listed in OKX_HEDGE_ALGO_IDS",
    ),
    "unlisted-account": (
        {"OKX_HDGE_API_KEY": "k" * 20},
        ["OKX_HDGE_API_KEY"],
        "account hdge is not in OKX_ACCOUNTS",
    ),
    "unlisted-account-demo-flag": ({"OKX_SUB_1_DEMO": "1"}, ["OKX_SUB_1_DEMO"], "account sub_1 is not in"),
    "forgotten-okx-accounts": (
        {"OKX_ACCOUNTS": DELETE},
        sorted([*MAIN, *HEDGE]),
        "is not in OKX_ACCOUNTS",
    ),
    "plain-http-base-url": (
        {"OKX_HEDGE_BASE_URL": "http://eea.okx.com"},
        ["OKX_HEDGE_BASE_URL"],
        "must be an https:// URL",
    ),
    "base-url-with-a-path": ({"OKX_MAIN_BASE_URL": "https://www.okx.com/api/v5"}, ["OKX_MAIN_BASE_URL"], "bare"),
    "demo-maybe": ({"OKX_MAIN_DEMO": "maybe"}, ["OKX_MAIN_DEMO"], "must be 1 or 0"),
    "rate-limit-zero": (
        {"OKX_HEDGE_RATE_LIMIT": "0"},
        ["OKX_HEDGE_RATE_LIMIT"],
        "must be a whole number from 1 to 10000 (account hedge)",
    ),
    "rate-limit-fraction": ({"OKX_HEDGE_RATE_LIMIT": "20.5"}, ["OKX_HEDGE_RATE_LIMIT"], "whole number"),
    "algo-ids-not-digits": ({"OKX_HEDGE_ALGO_IDS": "123, abc"}, ["OKX_HEDGE_ALGO_IDS"], "'abc' is not an algo ID"),
    "live-without-webhook-secret": ({"WEBHOOK_SECRET": DELETE}, ["WEBHOOK_SECRET"], "is required"),
}


@pytest.mark.parametrize("changes, variables, text", BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys())
def test_a_bad_environment_names_each_variable_once_and_no_value(tmp_path, changes, variables, text):
    error = problems_of(accounts_env(tmp_path, **changes))
    assert error.variables == variables, str(error)
    assert all(text in problem for _, problem in error.problems), str(error)
    for value in changes.values():  # what was written into a variable is not echoed either
        if value is not DELETE and value not in ("0", "1", "20", "https://www.okx.com"):
            assert value not in str(error).replace(f"bot {HEDGE_BOT}", "")


def test_an_accounts_list_without_one_valid_name_is_named_never_read_as_the_default_account(tmp_path):
    error = problems_of({"DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db", "OKX_ACCOUNTS": "ma-in,default"})
    assert error.variables == ["OKX_ACCOUNTS", "OKX_ACCOUNTS"], str(error)


def test_more_than_ten_accounts_are_refused(tmp_path):
    names = ",".join(f"sub_{n}" for n in range(11))
    error = problems_of(accounts_env(tmp_path, OKX_ACCOUNTS=names, **without_credentials()))
    # main's and hedge's own bots and base URL are now variables of unlisted accounts
    assert error.problems[0] == ("OKX_ACCOUNTS", "lists 11 accounts: at most 10")
    assert error.variables[1:] == ["OKX_HEDGE_ALGO_IDS", "OKX_HEDGE_BASE_URL", "OKX_MAIN_ALGO_IDS"]


def test_every_problem_of_several_accounts_is_named_at_once_one_line_each(tmp_path):
    environ = accounts_env(
        tmp_path,
        OKX_API_KEY="k" * 20,
        OKX_HEDGE_API_PASSPHRASE=DELETE,
        OKX_MAIN_RATE_LIMIT="abc",
        OKX_MAIN_ALGO_IDS=HEDGE_BOT,
        OKX_HDGE_DEMO="1",
        PORT="abc",
    )
    error = problems_of(environ)
    assert str(error).splitlines() == [
        "OKX_ACCOUNTS: cannot be used with OKX_API_KEY: with several accounts each has its own "
        "OKX_<NAME>_API_KEY; remove OKX_API_KEY",
        "OKX_MAIN_RATE_LIMIT: must be a whole number from 1 to 10000 (account main)",
        "OKX_HEDGE_API_PASSPHRASE: is required for account hedge: once any account has an API key, every account "
        "in OKX_ACCOUNTS needs its key, secret and passphrase (set none at all for dry-run)",
        f"OKX_MAIN_ALGO_IDS: bot {HEDGE_BOT} is also listed in OKX_HEDGE_ALGO_IDS: a bot belongs to one account, "
        "list it under that one only",
        "OKX_HDGE_DEMO: account hdge is not in OKX_ACCOUNTS",
        "PORT: must be a whole number from 1 to 65535",
    ]


def test_a_bad_accounts_configuration_stops_gunicorns_start_one_line_each_without_a_traceback(tmp_path):
    environ = accounts_env(
        tmp_path, OKX_HEDGE_API_PASSPHRASE=DELETE, OKX_MAIN_ALGO_IDS=HEDGE_BOT, OKX_HDGE_API_KEY="k" * 20
    )
    environ |= {"PATH": os.environ.get("PATH", ""), "FLASK_SKIP_DOTENV": "1", "PORT": str(free_port())}
    result = subprocess.run(procfile_command(), cwd=REPO, env=environ, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("configuration error: ")]
    assert [line.split(":")[1].strip() for line in errors] == [
        "OKX_HEDGE_API_PASSPHRASE",
        "OKX_MAIN_ALGO_IDS",
        "OKX_HDGE_API_KEY",
    ], output
    assert "Traceback" not in output and "Listening at" not in output and "Booting worker" not in output
    assert all(value not in output for value in NEVER_SHOWN)


def test_a_secret_pasted_into_okx_accounts_is_refused_and_never_shown_in_any_case(tmp_path):
    # A passphrase shaped like an account name would otherwise come back upper-cased in a variable's
    # name ("OKX_TRADINGPASS2024X_API_KEY: is required ..."), where no scrubber of the exact value finds it.
    passphrase = "tradingpass2024x"
    error = problems_of(
        accounts_env(tmp_path, OKX_HEDGE_API_PASSPHRASE=passphrase, OKX_ACCOUNTS=f"main,hedge,{passphrase}")
    )
    assert error.variables == ["OKX_ACCOUNTS"], str(error)
    assert "name number 3 is the value of a secret setting" in str(error)
    assert passphrase not in str(error).lower()


def test_the_log_scrubber_hides_a_secret_in_any_case():
    scrubber = SecretScrubber()
    scrubber.add(["tradingpass2024x"])
    assert (
        scrubber.scrub("OKX_TRADINGPASS2024X_API_KEY and TradingPass2024x") == "OKX_[redacted]_API_KEY and [redacted]"
    )
