"""PII redaction: the corpus table, E9, idempotence and the post-scan tripwire, hashed ids, rule errors."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketbridge.sync.policy.redact import (
    _FOLD_TO_ASCII,
    KINDS,
    Finding,
    Identity,
    Redacted,
    RedactionKeyError,
    RedactionRules,
    _identity_detector,
    hash_value,
    key_from_env,
    post_scan,
    redact,
    redact_fields,
)

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "redaction_corpus.yaml").read_text(encoding="utf-8"))
RULES = RedactionRules()


def _identity(data: dict[str, list[str]] | None) -> Identity:
    return Identity(**{key: tuple(values) for key, values in (data or {}).items()})


# --------------------------------------------------------------------------------------------------
# The corpus, table-driven
# --------------------------------------------------------------------------------------------------


def test_corpus_is_large_enough_and_covers_every_kind() -> None:
    ids = [entry["id"] for entry in CORPUS["redact"] + CORPUS["keep"]]
    assert len(CORPUS["redact"]) >= 60
    assert len(CORPUS["keep"]) >= 30
    assert len(ids) == len(set(ids)), "corpus ids must be unique"
    covered = {kind for entry in CORPUS["redact"] for kind in entry["kinds"]}
    assert covered == set(KINDS)


@pytest.mark.parametrize("entry", CORPUS["redact"], ids=[entry["id"] for entry in CORPUS["redact"]])
def test_corpus_redacts(entry: dict[str, Any]) -> None:
    identity = _identity(entry.get("identity"))
    result = redact(entry["text"], RULES, identity)
    assert result.text == entry["expected"]
    assert Counter(f.kind for f in result.findings) == Counter(entry["kinds"])
    # Offsets refer to the input, are ordered and never overlap (no double replacement).
    ends = [0]
    for finding in result.findings:
        assert ends[-1] <= finding.start < finding.end <= len(entry["text"])
        ends.append(finding.end)
    assert post_scan(result.text, RULES, identity) == ()
    assert redact(result.text, RULES, identity) == Redacted(result.text, ())


@pytest.mark.parametrize("entry", CORPUS["keep"], ids=[entry["id"] for entry in CORPUS["keep"]])
def test_corpus_keeps(entry: dict[str, Any]) -> None:
    identity = _identity(entry.get("identity"))
    assert redact(entry["text"], RULES, identity) == Redacted(entry["text"], ())
    assert post_scan(entry["text"], RULES, identity) == ()


# --------------------------------------------------------------------------------------------------
# E9 and overlap rules
# --------------------------------------------------------------------------------------------------

E9_TEXT = "call +49 30 1234567 or jane.doe@example.com (Jane Doe, ACME GmbH)"
E9_EXPECTED = (
    "call [REDACTED:phone] or [REDACTED:email] ([REDACTED:requester_identity], [REDACTED:requester_identity])"
)


def test_e9_exactly() -> None:
    result = redact(E9_TEXT, RedactionRules(), Identity(names=("Jane Doe",), organizations=("ACME GmbH",)))
    assert result.text == E9_EXPECTED
    assert result.counts == {"phone": 1, "email": 1, "requester_identity": 2}
    assert [E9_TEXT[f.start : f.end] for f in result.findings] == [
        "+49 30 1234567",
        "jane.doe@example.com",
        "Jane Doe",
        "ACME GmbH",
    ]


def test_e9_generic_kind_wins_when_the_requester_email_and_phone_are_also_listed() -> None:
    identity = Identity(
        names=("Jane Doe",), emails=("jane.doe@example.com",), phones=("+49 30 1234567",), organizations=("ACME GmbH",)
    )
    assert redact(E9_TEXT, RULES, identity).text == E9_EXPECTED


@pytest.mark.parametrize(
    ("text", "identity", "expected"),
    [
        # An identity word inside an email: the longer email wins, one token.
        ("jane@example.com", Identity(organizations=("Example",)), "[REDACTED:email]"),
        # Name and organization overlap: the longest match at the same start wins.
        (
            "ACME GmbH Berlin",
            Identity(names=("ACME",), organizations=("ACME GmbH",)),
            "[REDACTED:requester_identity] Berlin",
        ),
        # An email inside a secret query value: the query value starts first and covers it.
        (
            "https://x.example.com/?token=jane@example.com",
            Identity(),
            "https://x.example.com/?token=[REDACTED:url_query_tokens]",
        ),
        # A phone number and a card glued by a single space: the union goes, nothing of either survives.
        ("+49 30 1234567 4111 1111 1111 1111", Identity(), "[REDACTED:phone]"),
    ],
)
def test_overlaps_give_one_replacement(text: str, identity: Identity, expected: str) -> None:
    result = redact(text, RULES, identity)
    assert result.text == expected
    assert len(result.findings) == 1


def test_url_credentials_keep_scheme_host_and_path() -> None:
    result = redact("see https://bob:hunter2@git.example.com:8443/org/repo.git?ref=main", RULES)
    assert result.text == "see https://[REDACTED:url_credentials]@git.example.com:8443/org/repo.git?ref=main"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Two numbers with only a space between them: both go, neither swallows a piece of the other.
        ("+49 30 1234567 030 7654321", "[REDACTED:phone] [REDACTED:phone]"),
        ("(+49 30 1234567)", "([REDACTED:phone])"),
        ("agent 030 7654321", "agent [REDACTED:phone]"),
        ("https://x.example.com/+49 30 1234567", "https://x.example.com/[REDACTED:phone]"),
        # A national number in a path is an id, not a phone number.
        ("https://x.example.com/orders/030 7654321", "https://x.example.com/orders/030 7654321"),
    ],
)
def test_phone_boundaries(text: str, expected: str) -> None:
    assert redact(text, RULES).text == expected


def test_two_numbers_in_one_sentence() -> None:
    text = "Phone +49 30 1234567, mobile 0171 2345678, card 5555 5555 5555 4444."
    assert redact(text, RULES).text == "Phone [REDACTED:phone], mobile [REDACTED:phone], card [REDACTED:payment_card]."


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("v10.0.0.1", False),
        ("version 10.0.0.1", False),
        ("Version: 10.0.0.1", False),
        ("release 10.0.0.1", False),
        ("10.0.0.1-beta", False),
        ("host 10.0.0.1", True),
        ("client 10.0.0.1", True),
        ("10.0.0.1", True),
        ("see 10.0.0.1-10.0.0.9", True),
    ],
)
def test_four_part_versions_versus_addresses(text: str, redacted: bool) -> None:
    assert bool(redact(text, RULES).findings) is redacted


def test_scrub_selects_the_detectors() -> None:
    text = "call +49 30 1234567 or jane.doe@example.com (Jane Doe)"
    identity = Identity(names=("Jane Doe",))
    only_email = RedactionRules(scrub=("email",))
    assert redact(text, only_email, identity).text == "call +49 30 1234567 or [REDACTED:email] (Jane Doe)"
    assert redact(text, RedactionRules(scrub=()), identity) == Redacted(text, ())
    # Without requester_identity in scrub, the identity is not used at all.
    no_identity = RedactionRules(scrub=("email", "phone"))
    assert redact(text, no_identity, identity).text == "call [REDACTED:phone] or [REDACTED:email] (Jane Doe)"


def test_custom_replacement() -> None:
    rules = RedactionRules(replacement="<{kind} removed>")
    assert redact("mail a@example.com", rules).text == "mail <email removed>"
    fixed = RedactionRules(replacement="***")
    once = redact("a@example.com, https://u:p@h.example.com", fixed)
    assert once.text == "***, https://***@h.example.com"
    assert redact(once.text, fixed) == Redacted(once.text, ())


def test_residual_after_replacement_is_redacted_too() -> None:
    # With a bracket-less replacement, "call XX 1234567" makes the second number look like a phone
    # number only after the first one is replaced. The output must still pass the post-scan.
    rules = RedactionRules(replacement="XX")
    result = redact("call 030 1234567 1234567", rules)
    assert result.text == "call XX XX"
    assert [("call 030 1234567 1234567")[f.start : f.end] for f in result.findings] == ["030 1234567", "1234567"]
    assert post_scan(result.text, rules) == ()


def test_identity_tolerates_gaps_and_lists() -> None:
    identity = Identity(names=["Jane Doe", ""], phones=[None], emails=["jane@intranet"])  # type: ignore[arg-type]
    assert identity == Identity(names=("Jane Doe",), emails=("jane@intranet",))
    assert redact("Jane Doe, jane@intranet", RULES, identity).text == (
        "[REDACTED:requester_identity], [REDACTED:requester_identity]"
    )


def test_identity_phone_matches_any_formatting_but_not_a_longer_number() -> None:
    identity = Identity(phones=("+49 30 1234567",))
    rules = RedactionRules(scrub=("requester_identity",))
    assert redact("ring 0049 (30) 123-45-67", rules, identity).text == "ring [REDACTED:requester_identity]"
    assert redact("ring 49301234567", rules, identity).text == "ring [REDACTED:requester_identity]"
    assert redact("id 493012345678", rules, identity).findings == ()


def test_hash_tokens_pass_the_post_scan() -> None:
    tokens = " ".join(hash_value(str(n), b"k") for n in range(2000))
    assert post_scan(tokens, RULES) == ()


def test_post_scan_reports_what_is_left() -> None:
    assert post_scan("mail a@example.com", RULES) == (Finding("email", 5, 18),)
    assert post_scan("mail [REDACTED:email]", RULES) == ()


def test_counts() -> None:
    result = Redacted("x", (Finding("email", 0, 1), Finding("phone", 2, 3), Finding("email", 4, 5)))
    assert result.counts == {"email": 2, "phone": 1}
    assert Redacted("x", ()).counts == {}


@pytest.mark.parametrize(
    "text",
    [
        "1" * 20_000,
        "1 " * 10_000,
        "1-" * 10_000,
        "+(1) " * 4_000,
        "a@" * 10_000,
        "a." * 10_000 + "@",
        "1:" * 10_000,
        "DE89" + " 1234" * 5_000,
        "https://" + "a:" * 10_000,
        "?token=&" * 5_000,
    ],
    ids=lambda text: repr(text[:8]),
)
def test_pathological_input_is_fast(text: str) -> None:
    started = time.perf_counter()
    result = redact(text, RULES, Identity(names=("Jane Doe",), phones=("+49 30 1234567",)))
    assert time.perf_counter() - started < 10
    assert post_scan(result.text, RULES) == ()


# --------------------------------------------------------------------------------------------------
# Properties: idempotence and the post-scan tripwire on any text
# --------------------------------------------------------------------------------------------------

ALL_IDENTITY = Identity(
    names=tuple(sorted({v for e in CORPUS["redact"] + CORPUS["keep"] for v in e.get("identity", {}).get("names", [])})),
    emails=tuple(sorted({v for e in CORPUS["redact"] for v in e.get("identity", {}).get("emails", [])})),
    phones=tuple(sorted({v for e in CORPUS["redact"] for v in e.get("identity", {}).get("phones", [])})),
    organizations=tuple(sorted({v for e in CORPUS["redact"] for v in e.get("identity", {}).get("organizations", [])})),
)
PII_TEXTS = [entry["text"] for entry in CORPUS["redact"]]
SAFE_TEXTS = [entry["text"] for entry in CORPUS["keep"]]
# Glue that can merge neighbours into something new ("" joins digits, "@" makes emails).
SEPARATORS = ["", " ", "\n", ", ", " and ", "-", ".", ":", "@", "/"]
REPLACEMENTS = ["[REDACTED:{kind}]", "<{kind}>", "XX", "{kind}", "*"]
FRAGMENTS = st.one_of(
    st.sampled_from(PII_TEXTS),
    st.sampled_from(SAFE_TEXTS),
    st.text(max_size=12),
    st.text(alphabet="0123456789 +-./()@:[]?&=#abcdefxyzDE", max_size=24),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(FRAGMENTS, max_size=8),
    separators=st.lists(st.sampled_from(SEPARATORS), min_size=8, max_size=8),
    replacement=st.sampled_from(REPLACEMENTS),
)
def test_redaction_is_idempotent_and_passes_post_scan(
    parts: list[str], separators: list[str], replacement: str
) -> None:
    text = "".join(part + sep for part, sep in zip(parts, separators, strict=False))
    rules = RedactionRules(replacement=replacement)
    result = redact(text, rules, ALL_IDENTITY)
    assert post_scan(result.text, rules, ALL_IDENTITY) == ()
    again = redact(result.text, rules, ALL_IDENTITY)
    assert again.text == result.text
    assert again.findings == ()


# Atomic PII values with the part that must never survive, however they are surrounded by ordinary
# ticket text.
SECRETS = [
    ("jane.doe@example.com", "jane.doe@example.com"),
    ("+49 30 1234567", "1234567"),
    ("+1 (415) 555-0100", "555-0100"),
    ("0049-30-1234567", "1234567"),
    ("030 7654321", "7654321"),
    ("4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("5555555555554444", "5555555555554444"),
    ("DE89 3704 0044 0532 0130 00", "0532 0130"),
    ("203.0.113.42", "203.0.113.42"),
    ("2001:db8::8a2e:370:7334", "8a2e:370:7334"),
    ("https://bob:pa55w0rd@git.example.com/r", "pa55w0rd"),
    ("https://x.example.com/cb?code=s3cr3tc0de&page=2", "s3cr3tc0de"),
    ("Jane Doe", "Jane Doe"),
    ("ACME GmbH", "ACME GmbH"),
]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.one_of(st.sampled_from(SECRETS), st.sampled_from(SAFE_TEXTS)), min_size=1, max_size=8),
    separator=st.sampled_from([" ", "\n", ", ", " and ", "; ", " | ", " (", ") "]),
)
def test_no_pii_survives_among_ordinary_text(parts: list[Any], separator: str) -> None:
    text = separator.join(part[0] if isinstance(part, tuple) else part for part in parts)
    result = redact(text, RULES, Identity(names=("Jane Doe",), organizations=("ACME GmbH",)))
    safe = [part for part in parts if isinstance(part, str)]
    for part in parts:
        if isinstance(part, tuple):
            # Whole-word occurrences only: "Jane Doerr" or "latency 1234567 us" are not the secret.
            marker = re.compile(r"(?<![\w.:-])" + re.escape(part[1]) + r"(?![\w:-]|\.\w)")
            assert len(marker.findall(result.text)) == sum(len(marker.findall(s)) for s in safe)


# --------------------------------------------------------------------------------------------------
# Hashed customer ids and structured fields
# --------------------------------------------------------------------------------------------------


def test_hash_value_is_a_short_stable_keyed_token() -> None:
    token = hash_value("12345", b"key-one")
    assert re.fullmatch(r"cust_[0-9a-f]{12}", token)
    assert hash_value("12345", b"key-one") == token
    assert hash_value("12345", b"key-two") != token
    assert hash_value("12346", b"key-one") != token
    assert "12345" not in token
    with pytest.raises(RedactionKeyError):
        hash_value("12345", b"")


def test_redact_fields_redacts_text_and_hashes_ids() -> None:
    rules = RedactionRules(hashed_fields=("customer_id", "requester.external_id"))
    identity = Identity(names=("Jane Doe",))
    fields = {
        "subject": "Export fails for Jane Doe",
        "description": "call +49 30 1234567",
        "severity": "sev2",
        "customer_id": 12345,
        "requester": {"external_id": "ext-777", "note": "mail jane@example.com"},
        "labels": ["from-support", "jane@example.com"],
        "card_on_file": 4111111111111111,
        "attempts": 3,
        "flag": True,
        "missing": None,
    }
    out, findings = redact_fields(fields, rules, identity, b"k1")
    assert out == {
        "subject": "Export fails for [REDACTED:requester_identity]",
        "description": "call [REDACTED:phone]",
        "severity": "sev2",
        "customer_id": hash_value("12345", b"k1"),
        "requester": {"external_id": hash_value("ext-777", b"k1"), "note": "mail [REDACTED:email]"},
        "labels": ["from-support", "[REDACTED:email]"],
        "card_on_file": "[REDACTED:payment_card]",
        "attempts": 3,
        "flag": True,
        "missing": None,
    }
    assert [(f.field, f.kind) for f in findings] == [
        ("subject", "requester_identity"),
        ("description", "phone"),
        ("requester.note", "email"),
        ("labels[1]", "email"),
        ("card_on_file", "payment_card"),
    ]
    assert findings[1] == Finding("phone", 5, 19, "description")
    # Stable per key, different across keys.
    again, _ = redact_fields(fields, rules, identity, b"k1")
    assert again["customer_id"] == out["customer_id"]
    other, _ = redact_fields(fields, rules, identity, b"k2")
    assert other["customer_id"] != out["customer_id"]
    assert other["requester"]["external_id"] != out["requester"]["external_id"]


def test_redact_fields_hashes_each_id_of_a_list() -> None:
    rules = RedactionRules(hashed_fields=("org_ids",))
    out, _ = redact_fields({"org_ids": [1, 2]}, rules, Identity(), b"k")
    assert out == {"org_ids": [hash_value("1", b"k"), hash_value("2", b"k")]}


@pytest.mark.parametrize("key", [None, b""])
def test_redact_fields_without_key_names_the_env_var(key: bytes | None) -> None:
    rules = RedactionRules(hashed_fields=("customer_id",), hash_key_env="ACME_REDACTION_KEY")
    with pytest.raises(RedactionKeyError, match="ACME_REDACTION_KEY"):
        redact_fields({"subject": "hello"}, rules, Identity(), key)
    with pytest.raises(RedactionKeyError, match="TICKETBRIDGE_REDACTION_KEY"):
        redact_fields({"customer_id": 1}, RedactionRules(hashed_fields=("customer_id",)), Identity(), None)


def test_redact_fields_needs_no_key_without_hashed_fields() -> None:
    out, findings = redact_fields({"subject": "mail a@example.com"}, RULES, Identity(), None)
    assert out == {"subject": "mail [REDACTED:email]"}
    assert findings == (Finding("email", 5, 18, "subject"),)


def test_key_from_env() -> None:
    rules = RedactionRules(hash_key_env="MY_KEY")
    assert key_from_env(rules, {"MY_KEY": "s3cret"}) == b"s3cret"
    assert key_from_env(rules, {"MY_KEY": ""}) is None
    assert key_from_env(rules, {"TICKETBRIDGE_REDACTION_KEY": "x"}) is None


# --------------------------------------------------------------------------------------------------
# Rules from the policy YAML
# --------------------------------------------------------------------------------------------------

SKETCH_BLOCK = """
mode: allowlist_fields
scrub_free_text: [email, phone, iban, payment_card_luhn, ipv4, ipv6, url_credentials,
                  url_query_tokens, requester_identity]
