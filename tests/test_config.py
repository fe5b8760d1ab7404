"""Settings come from the environment once; a bad one stops the start naming the variable."""

import pytest

from webhook_app import create_app
from webhook_app.config import Config, ConfigError

CREDS = {"OKX_API_KEY": "k" * 20, "OKX_API_SECRET": "s" * 32, "OKX_API_PASSPHRASE": "p" * 12}
SECRET = {"WEBHOOK_SECRET": "w" * 24}


def env(tmp_path, **values):
    return {"DATABASE_URL": f"sqlite:///{tmp_path}/instance/alerts.db", **values}


def test_empty_environment_starts_in_dry_run_with_a_generated_secret(tmp_path, capsys):
    config = Config.from_env(env(tmp_path))
    assert config.okx.dry_run and not config.okx.has_credentials
    assert config.webhook.source == "generated" and len(config.webhook.secret) >= 16
    app = create_app(config)
    printed = capsys.readouterr().out
    assert config.webhook.secret in printed  # printed once, for the new user, naming the file that keeps it
    assert f"kept in {tmp_path}/instance/webhook_secret)" in printed
    # the same secret on the next start (kept in the instance folder), and not printed again
    again = Config.from_env(env(tmp_path))
    assert again.webhook.secret == config.webhook.secret and again.webhook.source == "stored"
    create_app(again)
    assert config.webhook.secret not in capsys.readouterr().out
    app.extensions["webhook"].journal.close()


def test_configured_secret_is_never_printed(tmp_path, capsys, caplog):
    config = Config.from_env(env(tmp_path, **SECRET))
    create_app(config).extensions["webhook"].journal.close()
    assert SECRET["WEBHOOK_SECRET"] not in capsys.readouterr().out + caplog.text


def test_credentials_make_it_live_and_dry_run_forces_dry_run(tmp_path):
    assert Config.from_env(env(tmp_path, **CREDS, **SECRET)).okx.dry_run is False
    assert Config.from_env(env(tmp_path, **CREDS, **SECRET, DRY_RUN="1")).okx.dry_run is True


def test_defaults(tmp_path):
    config = Config.from_env(env(tmp_path, **CREDS, **SECRET))
    (account,) = config.okx.accounts
    assert account.base_url == "https://www.okx.com"
    assert account.demo is False and account.rate_limit == 20 and config.delivery.reply_deadline == 2.5


