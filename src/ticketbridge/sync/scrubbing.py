"""The redaction of flows that say `redact: true`: the policy's rules bound to one ticket's people.

`policy.redact` holds the pure detectors. This module turns the policy's `redaction:` block into a
`Scrubber` for the engine, and binds it per desk item to the people on that ticket (requester,
organization, CC'd people, followers: removed by exact match), so that `decide` receives a plain
text -> text function (`ItemScrub`) and stays pure.

Two safeguards, as the escalation rules want them (sla-semantics §7.6 PII):
- `scrub` replaces what the rules list; fields named in `hashed_fields` become a keyed hash
  (HMAC, key from the environment) so engineers can correlate without seeing the id.
- `post_scan` is the tripwire on the final outgoing text. It looks for *every* kind the
  detectors know, not only the listed ones: a kind the rules leave out (an older policy without
  `iban`, say) must still stop a customer's IBAN from reaching a public GitHub issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import Item, People
from .policy.redact import (
    Identity,
    RedactionKeyError,
    RedactionRules,
    hash_value,
    key_from_env,
    post_scan,
    redact,
)

# The post-scan's rules: every detector (see the module docstring).
_EVERY_KIND = RedactionRules()
NOBODY = Identity()


def identity_of(people: People) -> Identity:
    return Identity(names=people.names, emails=people.emails, phones=people.phones,
                    organizations=people.organizations)


@dataclass(frozen=True)
class Scrubber:
    """One flow's redaction: the rules and, when `hashed_fields` are configured, the HMAC key."""

    rules: RedactionRules
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.rules.hashed_fields and not self.key:
            # A setup mistake must stop the service at start, not leak ids on the first ticket.
            raise RedactionKeyError(
                f"redaction.hashed_fields {list(self.rules.hashed_fields)} need an HMAC key: "
                f"set the environment variable {self.rules.hash_key_env}")

    @classmethod
    def from_policy(cls, redaction: Mapping[str, Any] | None, environ: Mapping[str, str]) -> Scrubber:
        """From a policy `redaction:` block (None: every kind, no hashed fields)."""
        rules = RedactionRules.from_data(redaction) if redaction else RedactionRules()
        return cls(rules, key_from_env(rules, environ))

    def text(self, text: str, identity: Identity = NOBODY) -> str:
        return redact(text, self.rules, identity).text

    def value(self, field: str, value: Any, identity: Identity = NOBODY) -> Any:
        """A field value leaving the desk: hashed when the field is listed, else scrubbed text."""
        if field in self.rules.hashed_fields:
            assert self.key is not None  # checked in __post_init__
            if value is None:
                return None
            if isinstance(value, list | tuple):
                return [hash_value(str(v), self.key) for v in value]
            return hash_value(str(value), self.key)
        return self.text(value, identity) if isinstance(value, str) else value

    def scan(self, text: str, identity: Identity = NOBODY) -> tuple[str, ...]:
        """The kinds of personal data still in `text` (sorted, each once); () when it is clean.
        Kinds only: the findings' text is never returned, so callers cannot log it."""
        return tuple(sorted({finding.kind for finding in post_scan(text, _EVERY_KIND, identity)}))

    def for_item(self, item: Item) -> ItemScrub:
        return self.for_item_people(item.people)

    def for_item_people(self, people: People) -> ItemScrub:
        return ItemScrub(self, identity_of(people))


@dataclass(frozen=True)
class ItemScrub:
    """The scrubber bound to one desk item's people: what `decide` calls on text leaving the desk."""

    scrubber: Scrubber
    identity: Identity

    def __call__(self, text: str) -> str:
        return self.scrubber.text(text, self.identity)

    def field(self, name: str, value: Any) -> Any:
        return self.scrubber.value(name, value, self.identity)

    def scan(self, text: str) -> tuple[str, ...]:
        return self.scrubber.scan(text, self.identity)


__all__ = ["ItemScrub", "Scrubber", "identity_of"]