requester_identity: [requester.name, requester.email, requester.phone,
                     organization.name, ccs.*, followers.*]
attachments: drop
replacement: "[REDACTED:{kind}]"
post_scan: block_and_notify
"""


def test_from_data_accepts_the_policy_sketch_block() -> None:
    rules = RedactionRules.from_data(yaml.safe_load(SKETCH_BLOCK))
    assert set(rules.scrub) == set(KINDS)
    assert "payment_card" in rules.scrub
    assert rules.replacement == "[REDACTED:{kind}]"


def test_from_data_reads_every_own_key() -> None:
    rules = RedactionRules.from_data(
        {
            "scrub": ["email", "phone", "email"],
            "replacement": "<{kind}>",
            "hashed_fields": ["customer_id"],
            "hash_key_env": "ACME_KEY",
        }
    )
    assert rules == RedactionRules(
        scrub=("email", "phone"), replacement="<{kind}>", hashed_fields=("customer_id",), hash_key_env="ACME_KEY"
    )
    assert RedactionRules.from_data({}) == RedactionRules()
    assert RedactionRules.from_data({"scrub": []}).scrub == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scrub": ["email", "emails"]}, "unknown kind.*'emails'"),
        ({"scrub_free_text": ["ssn"]}, "unknown kind.*'ssn'"),
        ({"scrub": "email"}, r"redaction\.scrub: expected a list"),
        ({"scrub": ["email", 3]}, r"redaction\.scrub: expected strings"),
        ({"scrub": ["email"], "scrub_free_text": ["phone"]}, "either scrub or scrub_free_text"),
        ({"scrubb": ["email"]}, "unknown key.*scrubb"),
        ({"replacement": ""}, "replacement"),
        ({"replacement": "[{kind}:{field}]"}, "only placeholder"),
        ({"replacement": 5}, r"redaction\.replacement: expected a string"),
        ({"hashed_fields": "customer_id"}, r"redaction\.hashed_fields: expected a list"),
        ({"hash_key_env": "not a name"}, "hash_key_env"),
        (["email"], "expected a mapping"),
    ],
)
def test_from_data_errors(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedactionRules.from_data(data)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        RedactionRules(scrub=("email", "passport"))
    with pytest.raises(ValueError, match="only placeholder"):
        RedactionRules(replacement="{}")


# --------------------------------------------------------------------------------------------------
# The identity detector's prefilter passes over text only where its pattern finds nothing
# --------------------------------------------------------------------------------------------------

# The first prefilters (its needles are ASCII once case-folded: "\u017fam" is "sam"); the second's
# "Zo\u00eb" has Unicode case rules, so its pattern always runs.
PREFILTER_IDENTITIES = [
    Identity(names=("Jane Doe", "\u017fam Kelvin"), organizations=("ACME GmbH",), emails=("jane.doe@client.example",),
             phones=("+49 30 1234567",)),
    Identity(names=("Jane Doe", "Zo\u00eb Kelvin"), organizations=("ACME GmbH",), emails=("jane.doe@client.example",),
             phones=("+49 30 1234567",)),
]


def _pattern_spans(identity: Identity, text: str) -> list[tuple[int, int]]:
    """What the detector's own pattern finds, with no prefilter in front of it."""
    return [m.span() for m in _identity_detector(identity).pattern.finditer(text)]  # type: ignore[attr-defined]


