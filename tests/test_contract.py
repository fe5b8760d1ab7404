"""The HTTP contract (webhook_app/openapi.json), checked by schemathesis against the service as the
Procfile starts it: every status it answers is documented for that input, every body matches its
schema, and no 5xx comes back but the 503s the contract lists."""

import collections
import json
import uuid

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET
from tests.service_process import ServiceProcess

# Server errors the contract allows: TradingView's resend is wanted after these, and only these.
CONTRACT_503 = {"failed", "unavailable", "instruments_unavailable"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract")
    env = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": f"sqlite:///{folder}/alerts.db",
        "LOCKOUT_THRESHOLD": "10000",
    }  # the run sends hundreds of wrong secrets from one address
    process = ServiceProcess(env).start()
    yield process
    process.discard()


def flatmap_body(context, body):
    """Most alerts carry the right secret, so what stands behind authentication is checked too;
    some also without a timestamp, which a generated one would almost always make stale."""
    # Only a string secret is replaced: a negative case that made it an object or a number must stay negative.
    if isinstance(body, dict) and isinstance(body.get("secret"), str):
        authentic = {**body, "secret": WEBHOOK_SECRET}
        # Dropped only as a string: a negative case that broke its type must stay negative.
        timeless = {
            key: value for key, value in authentic.items() if not (key == "timestamp" and isinstance(value, str))
        }
        return st.sampled_from([timeless, authentic, body])
    return st.just(body)


class AdminToken:
    """The bearer token for the operator endpoints; schemathesis leaves it out where it tests that."""

    def get(self, case, context):
        return ADMIN_TOKEN

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def contract(service):
    loaded = schemathesis.openapi.from_url(service.url + "/openapi.json")
    loaded.hook(flatmap_body)
    loaded.auth()(AdminToken)
    return loaded


schema = schemathesis.pytest.from_fixture("contract")


ANSWERS = collections.Counter()  # (method path, HTTP status) seen by the contract run


@schemathesis.check
def only_the_contracts_server_errors(ctx, response, case):
    ANSWERS[(f"{case.method} {case.path}", response.status_code)] += 1
    if case.path == "/readyz":  # its 503 ("not ready") is an answer, not an error, and documented
        return
    if response.status_code >= 500:
        status = json.loads(response.content or b"{}").get("status") if response.status_code == 503 else None
        if status not in CONTRACT_503:
            raise AssertionError(f"HTTP {response.status_code} ({status}) is not a server error the contract lists")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_service_keeps_its_openapi_contract(case, service):
    case.call_and_validate(
        base_url=service.url,
        additional_checks=[only_the_contracts_server_errors],
        # Replaced by the check above (503 failed/unavailable is part of the contract). A body valid by the
        # schema may still be refused for what a schema cannot say (a duplicate, a stale timestamp).
        excluded_checks=[not_a_server_error, positive_data_acceptance],
    )


def test_the_contract_run_reached_the_answers_that_matter():
    """Runs after the parametrized test above (pytest keeps a module's order): the run must have
    gone past authentication and validation, not only been refused at the door."""
    webhook = {status for (operation, status), n in ANSWERS.items() if operation == "POST /webhook"}
    assert {200, 400, 401, 422} <= webhook, ANSWERS
    assert ("GET /alerts", 200) in ANSWERS and ("GET /alerts", 422) in ANSWERS, ANSWERS


