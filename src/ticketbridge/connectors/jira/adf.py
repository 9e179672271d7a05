"""Plain text <-> Atlassian Document Format (ADF), the rich-text JSON of Jira Cloud REST v3.

Text -> ADF: paragraphs split on blank lines ("\\n\\n"), a single newline inside a paragraph becomes a
`hardBreak`. Written that way, text -> ADF -> text gives back exactly the text we sent, so our own
writes come back from the next poll equal to the snapshot (no echo).

ADF -> text flattens what people type in Jira: block nodes are separated by a blank line, list items
become "- " / "1. " lines, quotes "> " lines, mentions/emoji/cards their visible text. Marks (bold,
links...) are dropped: the sync carries plain text.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

_BLOCK_SEPARATOR = "\n\n"


def text_to_adf(text: str) -> Json:
    """An ADF doc for `text`. Empty text gives an empty doc (Jira rejects empty text nodes)."""
    if not text:
        return {"type": "doc", "version": 1, "content": []}
    return {"type": "doc", "version": 1,
            "content": [_paragraph(block) for block in text.split(_BLOCK_SEPARATOR)]}


def _paragraph(block: str) -> Json:
    content: list[Json] = []
    for index, line in enumerate(block.split("\n")):
        if index:
            content.append({"type": "hardBreak"})
        if line:  # ADF forbids empty text nodes; an empty line is just two hard breaks in a row
            content.append({"type": "text", "text": line})
    return {"type": "paragraph", "content": content}


def is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


def adf_to_text(value: Any) -> str:
    """Plain text of an ADF doc; a plain string (REST v2, Server, webhooks) is returned as is."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return str(value)
    if value.get("type") == "doc":
        return _blocks(value.get("content") or [])
    return _block(value)


def _blocks(nodes: list[Any]) -> str:
    return _BLOCK_SEPARATOR.join(_block(node) for node in nodes if isinstance(node, dict))


def _block(node: Json) -> str:
    kind = node.get("type")
    content = [child for child in node.get("content") or [] if isinstance(child, dict)]
    if kind in ("paragraph", "heading"):
        return _inline(content)
    if kind == "codeBlock":
        # Code keeps its own newlines; hard breaks are not allowed inside it.
        return "".join(str(child.get("text", "")) for child in content)
    if kind == "bulletList":
        return "\n".join(_list_item(child, "- ") for child in content)
    if kind == "orderedList":
        start = int((node.get("attrs") or {}).get("order") or 1)
        return "\n".join(_list_item(child, f"{start + n}. ") for n, child in enumerate(content))
    if kind == "blockquote":
        return "\n".join("> " + line if line else ">" for line in _blocks(content).split("\n"))
    if kind == "rule":
        return "---"
    if kind in ("listItem", "panel", "expand", "nestedExpand", "table", "tableRow", "tableCell",
                "tableHeader", "layoutSection", "layoutColumn", "mediaGroup", "mediaSingle"):
        return _blocks(content)
    # An inline node at block level (lenient readers of hand-built docs) or an unknown inline node.
    return _inline([node])


def _list_item(item: Json, bullet: str) -> str:
    text = _blocks([child for child in item.get("content") or [] if isinstance(child, dict)])
    # Nested lists and extra paragraphs are indented under the bullet so the structure still reads.
    lines = [line for line in text.split("\n") if line]
    if not lines:
        return bullet.rstrip()
    indent = " " * len(bullet)
    return "\n".join([bullet + lines[0], *(indent + line for line in lines[1:])])


def _inline(nodes: list[Json]) -> str:
    parts: list[str] = []
    for node in nodes:
        kind = node.get("type")
        attrs = node.get("attrs") or {}
        if kind == "text":
            parts.append(str(node.get("text", "")))
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind == "mention":
            text = attrs.get("text") or attrs.get("id") or ""
            parts.append(text if str(text).startswith("@") else f"@{text}")
        elif kind == "emoji":
            parts.append(str(attrs.get("text") or attrs.get("shortName") or ""))
        elif kind in ("inlineCard", "blockCard", "embedCard"):
            parts.append(str(attrs.get("url") or (attrs.get("data") or {}).get("url") or ""))
        elif kind in ("date",):
            parts.append(str(attrs.get("timestamp") or ""))
        elif kind == "status":
            parts.append(str(attrs.get("text") or ""))
        elif node.get("content"):
            parts.append(_blocks(node["content"]) if kind not in ("paragraph", "heading")
                         else _inline(node["content"]))
    return "".join(parts)
