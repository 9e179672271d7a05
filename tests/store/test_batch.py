"""A batch of items' commits in one transaction (`Store.commit_batch`) and the reads that feed it,
on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ticketbridge.sync.store import FOLLOWER, PRIMARY, Batch, ItemCommit, Link, Store, link_stamp

FLOW = "zendesk-jira"


def commit(left: str, right: str, **overrides: Any) -> ItemCommit:
    values: dict[str, Any] = {"flow": FLOW, "left_id": left, "left_key": f"#{left}", "right_id": right,
                              "right_key": f"ENG-{right}", "snapshot": {"status": ["open", "To Do"]}}
    values.update(overrides)
    return ItemCommit(**values)


def linked(store: Store) -> tuple[Link, Link, Link]:
    """Three pairs: 1-101 (primary), 2-101 (a follower of the same issue), 3-103."""
    return (store.commit_item(commit("1", "101")), store.commit_item(commit("2", "101", role=FOLLOWER)),
            store.commit_item(commit("3", "103", left_version="v3", right_version="w3")))


def test_a_batch_writes_what_each_commit_would(store: Store) -> None:
    first, follower, third = linked(store)
    store.record_failure(FLOW, "zendesk", "1", "#1", "error", "http_500", "down")
    store.record_failure(FLOW, "zendesk", "3", "#3", "halt", "unmapped_value", "status 'x'")
    batch = Batch()
    batch.update(first, commit("1", "101", right_key="ENG-101b", snapshot={"status": ["pending", "In Review"]},
                               left_version="v1", right_version=None, comment_links=[("zendesk:11", "jira:9001")],
                               audit=[("update", "right", {"fields": ["status"]}),
                                      ("comment", "right", {"source": "zendesk:11"})],
                               clear_failures=[("zendesk", "1"), ("jira", "101")], role=PRIMARY))
    batch.update(follower, commit("2", "101", snapshot={"status": ["solved", "Done"]}, left_version=None,
                                  right_version="w9", clear_failures=[("zendesk", "2"), ("jira", "101")],
                                  role=FOLLOWER))
    batch.record_versions(third.id, None, "w4")
    batch.record_versions(third.id, None, None)  # nothing seen: nothing held
    assert len(batch) == 3
    store.commit_batch(batch)

    now = {link.left_id: link for link in store.links(FLOW)}
    assert (now["1"].right_key, now["1"].snapshot, now["1"].left_version, now["1"].right_version, now["1"].role) == (
        "ENG-101b", {"status": ["pending", "In Review"]}, "v1", None, PRIMARY)
    assert (now["2"].snapshot, now["2"].right_version, now["2"].role) == ({"status": ["solved", "Done"]}, "w9",
                                                                          FOLLOWER)
    assert (now["3"].snapshot, now["3"].left_version, now["3"].right_version) == (third.snapshot, "v3", "w4")
    assert store.mirrored_refs(FLOW, first.id) == {"zendesk:11", "jira:9001"}
    assert [(entry.link_id, entry.kind) for entry in store.audit(FLOW)] == [(first.id, "update"),
                                                                          (first.id, "comment")]
    assert store.open_failure(FLOW, "zendesk", "1") is None  # cleared by its pair's commit
    assert store.open_failure(FLOW, "zendesk", "3") is not None  # 3 only had its version recorded
    assert store.links_and_refs_many(FLOW, "left", ["1", "2", "3"]) == {
        item: store.links_and_refs(FLOW, "left", item) for item in ("1", "2", "3")}


def test_a_batch_is_all_or_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _follower, third = linked(store)
    batch = Batch()
    batch.update(first, commit("1", "101", snapshot={"status": ["solved", "Done"]}, role=PRIMARY,
                               audit=[("update", "right", {"fields": ["status"]})]))
    batch.record_versions(third.id, "v9", None)

    def boom(*_args: Any) -> None:
        raise RuntimeError("crash after the link updates")

    monkeypatch.setattr(Store, "_write_item_rows", boom)
    with pytest.raises(RuntimeError):
        store.commit_batch(batch)
    assert store.links_for(FLOW, "left", "1") == [first]
    assert store.links_for(FLOW, "left", "3") == [third]
    assert store.audit(FLOW) == []


def test_a_batch_holds_only_commits_of_the_links_they_name(store: Store) -> None:
    first, _follower, _third = linked(store)
    batch = Batch()
    with pytest.raises(ValueError, match="existing links only"):
        batch.update(first, commit("1", "103"))  # another pair
    with pytest.raises(ValueError, match="existing links only"):
        batch.update(first, commit("1", "101", resolve_intent=("left", "1")))
    with pytest.raises(TypeError, match="snapshot must be JSON-serializable"):
        batch.update(first, commit("1", "101", snapshot={"due": object()}))
    assert not batch
    store.commit_batch(batch)  # nothing to do, and nothing done
    assert store.links_for(FLOW, "left", "1") == [first]


def test_links_and_refs_of_many_items_come_in_one_read_each_id_present(store: Store) -> None:
    first, follower, _third = linked(store)
    store.commit_item(commit("1", "101", comment_links=[("zendesk:5", "jira:6")], role=PRIMARY))
    found = store.links_and_refs_many(FLOW, "right", ["101", "404", "101"])
    assert list(found) == ["101", "404"]
    links, refs = found["101"]
    assert [link.left_id for link in links] == ["1", "2"]  # primary first
    assert refs == {first.id: {"zendesk:5", "jira:6"}, follower.id: set()}
    assert found["404"] == ([], {})


def test_link_stamps_name_the_counterparts_and_change_with_every_write(store: Store) -> None:
    first, follower, _third = linked(store)
    stamps = store.link_stamps_many(FLOW, "right", ["101", "404"])
    assert stamps == {"101": [link_stamp(link, "right") for link in store.links_for(FLOW, "right", "101")],
                      "404": []}
    assert [(link_id, counterpart) for link_id, counterpart, _at in stamps["101"]] == [(first.id, "1"),
                                                                                      (follower.id, "2")]
    store.record_versions(follower.id, "v2", None)  # a write that another process could have made
    after = store.link_stamps_many(FLOW, "right", ["101"])["101"]
    assert after[0] == stamps["101"][0] and after[1] != stamps["101"][1]


def test_a_batch_leaves_open_the_failures_recorded_since_it_began(store: Store) -> None:
    first, follower, _third = linked(store)
    store.record_failure(FLOW, "jira", "101", "ENG-101", "error", "http_500", "before the batch")
    batch = Batch()
    batch.update(first, commit("1", "101", role=PRIMARY, clear_failures=[("zendesk", "1"), ("jira", "101")]))
    before = store.open_failure(FLOW, "jira", "101")
    assert before is not None
    store.commit_batch(batch)
    assert store.open_failure(FLOW, "jira", "101") is None  # older than the batch: its pair's commit clears it

    batch = Batch()
    batch.update(first, commit("1", "101", role=PRIMARY, clear_failures=[("zendesk", "1"), ("jira", "101")]))
    # The other pair (its follower) fails after the first pair was synced in this batch.
    store.record_failure(FLOW, "jira", "101", "ENG-101", "error", "http_500", "the follower's pair failed")
    batch.update(follower, commit("2", "101", role=FOLLOWER, clear_failures=[("zendesk", "2")]))
    store.commit_batch(batch)
    still = store.open_failure(FLOW, "jira", "101")
    assert still is not None and still.message.endswith("the follower's pair failed")


def test_rows_of_one_link_in_a_batch_end_as_written_one_by_one(store: Store) -> None:
    # On PostgreSQL a batch writes its rows in one statement each, which applies one row per link:
    # rows for one link are merged first, to what the rows one after the other would leave.
    first, _follower, third = linked(store)
    batch = Batch()
    batch.update(first, commit("1", "101", snapshot={"status": ["pending", "In Review"]}, left_version="v1",
                               role=PRIMARY, audit=[("update", "right", {"n": 1})]))
    batch.update(first, commit("1", "101", snapshot={"status": ["solved", "Done"]}, left_version="v2",
                               right_version="w2", role=PRIMARY, audit=[("update", "right", {"n": 2})],
                               comment_links=[("zendesk:11", "jira:9001")]))
    batch.record_versions(third.id, "v4", None)
    batch.record_versions(third.id, None, "w4")
    batch.record_versions(third.id, "v5", None)
    store.commit_batch(batch)
    [now] = store.links_for(FLOW, "left", "1")
    assert (now.snapshot, now.left_version, now.right_version) == ({"status": ["solved", "Done"]}, "v2", "w2")
    [versions] = store.links_for(FLOW, "left", "3")
    assert (versions.left_version, versions.right_version) == ("v5", "w4")
    assert [entry.detail for entry in store.audit(FLOW)] == [{"n": 1}, {"n": 2}]  # in the order held


def test_a_batch_keeps_the_first_mirror_of_a_comment(store: Store) -> None:
    first, _follower, _third = linked(store)
    store.commit_item(commit("1", "101", comment_links=[("zendesk:11", "jira:9001")], role=PRIMARY))
    batch = Batch()
    batch.update(first, commit("1", "101", role=PRIMARY,
                               comment_links=[("zendesk:11", "jira:9999"), ("zendesk:12", "jira:9002"),
                                              ("zendesk:12", "jira:9003")]))
    store.commit_batch(batch)  # a replayed mirror is no error
    assert store.links_and_refs(FLOW, "left", "1")[1][first.id] == {"zendesk:11", "jira:9001", "zendesk:12",
                                                                    "jira:9002"}
