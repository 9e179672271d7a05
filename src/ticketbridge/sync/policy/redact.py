"""PII redaction for everything that crosses from the support desk to an engineering tracker.

Zendesk tickets carry customers' contact details. GitHub issues and Jira tickets are read by many
more people, and a GitHub repository may be public. So every text built from a ticket passes
`redact` first, and the final issue body passes `post_scan` as a tripwire: a non-empty result means
"do not create the issue, notify a support lead" (sla-semantics §7.2 `redaction:`, §7.6 PII, E9).

How it works:
- One small detector per kind yields candidate spans. Detectors validate what a regex cannot:
  Luhn for cards, mod-97 for IBANs, `ipaddress` for IPs, and context for phone numbers.
- Text that is already a replacement token (`[REDACTED:email]`) is never detected again.
- Overlapping candidates are merged into one span (union), so no part of any candidate survives.
  The span that starts first names it; at an equal start the longer one; then generic kinds before
  requester_identity, so E9 reads `[REDACTED:email]` even when the requester's address is listed.
- The output is scanned again. Replacing text can create new context, for example a keyword that
  now sits next to a number. Any residual finding is mapped back to the original and merged in,
  until nothing is found. So `post_scan(redact(x).text) == ()`, and redaction is idempotent.

Pure: no I/O, no clock. The HMAC key is passed in; `key_from_env` only reads the mapping it is given.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "Finding",
    "Identity",
    "Redacted",
    "RedactionKeyError",
    "RedactionRules",
    "hash_value",
    "key_from_env",
    "post_scan",
    "redact",
    "redact_fields",
]

KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "payment_card",
    "iban",
    "ipv4",
    "ipv6",
    "url_credentials",
    "url_query_tokens",
    "requester_identity",
)
# Spellings from the policy sketch (sla-semantics §7.2) that mean the same kind.
_KIND_ALIASES = {"payment_card_luhn": "payment_card"}
# Tie-break when two findings start at the same offset and have the same length (see module docstring).
_PRIORITY = {
    kind: rank
    for rank, kind in enumerate(
        ("url_credentials", "url_query_tokens", "email", "iban", "payment_card", "phone", "ipv6", "ipv4",
         "requester_identity")
    )
}

Span = tuple[int, int]
Detector = Callable[[str], Iterator[Span]]


# --------------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------------


class RedactionKeyError(ValueError):
    """hashed_fields are configured, but no HMAC key was given."""


@dataclass(frozen=True)
class RedactionRules:
    """The policy's `redaction:` block: which kinds to scrub, and how to write replacements."""

    scrub: tuple[str, ...] = (
        "email", "phone", "payment_card", "iban", "ipv4", "ipv6", "url_credentials", "url_query_tokens",
        "requester_identity",
    )
    replacement: str = "[REDACTED:{kind}]"
    hashed_fields: tuple[str, ...] = ()  # customer-id fields, replaced by a keyed hash
    hash_key_env: str = "TICKETBRIDGE_REDACTION_KEY"

    # Keys of the policy block that this module reads.
    _OWN_KEYS = frozenset({"scrub", "scrub_free_text", "replacement", "hashed_fields", "hash_key_env"})
    # Keys from the policy sketch that other parts read (the issue builder and the post-scan
    # action). They are accepted here, so one block can be passed as it is.
    _OTHER_KEYS = frozenset({"mode", "requester_identity", "attachments", "post_scan"})

    def __post_init__(self) -> None:
        # Convert lists to tuples, so that rules stay hashable when built in code.
        object.__setattr__(self, "scrub", tuple(self.scrub))
        object.__setattr__(self, "hashed_fields", tuple(self.hashed_fields))
        unknown = [kind for kind in self.scrub if kind not in KINDS]
        if unknown:
            raise ValueError(f"redaction: unknown kind(s) {', '.join(map(repr, unknown))}; known: {', '.join(KINDS)}")
        if not isinstance(self.replacement, str) or not self.replacement.strip():
            raise ValueError("redaction.replacement: must be a non-empty string such as '[REDACTED:{kind}]'")
        try:
            self.replacement.format(kind="email")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"redaction.replacement {self.replacement!r}: the only placeholder allowed is {{kind}} ({exc!r})"
            ) from None
        if not all(isinstance(name, str) and name for name in self.hashed_fields):
            raise ValueError("redaction.hashed_fields: must be a list of field names")
        if not isinstance(self.hash_key_env, str) or not re.fullmatch(r"[A-Za-z_]\w*", self.hash_key_env):
            raise ValueError(f"redaction.hash_key_env: {self.hash_key_env!r} is not an environment variable name")

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RedactionRules:
        """Build the rules from a policy `redaction:` profile (e.g. the `pii_default` mapping)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"redaction: expected a mapping, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in cls._OWN_KEYS | cls._OTHER_KEYS)
        if unknown:
            known = ", ".join(sorted(cls._OWN_KEYS | cls._OTHER_KEYS))
            raise ValueError(f"redaction: unknown key(s) {', '.join(unknown)}; known: {known}")
        if "scrub" in data and "scrub_free_text" in data:
            raise ValueError("redaction: give either scrub or scrub_free_text, not both")
        kwargs: dict[str, Any] = {}
        for key in ("scrub", "scrub_free_text"):
            if key in data:
                kinds = _string_list(data[key], f"redaction.{key}")
                # Aliases are resolved and duplicates dropped; order is kept.
                kwargs["scrub"] = tuple(dict.fromkeys(_KIND_ALIASES.get(kind, kind) for kind in kinds))
        if "hashed_fields" in data:
            kwargs["hashed_fields"] = _string_list(data["hashed_fields"], "redaction.hashed_fields")
        for key in ("replacement", "hash_key_env"):
            if key in data:
                if not isinstance(data[key], str):
                    raise ValueError(f"redaction.{key}: expected a string, got {type(data[key]).__name__}")
                kwargs[key] = data[key]
        return cls(**kwargs)

    def token(self, kind: str) -> str:
        """The replacement text for one kind, e.g. `[REDACTED:phone]`."""
        return self.replacement.format(kind=kind)


@dataclass(frozen=True)
class Identity:
    """The requester's and CC'd people's identifiers. They are removed by exact, case-insensitive match.

    Only whole values match: "Jane Doe" does not remove a lone "Jane". Pass the name parts
    separately if that is wanted.
    """

    names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Ticket data often has gaps (a requester without a phone number): empty values are dropped,
        # and lists become tuples so that the identity stays hashable.
        for name in ("names", "emails", "phones", "organizations"):
            object.__setattr__(self, name, tuple(str(value) for value in getattr(self, name) if value))


@dataclass(frozen=True)
class Finding:
    """What was found and where: offsets into the scanned text, never the text itself (safe to log).

    `field` is set by `redact_fields`: it is the dotted path of the field the offsets refer to.
    """

    kind: str
    start: int
    end: int
    field: str | None = None


@dataclass(frozen=True)
class Redacted:
    text: str
    findings: tuple[Finding, ...]  # offsets refer to the input text

    @property
    def counts(self) -> dict[str, int]:
        """Number of findings per kind, e.g. {"phone": 1, "email": 1, "requester_identity": 2}."""
        return dict(Counter(finding.kind for finding in self.findings))


# --------------------------------------------------------------------------------------------------
# Detectors: one per kind, each yields (start, end) spans
# --------------------------------------------------------------------------------------------------

# Words just before a dotted number that mark it as a version, not an IPv4 address.
_VERSION_BEFORE = re.compile(
    r"(?i)\b(?:v|ver|version|release|build|firmware|fw|rev|revision|sdk)\.?[ \t]*[:=#]?[ \t]*$"
)


def _after_version_word(text: str, start: int) -> bool:
    return _VERSION_BEFORE.search(text, max(0, start - 30), start) is not None


# Email: the local part may use unicode letters, and the top-level domain is letters only.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])")
# `https://user:pass@host` looks like `pass@host` to an email pattern. This is the URL's userinfo:
# url_credentials removes it and keeps the host.
_IN_URL_AUTHORITY = re.compile(r"://[^\s/?#\[\]]*$")


def _find_emails(text: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(text):
        if not _IN_URL_AUTHORITY.search(text, max(0, m.start() - 256), m.start()):
            yield m.span()


# Phone numbers. Customers write them in many ways: "+49 30 1234567", "+1 (415) 555-0100",
# "0049-30-1234567", "(030) 1234567", "030/1234567". Tickets are also full of other digit runs:
# versions, dates, order numbers, error codes. So a run of digit groups is a phone number only with
# one of these signals:
# - an international prefix (+ or 00);
# - a national trunk 0 followed by an area-code group;
# - a phone keyword just before it.
# A run is cut into digit groups at single separators (space, dash, dot, slash) or parentheses.
# Parentheses count only in pairs, so "(+49 30 1234567" is the number after the bracket.
_PHONE_RUN = re.compile(
    r"(?:\(\+?\d{1,6}\)|\+[ \u00a0]?\d{1,15}|\d{1,15})"
    r"(?:[ \u00a0.\-/](?:\(\d{1,6}\)|\d{1,15})|\(\d{1,6}\)|(?<=\))\d{1,15})*"
)
_PHONE_GROUP = re.compile(r"\(\+?\d+\)|\+[ \u00a0]?\d+|\d+")
_PHONE_KEYWORD = re.compile(
    r"(?i)\b(?:phone|telephone|tel|call|mobile|mob|cell|cellphone|fon|telefon|handy|whatsapp|sms|fax"
    r"|hotline)\b(?P<gap>[^\d\n\[\]]{0,20})$"
)
# Words between a keyword and the number that show the number is not a phone number ("call ID 4711…").
_NOT_A_PHONE_GAP = re.compile(r"(?i)#|\b(?:id|ticket|order|case|ref|build|version|error|code|count)\b")
_DATE_LIKE = re.compile(r"(?<!\d)(\d{1,4})([-./])(\d{1,2})\2(\d{1,4})(?!\d)")
_IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_PHONE_SEPARATORS = " \u00a0.-/()"


def _looks_like_date(candidate: str) -> bool:
    for m in _DATE_LIKE.finditer(candidate):
        a, b, c = int(m.group(1)), int(m.group(3)), int(m.group(4))
        if len(m.group(1)) == 4 and 1 <= b <= 12 and 1 <= c <= 31:  # 2026-11-23
            return True
        if len(m.group(4)) in (2, 4) and 1 <= a <= 31 and 1 <= b <= 12:  # 23.11.2026, 11/23/26
            return True
        if len(m.group(4)) in (2, 4) and 1 <= a <= 12 and 1 <= b <= 31:
            return True
    return False


def _phone_keyword_before(text: str, start: int) -> bool:
    m = _PHONE_KEYWORD.search(text, max(0, start - 40), start)
    return m is not None and not _NOT_A_PHONE_GAP.search(m.group("gap"))


def _is_phone(text: str, start: int, end: int) -> bool:
    candidate = text[start:end]
    digits = re.sub(r"\D", "", candidate)
    if not 6 <= len(digits) <= 17:  # cheap first: most windows are too short or too long
        return False
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    international = candidate.startswith(("+", "(+"))
    # Not part of a word, a longer number, a path, an amount or an identifier such as "#0301234567".
    # A leading + is a strong enough signal to accept "x.com/+49 30 1234567" as well.
    if before.isalnum() or before == "_" or after.isalnum() or after in "_@":
        return False
    if not international and before in "+#@/.,-$€£":
        return False
    # Not a piece of a longer dash- or dot-joined number ("0049-30-1234567-89" is one token).
    if after in "-./" and text[end + 1 : end + 2].isdigit():
        return False
    if candidate.count("(") != candidate.count(")"):
        return False
    if _looks_like_date(candidate) or _IPV4_SHAPE.fullmatch(candidate):
        return False
    separated = any(char in _PHONE_SEPARATORS for char in candidate.lstrip("+("))
    if international:
        # E.164 has at most 15 digits. An unseparated "+1000000" is more likely a count than a number.
        return digits[:1] != "0" and 7 <= len(digits) <= 15 and (separated or len(digits) >= 10)
    keyword = _phone_keyword_before(text, start)
    if digits.startswith("00") and digits[2:3] not in ("", "0"):
        if 7 <= len(digits) - 2 <= 15 and (separated or keyword):
            return True
    elif digits.startswith("0"):
        # Trunk prefix: "030 1234567" or "(030) 1234567". The area-code group has 2-5 digits, so
        # "0.5 12345678" is not a phone number.
        area = _PHONE_GROUP.match(candidate)
        if area and area.end() < len(candidate) and 2 <= len(area.group().strip("()")) <= 5:
            return 8 <= len(digits) <= 13 or (keyword and len(digits) <= 15)
    return keyword and 6 <= len(digits) <= 15


def _find_phones(text: str) -> Iterator[Span]:
    for m in _PHONE_RUN.finditer(text):
        groups = [g.span() for g in _PHONE_GROUP.finditer(text, m.start(), m.end())]
        yield from _best_windows(groups, lambda s, e: _is_phone(text, s, e), max_groups=8)


def _best_windows(groups: list[Span], accept: Callable[[int, int], bool], max_groups: int) -> list[Span]:
    """Windows of consecutive groups that `accept` takes, covering as much of the run as possible.

    A greedy run can glue numbers together: "ref 1234 4111 1111 1111 1111", or two phone numbers with
    one space between them. So every window of up to `max_groups` groups is tried. The windows that
    cover the most characters win; at equal coverage, fewer (longer) windows win.
    """
    n = len(groups)
    # best[i] = (characters covered, -windows used, end group of the window taken at i or None) for groups[i:].
    best: list[tuple[int, int, int | None]] = [(0, 0, None)] * (n + 1)
    for i in range(n - 1, -1, -1):
        choice: tuple[int, int, int | None] = (best[i + 1][0], best[i + 1][1], None)
        for j in range(i + 1, min(n, i + max_groups) + 1):
            start, end = groups[i][0], groups[j - 1][1]
            if accept(start, end):
                option = (best[j][0] + end - start, best[j][1] - 1, j)
                if option[:2] > choice[:2]:
                    choice = option
        best[i] = choice
    windows = []
    i = 0
    while i < n:
        taken = best[i][2]
        if taken is None:
            i += 1
        else:
            windows.append((groups[i][0], groups[taken - 1][1]))
            i = taken
    return windows


# Payment cards: 13-19 digits, single spaces or dashes allowed. A card counts only when it passes Luhn
# and starts like an issued card (2-6). This skips epoch-millisecond timestamps and most order
# numbers.
_DIGIT_RUN = re.compile(r"\d+(?:[ \-]\d+)*")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _is_card(text: str, start: int, end: int) -> bool:
    digits = re.sub(r"\D", "", text[start:end])
    if not 13 <= len(digits) <= 19:
        return False
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or before in "_+#.,/-" or after.isalnum() or after == "_":
        return False
    if after in "-." and text[end + 1 : end + 2].isdigit():
        return False
    return digits[0] in "23456" and _luhn_ok(digits)


def _find_cards(text: str) -> Iterator[Span]:
    for m in _DIGIT_RUN.finditer(text):
        groups = [g.span() for g in re.finditer(r"\d+", text[m.start() : m.end()])]
        groups = [(s + m.start(), e + m.start()) for s, e in groups]
        yield from _best_windows(groups, lambda s, e: _is_card(text, s, e), max_groups=19)


# IBAN: a country code, two check digits, then the account number, in groups of four or unspaced.
# It counts only when the mod-97 check passes and the length fits the country, where the country is
# known. Then about 1 in 97 random strings of this shape still passes.
_IBAN = re.compile(
    r"(?i)(?<![A-Z0-9])[A-Z]{2}\d{2}(?:(?: [A-Z0-9]{4})+(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})(?![A-Z0-9])"
)
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    if not (15 <= len(compact) <= 34) or (expected is not None and len(compact) != expected):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _find_ibans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        # The last group(s) may be a following word ("... 0130 00 CASH"): try shorter prefixes too.
        spaces = [m.start() + g.start() for g in re.finditer(" ", m.group())]
        for end in [m.end(), *reversed(spaces)]:
            if _iban_ok(text[m.start() : end]):
                yield m.start(), end
                break


# IPv4: four valid octets (the `ipaddress` module rejects 256 and leading zeros). Not "v10.0.0.1"
# or "version 1.2.3.4", and not "1.2.3.4-rc1": a four-part version can also be a valid address.
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)")
_VERSION_SUFFIX = re.compile(r"(?i)[-+](?:alpha|beta|rc|dev|pre|snapshot|build)")


def _find_ipv4(text: str) -> Iterator[Span]:
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if _after_version_word(text, m.start()) or _VERSION_SUFFIX.match(text, m.end()):
            continue
        yield m.span()


# IPv6: candidates are runs of hex groups and colons, with an optional embedded IPv4 or zone, and
# `ipaddress` decides. Times ("10:15:30") and MAC addresses are not valid IPv6. "::" and "::1" are
# skipped: they identify no one. A valid address needs at least two non-empty groups.
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?:%[\w.]+)?(?![\w:]|\.\d)"
)


def _find_ipv6(text: str) -> Iterator[Span]:
    for m in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(m.group())
        except ValueError:
            continue
        if len([group for group in re.split(r"[:%]", m.group().split("%")[0]) if group]) >= 2:
            yield m.span()


# Credentials in URLs: `scheme://user:pass@host` loses only `user:pass`; scheme and host stay for
# debugging. The userinfo runs up to the last @ before the path, since passwords sometimes contain a
# raw @.
_URL_USERINFO = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://(?P<userinfo>[^\s/?#\[\]<>\"']+)@")


def _find_url_credentials(text: str) -> Iterator[Span]:
    for m in _URL_USERINFO.finditer(text):
        yield m.span("userinfo")


# Secret-looking query or fragment parameters (`?access_token=...`, `#code=...`): only the value goes.
# The name is split at - _ . so `X-Amz-Signature`, `client_secret` and `refresh_token` count, and
# `keyword` or `sort` do not.
_QUERY_PARAM = re.compile(r"[?&;#](?P<name>[\w.\-]+)=(?P<value>[^&#;\s<>\"'\[\]]*)")
_SECRET_PARAM_WORDS = frozenset({
    "token", "access_token", "api_key", "apikey", "accesstoken", "key", "secret", "password", "passwd", "pwd",
    "sig", "signature", "auth", "authorization", "session", "sessionid", "code", "credential", "credentials",
    "jwt", "sid", "jsessionid", "phpsessid",
})


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAM_WORDS or any(part in _SECRET_PARAM_WORDS for part in re.split(r"[-_.]", lowered))


def _find_url_query_tokens(text: str) -> Iterator[Span]:
    for m in _QUERY_PARAM.finditer(text):
        if not _is_secret_param(m.group("name")):
            continue
        start, end = m.span("value")
        # Sentence punctuation after a URL is not part of the value: "...?token=abc)."
        while end > start and text[end - 1] in ".,:!?)'\"":
            end -= 1
        if end > start:
            yield start, end


_NON_DIGITS = re.compile(r"\D")


# Requester identity: exact values, matched case-insensitively as whole words. Names and
# organizations allow any whitespace between their words. Phone numbers allow any separators
# between their digits.
@functools.lru_cache(maxsize=256)
def _identity_detector(identity: Identity) -> Detector:
    patterns: list[str] = []
    # What each pattern's matches must contain (a name's words one space apart once the text's
    # whitespace is, an email, a phone's digits), to pass over the usual text, which names nobody,
    # without compiling this ticket's pattern.
    needles: list[str] = []
    digit_runs: list[str] = []
    for value in (*identity.names, *identity.organizations):
        words = value.split()
        if words and len(" ".join(words)) >= 2:
            patterns.append(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)")
            needles.append(" ".join(words).casefold())
    for value in identity.emails:
        if value.strip():
            patterns.append(r"(?<![\w.%+-])" + re.escape(value.strip()) + r"(?![\w-])")
            needles.append(value.strip().casefold())
    for value in identity.phones:
        digits = _NON_DIGITS.sub("", value)
        digits = digits[2:] if value.strip().startswith("00") else digits
        if len(digits) >= 6:
            patterns.append(r"(?<![\w+])(?:\+|00)?" + r"[\s().\-/]*".join(digits) + r"(?!\d)")
            digit_runs.append(digits)
    if not patterns:
        return lambda _text: iter(())
    return _IdentityDetector(patterns, needles, digit_runs)


# Under re.IGNORECASE an ASCII letter matches itself, its other case and these four letters, nothing
# else (a test checks every code point): folded this way, a text holds every ASCII needle it matches.
_FOLD_TO_ASCII = str.maketrans({**{c: c.lower() for c in string.ascii_uppercase},
                                "\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


class _IdentityDetector:
    """One ticket's identity pattern, compiled only when a text may match it."""

    def __init__(self, patterns: list[str], needles: list[str], digit_runs: list[str]) -> None:
        self._patterns, self._needles, self._digit_runs = patterns, needles, digit_runs
        # ASCII needles only: a case-insensitive match of one contains it in the text case-folded
        # by `_FOLD_TO_ASCII` (a non-ASCII needle's case rules are Unicode's: its pattern always runs).
        self._prefilter = all(needle.isascii() for needle in (*needles, *digit_runs))

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        # Longest first, so that "ACME GmbH" wins over "ACME" at the same position.
        return re.compile("|".join(sorted(self._patterns, key=len, reverse=True)), re.IGNORECASE)

    def __call__(self, text: str) -> Iterator[Span]:
        if self._prefilter:
            folded = text.lower() if text.isascii() else text.translate(_FOLD_TO_ASCII)
            folded = " ".join(folded.split())  # split() separates at every character \s matches
            if not any(needle in folded for needle in self._needles) and not self._has_digit_run(text):
                return iter(())
        return (m.span() for m in self.pattern.finditer(text))

    def _has_digit_run(self, text: str) -> bool:
        if not self._digit_runs:
            return False
        digits = _NON_DIGITS.sub("", text)
        return any(run in digits for run in self._digit_runs)