def test_the_text_plain_body_is_the_alert_message_as_json_text(service):
    """TradingView posts the message as text/plain: the document describes that text as the JSON
    object it holds (schemathesis sends such an object as JSON text), and a body that is no JSON
    object (empty, blank) is outside it, as the service refuses it."""
    spec = requests.get(service.url + "/openapi.json", timeout=10).json()
    text_schema = spec["paths"]["/webhook"]["post"]["requestBody"]["content"]["text/plain"]["schema"]
    assert text_schema == {"$ref": "#/components/schemas/AlertMessage"}
    # OpenAPI 3.0 is draft 4; the document's own components resolve the schema's references.
    message = jsonschema_rs.Draft4Validator({**text_schema, "components": spec["components"]})
    for body in ("", " \r\n\t"):
        reply = requests.post(service.url + "/webhook", data=body, headers={"Content-Type": "text/plain"}, timeout=10)
        assert reply.status_code == 400 and reply.json()["status"] == "invalid_body", reply.text
        assert not message.is_valid(body), repr(body)
    alert = {"secret": WEBHOOK_SECRET, "algoId": "1", "action": "add", "amount": "1", "id": uuid.uuid4().hex}
    assert message.is_valid(alert)
    reply = requests.post(service.url + "/webhook", data=json.dumps(alert), headers={"Content-Type": "text/plain"})
    assert reply.status_code == 200 and reply.json()["status"] == "dry_run", reply.text


STATEFUL = collections.Counter()  # (method path, HTTP status) seen by the stateful run
STATEFUL_EXAMPLES, STATEFUL_STEPS = 30, 6  # a round: about 10 s on two cores
# A round is a fresh random run: its links make reaching mark and resend with an alert that exists
# likely, not certain (one round in about fifty missed resend), so rounds go on until both are reached.
STATEFUL_ROUNDS = 5
MARK_AND_RESEND = ("POST /alerts/{alert_id}/mark", "POST /alerts/{alert_id}/resend")


def reached_an_existing_alert() -> bool:
    """The stateful run answered an alert that exists, and reached its mark and resend with it:
    answered, not refused as unknown (404) or unauthenticated (401)."""
    return ("GET /alerts/{alert_id}", 200) in STATEFUL and all(
        {s for (o, s) in STATEFUL if o == operation} - {401, 404} for operation in MARK_AND_RESEND
    )


def test_the_contract_holds_from_webhook_to_alert_to_mark_and_resend(contract, service):
    """Schemathesis's stateful phase: the document's links carry POST /webhook's `id` to the
    operator endpoints of that alert, so scenarios go webhook → alert → mark / resend."""
    # Only the document's own links: schemathesis's inference of them from names is turned off.
    contract.config.phases.stateful.inference.algorithms = []
    base = contract.as_state_machine()

    class Scenarios(base):
        def get_call_kwargs(self, case):
            return {"base_url": service.url}

        def before_call(self, case):
            # Hypothesis may run a scenario's first steps again, and must then get the same answers: a
            # valid alert gets an id of its own, never a duplicate (409) of one sent before.
            if case.path == "/webhook" and isinstance(case.body, dict) and case.meta.generation.mode.is_positive:
                case.body = {**case.body, "id": uuid.uuid4().hex}

        def after_call(self, response, case):
            STATEFUL[(f"{case.method} {case.path}", response.status_code)] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                additional_checks=[only_the_contracts_server_errors],
                excluded_checks=[not_a_server_error, positive_data_acceptance],
                transport_kwargs=kwargs,
            )

    rounds = 0
    while rounds < STATEFUL_ROUNDS and not reached_an_existing_alert():
        rounds += 1
        Scenarios.run(
            settings=settings(
                max_examples=STATEFUL_EXAMPLES,
                stateful_step_count=STATEFUL_STEPS,
                # The service remembers what it was sent (a replayed alert is a duplicate, 409), so a scenario
                # cannot be replayed as it ran: no shrinking, no example database.
                phases=[Phase.generate],
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
        )
    print(
        f"stateful: {rounds} round(s) of {STATEFUL_EXAMPLES} scenarios of up to {STATEFUL_STEPS} steps; "
        f"{sum(STATEFUL.values())} calls"
    )
    for (operation, status), count in sorted(STATEFUL.items()):
        print(f"  {operation} -> {status}: {count}")
    assert reached_an_existing_alert(), STATEFUL
