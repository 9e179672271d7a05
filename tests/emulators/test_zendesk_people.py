"""The Zendesk emulator side-loads a ticket's people (`include=users,organizations`), as the
connector needs them for redaction, in the shapes of Zendesk's OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from ticketbridge.connectors.zendesk.connector import ZendeskConnector
from ticketbridge.connectors.zendesk.emulator import ZendeskEmulator
from ticketbridge.sync.model import People

from .test_zendesk_emulator import _document, _session, _to_json_schema, needs_reference

API = Callable[..., requests.Response]


@pytest.fixture
def zd() -> Iterator[ZendeskEmulator]:
    with ZendeskEmulator(export_exclusion_seconds=0) as emulator:
        yield emulator


@pytest.fixture
def api(zd: ZendeskEmulator) -> Iterator[API]:
    session = _session(zd)

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        return session.request(method, zd.base_url + path, timeout=5, **kwargs)

    yield call
    session.close()


def jane_and_max(zd: ZendeskEmulator) -> dict[str, Any]:
    org = zd.add_organization("ACME GmbH")
    jane = zd.add_user("Jane Doe", "jane.doe@example.com", phone="+49 30 1234567", organization_id=org["id"])
    max_ = zd.add_user("Max Mustermann", "max@acme.example")
    return zd.add_ticket(subject="Export", comment={"body": "It fails."}, requester_id=jane["id"],
                         collaborator_ids=[max_["id"]])


def test_ticket_belongs_to_the_requesters_organization_and_lists_its_ccs(zd: ZendeskEmulator) -> None:
    ticket = jane_and_max(zd)
    assert ticket["organization_id"] is not None
    assert len(ticket["collaborator_ids"]) == 1 and ticket["email_cc_ids"] == ticket["collaborator_ids"]


def test_show_list_and_export_side_load_people_only_when_asked(zd: ZendeskEmulator, api: API) -> None:
    ticket = jane_and_max(zd)
    plain = api("GET", f"/api/v2/tickets/{ticket['id']}").json()
    assert set(plain) == {"ticket"}
    for path, params in ((f"/api/v2/tickets/{ticket['id']}", {}),
                         ("/api/v2/tickets", {}),
                         ("/api/v2/incremental/tickets/cursor", {"start_time": 0})):
        body = api("GET", path, params={**params, "include": "users,organizations"}).json()
        names = {user["name"] for user in body["users"]}
        assert {"Jane Doe", "Max Mustermann", "Avery Agent"} <= names, path  # requester, CC, submitter
        assert [org["name"] for org in body["organizations"]] == ["ACME GmbH"], path


def test_connector_puts_people_on_the_item_never_in_its_fields(zd: ZendeskEmulator) -> None:
    ticket = jane_and_max(zd)
    connector = ZendeskConnector("zendesk", zd.base_url, zd.email, zd.token)
    expected = People(names=("Jane Doe", "Max Mustermann"), emails=("jane.doe@example.com", "max@acme.example"),
                      phones=("+49 30 1234567",), organizations=("ACME GmbH",))
    fetched = connector.fetch(str(ticket["id"]))
    [polled] = [item for page in connector.poll(None, {}) for item in page.items]
    assert fetched.people == polled.people == expected
    assert "Jane Doe" not in str(fetched.fields) and "jane.doe@example.com" not in str(fetched.fields)


@needs_reference
def test_fidelity_side_loaded_users_and_organizations(zd: ZendeskEmulator, api: API) -> None:
    ticket = jane_and_max(zd)
    body = api("GET", f"/api/v2/tickets/{ticket['id']}", params={"include": "users,organizations"}).json()
    support = _document("zendesk-support.yml")
    for key, schema_name in (("users", "User"), ("organizations", "Organization")):
        schema = _to_json_schema(support["components"]["schemas"][schema_name], support, "zendesk-support.yml")
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for entry in body[key]:
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(entry)]
            assert not errors, f"{key}: {errors}"