_DETECTORS: dict[str, Detector] = {
    "email": _find_emails,
    "phone": _find_phones,
    "payment_card": _find_cards,
    "iban": _find_ibans,
    "ipv4": _find_ipv4,
    "ipv6": _find_ipv6,
    "url_credentials": _find_url_credentials,
    "url_query_tokens": _find_url_query_tokens,
}


# --------------------------------------------------------------------------------------------------
# Detection, merging, replacement
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _tokens(rules: RedactionRules) -> frozenset[str]:
    return frozenset(rules.token(kind) for kind in KINDS)


def _protected_spans(text: str, rules: RedactionRules) -> list[Span]:
    """Where the text already holds a replacement token (of any kind)."""
    spans = []
    for token in _tokens(rules):
        at = text.find(token)
        while at != -1:
            spans.append((at, at + len(token)))
            at = text.find(token, at + 1)
    return spans


def _merge(findings: list[Finding]) -> list[Finding]:
    """Merge overlapping findings into one. The first (then longest, then higher-priority) names it."""
    merged: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, f.start - f.end, _PRIORITY[f.kind])):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            if f.end > last.end:
                merged[-1] = Finding(last.kind, last.start, f.end)
            continue
        merged.append(f)
    return merged


def _detect(text: str, rules: RedactionRules, identity: Identity) -> list[Finding]:
    found: list[Finding] = []
    for kind in rules.scrub:
        detector = _identity_detector(identity) if kind == "requester_identity" else _DETECTORS[kind]
        found.extend(Finding(kind, start, end) for start, end in detector(text) if end > start)
    protected = _protected_spans(text, rules)
    # Detection inside an existing token is not PII. This is what makes redaction idempotent, also
    # for replacements without brackets.
    found = [f for f in found if not any(s <= f.start and f.end <= e for s, e in protected)]
    return _merge(found)


