"""The one-click deploy files (app.json for Heroku's button, render.yaml for a Render blueprint)
against what the app reads: every variable webhook_app/config/ reads is described, none is
unknown, and the values they set start the app as intended."""

import json
import re
import secrets
import shlex
from pathlib import Path

import pytest
import yaml

from webhook_app.config import ACCOUNT_VARIABLE_SUFFIXES, Config

REPO = Path(__file__).resolve().parents[1]
CONFIG_SOURCE = "\n".join(path.read_text() for path in sorted((REPO / "webhook_app" / "config").glob("*.py")))

# Set by the platform or an add-on, never by the person deploying.
PLATFORM_SET = {"PORT", "DYNO", "DATABASE_URL", "RENDER_EXTERNAL_URL"}
GENERATED = {"WEBHOOK_SECRET", "ADMIN_TOKEN"}


def read_names() -> set[str]:
    """Every variable name config/ reads: ``reader.<kind>("NAME"``."""
    return set(re.findall(r"\breader\.[a-z_]+\(\s*\"([A-Z][A-Z0-9_]*)\"", CONFIG_SOURCE))


def procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return {name: command.strip() for name, _, command in (line.partition(":") for line in lines if line.strip())}


@pytest.fixture(scope="module")
def app_json() -> dict:
    return json.loads((REPO / "app.json").read_text())


@pytest.fixture(scope="module")
def render() -> dict:
    return yaml.safe_load((REPO / "render.yaml").read_text())


@pytest.fixture(scope="module")
def render_web(render) -> dict:
    (web,) = [s for s in render["services"] if s["type"] == "web"]
    return web


def test_the_names_read_are_found_exactly():
    """The regex finds what config/ reads: a spot check against names it must and must not find."""
    names = read_names()
    assert {"WEBHOOK_SECRET", "ADMIN_TOKEN", "OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"} <= names
    assert {"OKX_BASE_URL", "OKX_DEMO", "DATABASE_URL", "PORT", "DYNO", "TRUSTED_PROXY_HOPS", "NOTIFY_URLS"} <= names
    assert "OKX_" not in names and all(name.isupper() for name in names)
    assert len(names) >= 30, names


def test_app_json_describes_every_variable_the_app_reads(app_json):
    env = app_json["env"]
    described = set(env)
    assert not described - (read_names() - PLATFORM_SET), f"unknown or platform-set: {described - read_names()}"
    assert not read_names() - PLATFORM_SET - described, f"not described: {read_names() - PLATFORM_SET - described}"
    for name, entry in env.items():
        assert entry.get("description", "").strip(), name
        assert isinstance(entry.get("required"), bool), name
        assert set(entry) <= {"description", "required", "value", "generator"}, name


def test_app_json_describes_each_accounts_variables_under_okx_accounts(app_json):
    """OKX_<NAME>_* names depend on OKX_ACCOUNTS' value, so app.json cannot list them: the
    description of OKX_ACCOUNTS names every one config/ reads for an account."""
    description = app_json["env"]["OKX_ACCOUNTS"]["description"]
    for suffix in ACCOUNT_VARIABLE_SUFFIXES.values():
        assert f"OKX_<NAME>_{suffix}" in description, suffix


def test_app_json_generates_the_secrets_and_trusts_herokus_router(app_json):
    env = app_json["env"]
    for name in GENERATED:
        assert env[name]["generator"] == "secret" and env[name]["required"] is True, name
    assert env["TRUSTED_PROXY_HOPS"]["value"] == "1"
    # Without OKX credentials the app runs in dry-run: a button deploy starts without them.
    assert {name for name, entry in env.items() if entry["required"]} == GENERATED


def test_app_json_platform_parts(app_json):
    assert {"plan": "heroku-postgresql"} in [
        {"plan": addon["plan"].split(":")[0]} if isinstance(addon, dict) else {"plan": addon.split(":")[0]}
        for addon in app_json["addons"]
    ]
    assert [b["url"] for b in app_json["buildpacks"]] == ["heroku/python"]
    # The release phase is the Procfile's (Heroku runs it for a button deploy too); app.json must not
    # replace it with a postdeploy script of its own.
    assert "release" in procfile() and "scripts" not in app_json
    assert "web" in app_json.get("formation", {"web": {}})


def test_app_json_values_start_the_app_as_heroku_would(app_json, tmp_path):
    """What a button deploy sets, with the generated secrets and the add-on's DATABASE_URL, is a
    configuration the app accepts: dry-run until OKX keys are added, one trusted hop."""
    environ = {name: entry["value"] for name, entry in app_json["env"].items() if "value" in entry}
    environ |= {name: secrets.token_hex(32) for name in GENERATED}  # Heroku's generator: 64 hex characters
    environ |= {"DATABASE_URL": "postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d1", "PORT": "31337"}
    environ["DYNO"] = "web.1"
    config = Config.from_env(environ, instance_path=tmp_path)
    assert config.okx.dry_run and config.web.trusted_proxy_hops == 1 and config.web.platform == "Heroku"
    assert config.webhook.secret == environ["WEBHOOK_SECRET"] and config.admin_token == environ["ADMIN_TOKEN"]