def test_only_ascii_needles_prefilter() -> None:
    assert [_identity_detector(identity)._prefilter for identity in PREFILTER_IDENTITIES] == [True, False]  # type: ignore[attr-defined]


@pytest.mark.parametrize("identity", PREFILTER_IDENTITIES)
@pytest.mark.parametrize("text", [
    "Nothing personal in here at all.",
    "JANE   doe called", "ask jane.doe@CLIENT.example", "call +49 (30) 123-4567 now", "0049 30 1234567",
    "SAM KELVIN wrote", "\u017fAM \u212aELVIN wrote", "\u212aelvin", "acme\ngmbh", "Jane\t\r\n Doe", "Jane\x1fDoe",
    "Jane\u00a0Doe", "JANE D\u0130E", "SAM KELV\u0130N", "\u017fam kelv\u0131n", "Jane Doesn't",
    "no 4930123456 here", "stra\u00dfe Jane Doe",
])
def test_the_prefilter_finds_what_the_pattern_finds(identity: Identity, text: str) -> None:
    found = list(_identity_detector(identity)(text))
    assert found == _pattern_spans(identity, text)


@pytest.mark.parametrize("identity", PREFILTER_IDENTITIES)
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list(
    "JjaneDOEacmegbhSsKkLlVvIiMm@.+-()/ 0123479 \t\x1f\u00a0\u017f\u212a\u0130\u0131\u00dfkKsS\n")), max_size=60))