def _apply(text: str, findings: list[Finding], rules: RedactionRules) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Replace each finding. Returns the text and (out_start, out_end, orig_start, orig_end) per token."""
    pieces: list[str] = []
    segments: list[tuple[int, int, int, int]] = []
    last = out_len = 0
    for f in findings:
        pieces.append(text[last : f.start])
        out_len += f.start - last
        token = rules.token(f.kind)
        pieces.append(token)
        segments.append((out_len, out_len + len(token), f.start, f.end))
        out_len += len(token)
        last = f.end
    pieces.append(text[last:])
    return "".join(pieces), segments


def _to_original(f: Finding, segments: list[tuple[int, int, int, int]]) -> Finding:
    """Map a finding in the redacted text back to the input. A token it touches counts as a whole."""
    start = end = None
    delta = 0  # original offset minus output offset, left of the current segment
    for out_start, out_end, orig_start, orig_end in segments:
        if start is None and f.start < out_end:
            start = f.start + delta if f.start < out_start else orig_start
        if end is None and f.end <= out_end:
            end = f.end + delta if f.end <= out_start else orig_end
        delta += (orig_end - orig_start) - (out_end - out_start)
    return Finding(f.kind, f.start + delta if start is None else start, f.end + delta if end is None else end)


def redact(text: str, rules: RedactionRules, identity: Identity = Identity()) -> Redacted:
    """Replace every PII finding in `text` with `rules.replacement`. Finding offsets refer to `text`."""
    findings = _detect(text, rules, identity)
    if not findings:  # the usual text: nothing to replace, so nothing new to find either
        return Redacted(text, ())
    # Each round either covers more of the input or merges two findings, so the loop ends. The bound
    # is only a guard.
    for _ in range(len(text) + 2):
        out, segments = _apply(text, findings, rules)
        residual = _detect(out, rules, identity)
        if not residual:
            return Redacted(out, tuple(findings))
        findings = _merge(findings + [_to_original(f, segments) for f in residual])
    raise AssertionError("redaction did not converge")  # pragma: no cover - see the loop comment


def post_scan(text: str, rules: RedactionRules, identity: Identity = Identity()) -> tuple[Finding, ...]:
    """What still looks like PII. This is () for any output of `redact`. Non-empty: do not create the issue."""
    return tuple(_detect(text, rules, identity))


# --------------------------------------------------------------------------------------------------
# Structured fields and hashed customer ids
# --------------------------------------------------------------------------------------------------


def hash_value(value: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 token such as "cust_3f9a1c2b7d4e".

    The token is stable per key, so engineers can correlate tickets of one customer without seeing the
    id. Without the key, the id cannot be brute-forced back from the token. 48 bits are enough to
    correlate; they are not meant as a unique key.
    """
    if not key:
        raise RedactionKeyError("hash_value needs a non-empty key")
    return "cust_" + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def key_from_env(rules: RedactionRules, environ: Mapping[str, str]) -> bytes | None:
    """The HMAC key from `environ[rules.hash_key_env]`, or None when it is unset or empty."""
    value = environ.get(rules.hash_key_env, "")
    return value.encode("utf-8") if value else None


