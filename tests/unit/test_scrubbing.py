"""The flow scrubber: per-ticket identity, hashed fields, the post-scan tripwire, Zendesk people."""

from __future__ import annotations

import pytest

from ticketbridge.connectors.zendesk.connector import people_of
from ticketbridge.sync.model import People
from ticketbridge.sync.policy.redact import RedactionKeyError, RedactionRules, hash_value
from ticketbridge.sync.scrubbing import Scrubber, identity_of

USERS = {
    1: {"id": 1, "name": "Jane Doe", "email": "jane.doe@example.com", "phone": "+49 30 1234567", "role": "end-user"},
    2: {"id": 2, "name": "Max Mustermann", "email": "max@acme.example", "phone": "+49 89 7654321", "role": "end-user"},
    3: {"id": 3, "name": "Avery Agent", "email": "agent@example.com", "phone": None, "role": "admin"},
    4: {"id": 4, "name": "Erika Follower", "email": "erika@acme.example", "phone": None, "role": "end-user"},
}
ORGS = {50: {"id": 50, "name": "ACME GmbH"}}
TICKET = {"id": 7, "requester_id": 1, "submitter_id": 3, "assignee_id": 3, "organization_id": 50,
          "collaborator_ids": [2], "email_cc_ids": [2], "follower_ids": [4]}


def test_people_are_the_requester_ccs_followers_and_organization_not_the_agents() -> None:
    people = people_of(TICKET, USERS, ORGS)
    assert people == People(names=("Jane Doe", "Max Mustermann", "Erika Follower"),
                            emails=("jane.doe@example.com", "max@acme.example", "erika@acme.example"),
                            phones=("+49 30 1234567",), organizations=("ACME GmbH",))
    # Without side-loads (an old payload) there is simply no one to remove.
    assert people_of(TICKET, {}, {}) == People()


def test_scrubbing_removes_the_tickets_people_by_exact_match() -> None:
    scrub = Scrubber(RedactionRules()).for_item_people(people_of(TICKET, USERS, ORGS))
    text = "Max Mustermann from ACME GmbH says Jane Doe cannot export; Avery Agent looked."
    assert scrub(text) == ("[REDACTED:requester_identity] from [REDACTED:requester_identity] says "
                           "[REDACTED:requester_identity] cannot export; Avery Agent looked.")
    assert Scrubber(RedactionRules()).text(text) == text, "no identity, no name removal"


def test_hashed_fields_need_the_key_and_hash_with_it() -> None:
    rules = RedactionRules(hashed_fields=("custom_fields.360010",), hash_key_env="ACME_KEY")
    with pytest.raises(RedactionKeyError, match="ACME_KEY"):
        Scrubber.from_policy({"hashed_fields": ["custom_fields.360010"], "hash_key_env": "ACME_KEY"}, {})
    scrubber = Scrubber.from_policy({"hashed_fields": ["custom_fields.360010"], "hash_key_env": "ACME_KEY"},
                                    {"ACME_KEY": "s3cret"})
    assert scrubber.rules == rules
    assert scrubber.value("custom_fields.360010", 4711) == hash_value("4711", b"s3cret")
    assert scrubber.value("custom_fields.360010", ["a", "b"]) == [hash_value("a", b"s3cret"),
                                                                  hash_value("b", b"s3cret")]
    assert scrubber.value("subject", "mail jane@example.com") == "mail [REDACTED:email]"
    assert scrubber.value("priority", 3) == 3


def test_post_scan_looks_for_every_kind_and_names_kinds_only() -> None:
    no_tokens = Scrubber(RedactionRules(scrub=("email", "phone")))
    text = "see https://app.example.com/x?session=9f8e7d6c5b4a and mail jane@example.com"
    scrubbed = no_tokens.text(text)
    assert "jane@example.com" not in scrubbed and "9f8e7d6c5b4a" in scrubbed
    assert no_tokens.scan(scrubbed) == ("url_query_tokens",)
    assert no_tokens.scan(text) == ("email", "url_query_tokens")
    assert Scrubber(RedactionRules()).scan("version 1.2.3.4-rc1, build 2026-11-23") == ()


def test_identity_of_people() -> None:
    identity = identity_of(People(names=("Jane Doe",), emails=("j@x.example",), phones=("+49 30 1",),
                                  organizations=("ACME",)))
    assert (identity.names, identity.emails, identity.phones, identity.organizations) == (
        ("Jane Doe",), ("j@x.example",), ("+49 30 1",), ("ACME",))
