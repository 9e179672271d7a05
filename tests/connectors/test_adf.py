"""Plain text <-> Atlassian Document Format."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ticketbridge.connectors.jira.adf import adf_to_text, is_adf, text_to_adf


def test_blank_lines_split_paragraphs_and_single_newlines_are_hard_breaks() -> None:
    doc = text_to_adf("one\ntwo\n\nthree")
    assert doc == {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "one"}, {"type": "hardBreak"},
                                          {"type": "text", "text": "two"}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "three"}]},
    ]}


def test_empty_text_is_an_empty_doc_without_empty_text_nodes() -> None:
    assert text_to_adf("") == {"type": "doc", "version": 1, "content": []}
    doc = text_to_adf("a\n\n\n\nb")
    texts = [n for p in doc["content"] for n in p["content"] if n["type"] == "text"]
    assert all(n["text"] for n in texts)
    assert is_adf(doc)


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200))
def test_text_round_trips_exactly(text: str) -> None:
    assert adf_to_text(text_to_adf(text)) == text


@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40),
                min_size=1, max_size=6))
def test_plain_paragraphs_round_trip_exactly(paragraphs: list[str]) -> None:
    text = "\n\n".join(paragraphs)
    assert adf_to_text(text_to_adf(text)) == text


def test_rich_nodes_flatten_to_readable_text() -> None:
    doc = {"type": "doc", "version": 1, "content": [
        {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Title"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "bold", "marks": [{"type": "strong"}]},
            {"type": "text", "text": " by "},
            {"type": "mention", "attrs": {"id": "123", "text": "@Ana"}},
            {"type": "text", "text": " "},
            {"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}},
            {"type": "text", "text": " see "},
            {"type": "inlineCard", "attrs": {"url": "https://example.com/x"}},
        ]},
        {"type": "bulletList", "content": [
            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a"}]}]},
            {"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "b"}]},
                {"type": "orderedList", "attrs": {"order": 3}, "content": [
                    {"type": "listItem", "content": [
                        {"type": "paragraph", "content": [{"type": "text", "text": "c"}]}]}]}]},
        ]},
        {"type": "codeBlock", "attrs": {"language": "py"}, "content": [{"type": "text", "text": "x = 1\ny = 2"}]},
        {"type": "blockquote", "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "quoted"}, {"type": "hardBreak"},
                                              {"type": "text", "text": "twice"}]}]},
    ]}
    assert adf_to_text(doc) == (
        "Title\n\n"
        "bold by @Ana 😄 see https://example.com/x\n\n"
        "- a\n- b\n  3. c\n\n"
        "x = 1\ny = 2\n\n"
        "> quoted\n> twice"
    )


def test_mention_without_at_sign_gets_one_and_emoji_falls_back_to_short_name() -> None:
    doc = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
        {"type": "mention", "attrs": {"id": "abc", "text": "Bo"}},
        {"type": "emoji", "attrs": {"shortName": ":tada:"}}]}]}
    assert adf_to_text(doc) == "@Bo:tada:"


def test_strings_and_none_pass_through_for_v2_and_server_payloads() -> None:
    assert adf_to_text("wiki *text*") == "wiki *text*"
    assert adf_to_text(None) == ""