def redact_fields(
    fields: Mapping[str, Any],
    rules: RedactionRules,
    identity: Identity,
    key: bytes | None,
) -> tuple[dict[str, Any], tuple[Finding, ...]]:
    """Redact every text value (also inside lists and mappings). Replace hashed fields by `hash_value`.

    A field is hashed when its name or its dotted path (e.g. `requester.external_id`) is listed in
    `rules.hashed_fields`. A missing key is an error as soon as hashed fields are configured, even
    if this ticket has none: a setup mistake should show on the first ticket.
    Finding offsets refer to the field's text; `Finding.field` names the field.
    """
    if rules.hashed_fields and not key:
        raise RedactionKeyError(
            f"redaction.hashed_fields {list(rules.hashed_fields)} need an HMAC key: "
            f"set the environment variable {rules.hash_key_env}"
        )
    findings: list[Finding] = []

    def hashed(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return [hashed(item) for item in value]
        assert key is not None  # checked above
        return hash_value(str(value), key)

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            result = redact(value, rules, identity)
            findings.extend(Finding(f.kind, f.start, f.end, path) for f in result.findings)
            return result.text
        if isinstance(value, Mapping):
            return {k: visit(k, v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A number can be PII too (a phone number or card number stored as an int). Only then
            # does it become the redacted string.
            result = redact(str(value), rules, identity)
            if result.findings:
                findings.extend(Finding(f.kind, f.start, f.end, path) for f in result.findings)
                return result.text
        return value

    def visit(name: Any, value: Any, path: str) -> Any:
        if str(name) in rules.hashed_fields or path in rules.hashed_fields:
            return hashed(value)
        return walk(value, path)

    return {k: visit(k, v, str(k)) for k, v in fields.items()}, tuple(findings)


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        raise ValueError(f"{where}: expected strings, got {bad!r}")
    return tuple(value)