@pytest.mark.parametrize(
    "values, variable",
    [
        ({"WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET"),
        ({**CREDS}, "WEBHOOK_SECRET"),
        ({"OKX_API_KEY": "k" * 20, **SECRET}, "OKX_API_SECRET"),
        ({"OKX_API_KEY": "k" * 20, "OKX_API_SECRET": "s" * 20, **SECRET}, "OKX_API_PASSPHRASE"),
        ({"OKX_API_SECRET": "s" * 20, **SECRET}, "OKX_API_KEY"),
        ({"OKX_BASE_URL": "http://www.okx.com", **SECRET}, "OKX_BASE_URL"),
        ({"OKX_BASE_URL": "www.okx.com", **SECRET}, "OKX_BASE_URL"),
        ({"OKX_BASE_URL": "https://www.okx.com/api/v5", **SECRET}, "OKX_BASE_URL"),
        ({"OKX_BASE_URL": "https://[::1", **SECRET}, "OKX_BASE_URL"),  # urlsplit raises: named, no traceback
        ({"OKX_DEMO": "maybe", **SECRET}, "OKX_DEMO"),
        ({"PUBLIC_URL": "my-relay.herokuapp.com", **SECRET}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://my-relay.herokuapp.com/admin", **SECRET}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://user:hunter2-password@my-relay.herokuapp.com", **SECRET}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "ftp://my-relay.herokuapp.com", **SECRET}, "PUBLIC_URL"),
        ({"OKX_DEMO": "[]", **SECRET}, "OKX_DEMO"),
        ({"DRY_RUN": "2", **SECRET}, "DRY_RUN"),
        ({"OKX_RATE_LIMIT": "0", **SECRET}, "OKX_RATE_LIMIT"),
        ({"OKX_RATE_LIMIT": "20.5", **SECRET}, "OKX_RATE_LIMIT"),
        ({"REPLY_DEADLINE": "3", **SECRET}, "REPLY_DEADLINE"),
        ({"REPLY_DEADLINE": "1e400", **SECRET}, "REPLY_DEADLINE"),
        ({"REPLY_DEADLINE": "NaN", **SECRET}, "REPLY_DEADLINE"),
        ({"DEDUP_WINDOW": "-1", **SECRET}, "DEDUP_WINDOW"),
        ({"MAX_LAG": "0", **SECRET}, "MAX_LAG"),
        ({"ADMIN_TOKEN": "short", **SECRET}, "ADMIN_TOKEN"),
        ({"DATABASE_URL": "mysql://db/alerts", **SECRET}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://user:hunter2-password@db", **SECRET}, "DATABASE_URL"),  # no database
        ({"DATABASE_URL": "postgres://user:hunter2-password@db:port/x", **SECRET}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///", **SECRET}, "DATABASE_URL"),
        ({"NOTIFY_URLS": "tgram://123456:hunter2-token/42 not-a-url", **SECRET}, "NOTIFY_URLS"),
        ({"NOTIFY_ON": "failed, sometimes", **SECRET}, "NOTIFY_ON"),
        ({"WEBHOOK_SECRET_PREVIOUS": "short", **SECRET}, "WEBHOOK_SECRET_PREVIOUS"),
        ({"WEBHOOK_SECRET_PREVIOUS": "p" * 20}, "WEBHOOK_SECRET_PREVIOUS"),
        ({"REQUIRE_TIMESTAMP": "maybe", **SECRET}, "REQUIRE_TIMESTAMP"),
        ({"ALLOWED_SOURCES": "10.0.0.300", **SECRET}, "ALLOWED_SOURCES"),
        ({"ALLOWED_SOURCES": "tradingview, heroku", **SECRET}, "ALLOWED_SOURCES"),
        ({"TRUSTED_PROXY_HOPS": "one", **SECRET}, "TRUSTED_PROXY_HOPS"),
        ({"ALLOWED_ALGO_IDS": "123, abc", **SECRET}, "ALLOWED_ALGO_IDS"),
        ({"MAX_AMOUNT": "-1", **SECRET}, "MAX_AMOUNT"),
        ({"MAX_AMOUNT": "1e400", **SECRET}, "MAX_AMOUNT"),
        ({"MAX_AMOUNT_PER_DAY": "lots", **SECRET}, "MAX_AMOUNT_PER_DAY"),
        ({"ALLOWED_ACTIONS": "add, long", **SECRET}, "ALLOWED_ACTIONS"),
        ({"ALLOWED_ACTIONS": ",", **SECRET}, "ALLOWED_ACTIONS"),
        ({"MAX_SIZE": "0", **SECRET}, "MAX_SIZE"),
        ({"MAX_SIZE": "many", **SECRET}, "MAX_SIZE"),
        ({"LOCKOUT_THRESHOLD": "0", **SECRET}, "LOCKOUT_THRESHOLD"),
        ({"OKX_RATE_LIMIT": "\u00b2", **SECRET}, "OKX_RATE_LIMIT"),  # str.isdigit() says yes, int() says no
        ({"OKX_RATE_LIMIT": "\u0663", **SECRET}, "OKX_RATE_LIMIT"),  # Arabic-Indic three
        ({"DEDUP_WINDOW": "5", **SECRET}, "DEDUP_WINDOW"),  # shorter than TradingView's resends
        ({"PORT": "abc", **SECRET}, "PORT"),
        ({"PORT": "70000", **SECRET}, "PORT"),
        ({"RETENTION_DAYS": "0.01", **SECRET}, "RETENTION_DAYS"),
        ({"ID_WINDOW": "10", **SECRET}, "ID_WINDOW"),
        ({"ID_WINDOW": str(40 * 86400), "RETENTION_DAYS": "60", **SECRET}, "ID_WINDOW"),
        ({"ID_WINDOW": str(3 * 86400), "RETENTION_DAYS": "2", **SECRET}, "ID_WINDOW"),
    ],
)
def test_bad_setting_fails_naming_the_variable_and_not_its_value(tmp_path, values, variable):
    with pytest.raises(ConfigError) as failure:
        Config.from_env(env(tmp_path, **values))
    assert failure.value.variable == variable
    assert str(failure.value).startswith(variable + ":")
    for secret_name in ("WEBHOOK_SECRET", "OKX_API_SECRET", "OKX_API_PASSPHRASE", "ADMIN_TOKEN"):
        if len(values.get(secret_name, "")) >= 5:
            assert values[secret_name] not in str(failure.value)
    assert "hunter2" not in str(failure.value)  # a database password never


def test_regional_and_loopback_base_urls_are_accepted(tmp_path):
    for url in ("https://eea.okx.com", "https://us.okx.com/", "http://127.0.0.1:8080"):
        assert Config.from_env(env(tmp_path, OKX_BASE_URL=url, **SECRET)).okx.accounts[0].base_url == url.rstrip("/")


def test_unusable_journal_path_fails_at_startup_naming_database_url(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = Config.from_env(env(tmp_path, **SECRET, DATABASE_URL=f"sqlite:///{blocker}/alerts.db"))
    with pytest.raises(ConfigError) as failure:
        create_app(config)
    assert failure.value.variable == "DATABASE_URL"


def test_repr_shows_no_secret(tmp_path):
    config = Config.from_env(env(tmp_path, **CREDS, **SECRET, ADMIN_TOKEN="a" * 20))
    text = repr(config)
    assert all(secret not in text for secret in config.secret_values)


def test_protection_settings_are_parsed(tmp_path):
    config = Config.from_env(
        env(
            tmp_path,
            **SECRET,
            ALLOWED_SOURCES="tradingview 198.51.100.0/24",
            TRUSTED_PROXY_HOPS="1",
            ALLOWED_ALGO_IDS="1,22",
            MAX_AMOUNT="250.5",
            MAX_AMOUNT_PER_DAY="1000",
            REQUIRE_TIMESTAMP="1",
            WEBHOOK_SECRET_PREVIOUS="p" * 20,
        )
    )
    assert len(config.protection.allowed_sources) == 5 and config.web.trusted_proxy_hops == 1
    assert config.protection.allowed_algo_ids == {"1", "22"} and str(config.protection.max_amount) == "250.5"
    assert config.protection.require_timestamp and [n for n, _ in config.webhook.accepted] == [
        "WEBHOOK_SECRET",
        "WEBHOOK_SECRET_PREVIOUS",
    ]


def test_actions_default_to_margin_and_a_list_is_read_in_any_case(tmp_path):
    default = Config.from_env(env(tmp_path, **SECRET)).protection
    assert (default.allowed_actions, default.max_size) == ({"add", "reduce"}, None)
    listed = Config.from_env(env(tmp_path, **SECRET, ALLOWED_ACTIONS="Add, BUY sell,close", MAX_SIZE="2.5"))
    assert listed.protection.allowed_actions == {"add", "buy", "sell", "close"}
    assert str(listed.protection.max_size) == "2.5"


def test_each_unknown_action_is_named_on_its_own_line(tmp_path):
    with pytest.raises(ConfigError) as failure:
        Config.from_env(env(tmp_path, **SECRET, ALLOWED_ACTIONS="add,long,short"))
    assert failure.value.variables == ["ALLOWED_ACTIONS", "ALLOWED_ACTIONS"]
    lines = str(failure.value).splitlines()
    assert ["'long'" in lines[0], "'short'" in lines[1]] == [True, True]
    assert all("choose from add, reduce, buy, sell, close, cancel, tpsl, stop" in line for line in lines)


def test_every_bad_setting_is_named_at_once_one_line_each(tmp_path):
    with pytest.raises(ConfigError) as failure:
        Config.from_env(
            env(
                tmp_path,
                WEBHOOK_SECRET="short",
                PORT="abc",
                OKX_RATE_LIMIT="\u00b2",
                MAX_LAG="0",
                OKX_DEMO="maybe",
                ALLOWED_SOURCES="10.0.0.300",
            )
        )
    assert failure.value.variables == [
        "WEBHOOK_SECRET",
        "OKX_DEMO",
        "OKX_RATE_LIMIT",
        "MAX_LAG",
        "PORT",
        "ALLOWED_SOURCES",
    ]
    lines = str(failure.value).splitlines()
    assert len(lines) == 6 and lines[0] == "WEBHOOK_SECRET: is too weak: use at least 16 characters"
    assert "short" not in str(failure.value).replace("is too weak", "")


def test_a_pre_start_check_never_creates_the_dry_run_secret(tmp_path):
    config = Config.from_env(env(tmp_path), generate_secret=False)
    assert config.okx.dry_run and not (tmp_path / "instance" / "webhook_secret").exists()


@pytest.mark.parametrize(
    "values, hops, platform",
    [
        ({}, 0, ""),
        ({"DYNO": "web.1"}, 1, "Heroku"),
        ({"DYNO": "web.1", "TRUSTED_PROXY_HOPS": "0"}, 0, "Heroku"),
        ({"DYNO": "web.1", "TRUSTED_PROXY_HOPS": "2"}, 2, "Heroku"),
    ],
)
def test_on_heroku_the_router_hop_is_trusted_by_default(tmp_path, values, hops, platform):
    config = Config.from_env(env(tmp_path, **SECRET, **values))
    assert (config.web.trusted_proxy_hops, config.web.platform) == (hops, platform)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p4ss@db.example.com:5432/d1",  # the form PaaS add-ons set
        "postgresql://u:p4ss@db.example.com/d1?sslmode=require",
        "postgresql://u@localhost/d1",
    ],
)
def test_postgres_urls_are_accepted_and_their_password_is_a_secret(tmp_path, url):
    config = Config.from_env({"DATABASE_URL": url, **SECRET})
    assert config.database_url == url
    if "p4ss" in url:
        assert "p4ss" in config.secret_values  # scrubbed from every log line
        assert "p4ss" not in repr(config)


def test_dry_run_on_postgres_keeps_its_generated_secret_in_the_database(tmp_path):
    config = Config.from_env({"DATABASE_URL": "postgres://u:p@db.example.com/d1"})
    assert config.webhook.source == "database" and config.webhook.secret == ""
    assert not (tmp_path / "instance").exists()


def test_notify_urls_are_read_as_secrets_and_notify_on_has_a_default(tmp_path):
    urls = "tgram://123456789:AAHtoken-hunter2/987654321, discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"
    config = Config.from_env(env(tmp_path, **SECRET, NOTIFY_URLS=urls, NOTIFY_ON="failed ok"))
    assert len(config.notify.urls) == 2 and config.notify.events == {"failed", "ok"}
    assert all(url in config.secret_values for url in config.notify.urls)  # tokens: scrubbed from every log line
    assert "hunter2" not in repr(config)
    assert Config.from_env(env(tmp_path, **SECRET)).notify.events == {
        "failed",
        "unknown",
        "rejected",
        "expired",
        "lockout",
        "readiness",
    }


@pytest.mark.parametrize(
    "short, variables",
    [
        ({"OKX_API_KEY": "k"}, ["OKX_API_KEY"]),
        ({"OKX_API_KEY": "k" * 15}, ["OKX_API_KEY"]),
        ({"OKX_API_SECRET": "s"}, ["OKX_API_SECRET"]),
        ({"OKX_API_SECRET": "s" * 15}, ["OKX_API_SECRET"]),
        ({"OKX_API_PASSPHRASE": "p"}, ["OKX_API_PASSPHRASE"]),
        ({"OKX_API_PASSPHRASE": "p" * 7}, ["OKX_API_PASSPHRASE"]),
        (
            {"OKX_API_KEY": "k", "OKX_API_SECRET": "t", "OKX_API_PASSPHRASE": "q"},
            ["OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"],
        ),
    ],
)
def test_okx_credentials_too_short_to_be_real_are_refused_one_line_each_never_echoed(tmp_path, short, variables):
    """One-letter credentials would make the log scrubber redact that letter everywhere (htt[redacted]://)."""
    with pytest.raises(ConfigError) as failure:
        Config.from_env(env(tmp_path, **{**CREDS, **short}, **SECRET))
    assert failure.value.variables == variables
    lines = str(failure.value).splitlines()
    assert len(lines) == len(variables)
    for line, variable in zip(lines, variables, strict=True):
        assert line.startswith(f"{variable}: is too short")
    for value in short.values():  # a one-letter value is in any text; the longer ones never are
        assert len(value) < 5 or value not in str(failure.value)


def test_the_stand_in_credentials_and_real_shaped_ones_pass(tmp_path, okx):
    real_shaped = {
        "OKX_API_KEY": "f8d6c7b4-1a2b-4c3d-9e8f-0123456789ab",
        "OKX_API_SECRET": "0123456789ABCDEF0123456789ABCDEF",
        "OKX_API_PASSPHRASE": "Passw0rd",
    }
    stand_in = {"OKX_API_KEY": okx.api_key, "OKX_API_SECRET": okx.secret_key, "OKX_API_PASSPHRASE": okx.passphrase}
    for creds in (real_shaped, stand_in, CREDS):
        assert Config.from_env(env(tmp_path, **creds, **SECRET)).okx.has_credentials


def test_a_refused_configuration_writes_no_dry_run_secret(tmp_path):
    # Reading the environment writes nothing: a start refused for PORT=abc left a generated secret behind.
    with pytest.raises(ConfigError):
        Config.from_env(env(tmp_path, PORT="abc"))
    assert not (tmp_path / "instance" / "webhook_secret").exists()


@pytest.mark.parametrize(
    "values, public_url",
    [
        ({}, ""),
        ({"PUBLIC_URL": "https://my-relay.herokuapp.com/"}, "https://my-relay.herokuapp.com"),
        ({"PUBLIC_URL": "http://127.0.0.1:8000"}, "http://127.0.0.1:8000"),
        ({"RENDER_EXTERNAL_URL": "https://my-relay.onrender.com"}, "https://my-relay.onrender.com"),  # Render sets it
        (
            {"RENDER_EXTERNAL_URL": "https://my-relay.onrender.com", "PUBLIC_URL": "https://relay.example.com"},
            "https://relay.example.com",
        ),
    ],
)
def test_public_url_makes_an_alerts_page_address(tmp_path, values, public_url):
    web = Config.from_env(env(tmp_path, **SECRET, **values)).web
    assert web.public_url == public_url
    assert web.alert_page(12) == f"{public_url}/admin/alerts/12"