def test_render_yaml_names_only_variables_the_app_reads(render_web, render):
    keys = [var["key"] for var in render_web["envVars"]]
    assert len(keys) == len(set(keys)), keys
    assert set(keys) <= read_names() - {"PORT", "DYNO"}, set(keys) - read_names()
    assert GENERATED | {"DATABASE_URL", "OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"} <= set(keys)
    by_key = {var["key"]: var for var in render_web["envVars"]}
    for name in GENERATED:
        assert by_key[name].get("generateValue") is True, name
    (database,) = render["databases"]
    assert by_key["DATABASE_URL"]["fromDatabase"] == {"name": database["name"], "property": "connectionString"}
    for name in ("OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"):
        assert by_key[name].get("sync") is False, name  # asked for in the dashboard, never in the file


def test_render_yaml_runs_the_procfile(render_web):
    commands = procfile()
    assert shlex.split(render_web["startCommand"]) == shlex.split(commands["web"])
    assert shlex.split(render_web["preDeployCommand"]) == shlex.split(commands["release"])
    assert render_web["runtime"] == "python" and render_web["healthCheckPath"] == "/healthz"


def test_readme_starts_heroku_with_the_button():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Heroku\n", 1)[1].split("\n### ", 1)[0]
    first = section.strip().splitlines()[0]
    assert first.startswith("[![Deploy to Heroku](https://www.herokucdn.com/deploy/button.svg)]")
    assert "(https://heroku.com/deploy" in first


def render_values(render_web) -> dict[str, str]:
    """What a Render blueprint deploy sets in the file (generated secrets and the database apart)."""
    return {var["key"]: str(var["value"]) for var in render_web["envVars"] if "value" in var}


def test_render_yaml_trusts_renders_proxy(render_web, tmp_path):
    """Render's proxy appends the client's address to X-Forwarded-For: without one trusted hop
    every alert seems to come from the proxy, and ALLOWED_SOURCES=tradingview refuses TradingView."""
    environ = render_values(render_web) | {name: secrets.token_hex(32) for name in GENERATED}
    environ |= {"DATABASE_URL": "postgresql://u:p@dpg-abc123-a:5432/d1", "ALLOWED_SOURCES": "tradingview"}
    config = Config.from_env(environ, instance_path=tmp_path)
    assert config.web.trusted_proxy_hops == 1 and config.okx.dry_run


ACCOUNTS_ADDED_AFTER_DEPLOY = {
    "OKX_ACCOUNTS": "main,hedge",
    **{
        f"OKX_{name}_{suffix}": f"{name.lower()}-{suffix.lower()}-0123456789abcdef"
        for name in ("MAIN", "HEDGE")
        for suffix in ("API_KEY", "API_SECRET", "API_PASSPHRASE")
    },
    "OKX_HEDGE_BASE_URL": "https://eea.okx.com",
}


@pytest.mark.parametrize("deploy_file", ["app.json", "render.yaml"])
def test_a_one_click_deploy_takes_okx_accounts_added_later(deploy_file, app_json, render_web, tmp_path):
    """Both deploy files set OKX_BASE_URL and OKX_DEMO: adding OKX_ACCOUNTS later must not stop the
    start; they are the defaults of every account that sets none."""
    if deploy_file == "app.json":
        environ = {name: entry["value"] for name, entry in app_json["env"].items() if "value" in entry}
    else:
        environ = render_values(render_web)
    assert {"OKX_BASE_URL", "OKX_DEMO"} <= set(environ)
    environ |= {name: secrets.token_hex(32) for name in GENERATED} | ACCOUNTS_ADDED_AFTER_DEPLOY
    environ["DATABASE_URL"] = "postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d1"
    config = Config.from_env(environ, instance_path=tmp_path)
    assert not config.okx.dry_run
    assert {a.name: a.base_url for a in config.okx.accounts} == {
        "main": environ["OKX_BASE_URL"],
        "hedge": "https://eea.okx.com",
    }


HEROKU_PLAN = "heroku-postgresql:essential-0"  # an entry plan: about 20 connections


def test_app_json_names_the_postgresql_plan_the_connection_budget_is_sized_for(app_json):
    assert HEROKU_PLAN in [addon if isinstance(addon, str) else addon["plan"] for addon in app_json["addons"]]
    assert "20" in app_json["env"]["DATABASE_MAX_CONNECTIONS"]["description"]


def heroku_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("### Heroku\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]


def test_readme_shows_the_connection_arithmetic_for_one_and_two_web_dynos():
    """The sums in README's Heroku section are right and use the budget the code has."""
    from webhook_app.journal.postgres.budget import COMMAND_CONNECTIONS, DEFAULT_CONNECTIONS

    section = heroku_section()
    assert HEROKU_PLAN.split(":")[1] in section
    sums = re.findall(r"\|\s*([^|]*web dyno[^|]*)\|\s*(?:(\d+) × )?(\d+) \+ (\d+) \+ (\d+) = (\d+)", section)
    rows = {label.strip(): (int(n or 1), int(a), int(b), int(c), int(total)) for label, n, a, b, c, total in sums}
    assert {"1 web dyno", "2 web dynos"} <= set(rows), rows
    for label, (instances, per_instance, release, command, total) in rows.items():
        assert (release, command) == (COMMAND_CONNECTIONS, COMMAND_CONNECTIONS), label
        assert instances * per_instance + release + command == total, label
    assert rows["1 web dyno"][:2] == (1, DEFAULT_CONNECTIONS) and rows["2 web dynos"][:2] == (2, DEFAULT_CONNECTIONS)
    assert rows["2 web dynos"][-1] <= 20