def test_the_prefilter_never_hides_a_match(identity: Identity, text: str) -> None:
    assert list(_identity_detector(identity)(text)) == _pattern_spans(identity, text)


def test_the_pattern_is_compiled_only_for_text_that_holds_a_whole_name() -> None:
    # The name's words apart ("Customer" ... "12") are everywhere in tickets; only together can they match.
    detector = _identity_detector(Identity(names=("Customer 12",), organizations=("Client 7 Ltd",)))
    assert list(detector("The customer asked again about ticket 12 for client 7.")) == []
    assert "pattern" not in vars(detector)
    assert list(detector("Reported by CUSTOMER\n 12.")) == [(12, 24)]
    assert "pattern" in vars(detector)


def test_the_prefilter_folds_every_letter_that_matches_an_ascii_one() -> None:
    # The prefilter folds text with _FOLD_TO_ASCII: it must know every character that re's
    # IGNORECASE lets match an ASCII letter or digit (a Python release could add one).
    ascii_class = re.compile(r"[a-z0-9]", re.IGNORECASE)
    for code in range(0x80, sys.maxunicode + 1):
        char = chr(code)
        if ascii_class.match(char):
            folded = char.translate(_FOLD_TO_ASCII)
            assert folded.isascii() and re.fullmatch(re.escape(folded), char, re.IGNORECASE), hex(code)


def test_the_prefilter_passes_over_non_ascii_text_without_the_name() -> None:
    detector = _identity_detector(Identity(names=("Customer 12",)))
    assert list(detector("Zendesk #12 \u00b7 reply by 100000012: still failing")) == []
    assert "pattern" not in vars(detector)
    assert list(detector("\u00b7 CU\u017fTOMER\u00a012 \u00b7")) == [(2, 13)]
