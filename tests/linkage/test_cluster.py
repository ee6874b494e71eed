"""Clustering with the chain guard, and person ids that stay put from night to night."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from linkage.cluster import assign_person_ids, cluster_pairs, new_person_id

ID_X = "33060219900102123X"
ID_Y = "330602199001021257"


def records(rows: list[tuple[int, str | None, bool, date | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"record_key": [r[0] for r in rows], "id_number": [r[1] for r in rows], "id_valid": [r[2] for r in rows],
         "birth": [r[3] for r in rows]},
        schema={"record_key": pl.Int64, "id_number": pl.String, "id_valid": pl.Boolean, "birth": pl.Date},
    )


def edges(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"record_key_l": pl.Int64, "record_key_r": pl.Int64, "match_weight": pl.Float64},
                        orient="row")


def groups(result) -> set[frozenset[int]]:
    c = result.clusters.group_by("cluster").agg("record_key")
    return {frozenset(x) for x in c["record_key"].to_list()}


def test_connected_components():
    recs = records([(1, ID_X, True, None), (2, None, False, None), (3, None, False, None), (4, None, False, None)])
    res = cluster_pairs(recs, edges([(1, 2, 10.0), (2, 3, 8.0)]))
    assert groups(res) == {frozenset({1, 2, 3}), frozenset({4})}
    assert res.splits.is_empty()


def test_chain_between_two_valid_ids_is_split_at_its_weakest_link():
    # A (id X) ~ B (no id) ~ C (id Y): B is far closer to A, so the B~C link goes.
    d = date(1990, 1, 2)
    recs = records([(1, ID_X, True, d), (2, None, False, d), (3, ID_Y, True, d)])
    res = cluster_pairs(recs, edges([(1, 2, 20.0), (2, 3, 3.0)]))
    assert groups(res) == {frozenset({1, 2}), frozenset({3})}
    split = res.splits
    assert set(split["kind"]) == {"cluster_split"}
    assert set(split["record_key"]) == {2, 3}
    assert "different valid identity numbers" in split["detail"][0]


def test_chain_between_birth_dates_no_typo_explains_is_split():
    recs = records([(1, None, False, date(1950, 5, 1)), (2, None, False, None), (3, None, False, date(1988, 11, 23))])
    res = cluster_pairs(recs, edges([(1, 2, 5.0), (2, 3, 9.0)]))
    assert groups(res) == {frozenset({1}), frozenset({2, 3})}


def test_birth_typo_does_not_split():
    recs = records([(1, None, False, date(1950, 5, 1)), (2, None, False, None), (3, None, False, date(1950, 5, 11))])
    res = cluster_pairs(recs, edges([(1, 2, 5.0), (2, 3, 9.0)]))
    assert groups(res) == {frozenset({1, 2, 3})}


def test_cannot_link_pair_is_kept_apart():
    recs = records([(1, ID_X, True, None), (2, None, False, None), (3, ID_X, True, None)])
    cannot = pl.DataFrame({"record_key_l": [1], "record_key_r": [3]})
    res = cluster_pairs(recs, edges([(1, 2, 7.0), (2, 3, 6.0)]), cannot)
    assert groups(res) == {frozenset({1, 2}), frozenset({3})}


def test_sparse_and_unordered_keys_cluster_as_consecutive_ones():
    # The flow's keys are nearly consecutive and found through a table over their range;
    # keys spread far apart (a frame from elsewhere) are searched instead: same persons.
    d = date(1990, 1, 2)
    rows = [(1, ID_X, True, d), (2, None, False, d), (3, ID_Y, True, d), (4, None, False, None), (5, None, False, None)]
    links = [(1, 2, 20.0), (2, 3, 3.0), (4, 5, 9.0)]
    near = cluster_pairs(records(rows), edges(links))
    assert groups(near) == {frozenset({1, 2}), frozenset({3}), frozenset({4, 5})}
    spread = {1: 9_000_000_001, 2: 5, 3: 70_000, 4: 12, 5: 3_000_000_000}
    far = cluster_pairs(
        records([(spread[k], *rest) for k, *rest in reversed(rows)]),
        edges([(min(spread[a], spread[b]), max(spread[a], spread[b]), w) for a, b, w in links]),
    )
    assert groups(far) == {frozenset(spread[k] for k in g) for g in groups(near)}
    assert set(far.splits["record_key"]) == {spread[2], spread[3]}


def clusters(assign: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"record_key": list(range(len(assign))), "source": ["s"] * len(assign), "record_id": list(assign),
         "cluster": list(assign.values())},
        schema={"record_key": pl.Int64, "source": pl.String, "record_id": pl.String, "cluster": pl.Int64},
    )


def ids(result) -> dict[str, str]:
    return dict(result.entity_map.select("record_id", "person_id").iter_rows())


def test_first_night_ids_are_deterministic():
    night1 = assign_person_ids(clusters({"a": 0, "b": 0, "c": 1}), None)
    assert ids(night1) == {"a": new_person_id("s", "a"), "b": new_person_id("s", "a"), "c": new_person_id("s", "c")}
    assert new_person_id("s", "a").startswith("P") and len(new_person_id("s", "a")) == 13


def test_ids_survive_added_and_removed_records():
    prev = pl.DataFrame({"source": ["s"] * 3, "record_id": ["a", "b", "c"], "person_id": ["P1", "P1", "P2"]})
    # b is gone, d joins a's person, e is new.
    res = assign_person_ids(clusters({"a": 0, "d": 0, "c": 1, "e": 2}), prev)
    got = ids(res)
    assert got["a"] == got["d"] == "P1" and got["c"] == "P2"
    assert got["e"] == new_person_id("s", "e")
    assert res.id_changes.is_empty()


def test_merge_keeps_largest_old_group_and_is_recorded():
    prev = pl.DataFrame({"source": ["s"] * 5, "record_id": ["a", "b", "c", "d", "e"],
                         "person_id": ["P9", "P9", "P1", "P5", "P5"]})
    res = assign_person_ids(clusters({"a": 0, "b": 0, "c": 0, "d": 1, "e": 1}), prev)
    got = ids(res)
    assert got["a"] == got["c"] == "P9"  # P9 had two records in the cluster, P1 one
    assert res.id_changes.to_dicts() == [{"change": "merge", "old_person_id": "P1", "new_person_id": "P9"}]


def test_merge_tie_takes_smallest_id():
    prev = pl.DataFrame({"source": ["s"] * 2, "record_id": ["a", "b"], "person_id": ["P7", "P3"]})
    res = assign_person_ids(clusters({"a": 0, "b": 0}), prev)
    assert set(ids(res).values()) == {"P3"}


def test_split_largest_part_keeps_id_rest_get_new_ids():
    prev = pl.DataFrame({"source": ["s"] * 4, "record_id": ["a", "b", "c", "d"], "person_id": ["P1"] * 4})
    res = assign_person_ids(clusters({"a": 0, "b": 1, "c": 1, "d": 1}), prev)
    got = ids(res)
    assert got["b"] == got["c"] == got["d"] == "P1"
    assert got["a"] != "P1" and got["a"].startswith("P")
    assert res.id_changes.to_dicts() == [{"change": "split", "old_person_id": "P1", "new_person_id": got["a"]}]


def test_new_id_never_reuses_an_old_one():
    # a's hash is the old id of the person that keeps it elsewhere: a gets a salted id.
    old = new_person_id("s", "a")
    prev = pl.DataFrame({"source": ["s"] * 3, "record_id": ["a", "b", "c"], "person_id": [old] * 3})
    res = assign_person_ids(clusters({"a": 0, "b": 1, "c": 1}), prev)
    got = ids(res)
    assert got["b"] == old and got["a"] not in (old,)
    assert got["a"] == new_person_id("s", "a", 1)


@pytest.mark.parametrize("salts_probed", [3, 0])
def test_two_new_persons_whose_ids_would_repeat_get_distinct_ids(monkeypatch, salts_probed: int) -> None:
    # Ids cut to 12 hex digits can repeat: made to here, by the record id's first letter.
    # With no salt probed ahead, the ids are found against a set of every given id instead.
    import linkage.cluster as cluster_module

    monkeypatch.setattr(cluster_module, "new_person_id",
                        lambda source, record_id, salt=0: f"P{record_id[0]}{salt}")
    monkeypatch.setattr(cluster_module, "_SALTS_PROBED", salts_probed)
    prev = pl.DataFrame({"source": ["s"], "record_id": ["b1"], "person_id": ["Pc0"]})
    got = ids(assign_person_ids(clusters({"a1": 0, "a2": 1, "b1": 2, "c1": 3}), prev))
    # a2 repeats a1's id, and c1's is b1's kept one: each is salted in turn.
    assert got == {"a1": "Pa0", "a2": "Pa1", "b1": "Pc0", "c1": "Pc1"}
    # Night one, no earlier ids: only the repeat among the new ones.
    assert ids(assign_person_ids(clusters({"a1": 0, "a2": 1}), None)) == {"a1": "Pa0", "a2": "Pa1"}


def test_a_reused_record_id_does_not_take_the_id_from_the_unchanged_record():
    # P4 was one person with two records; tonight record a (its id given to someone else by
    # its department, so its content changed) forms a person of its own. Both clusters hold
    # one record that had P4: the unchanged record b keeps it, a gets a new id.
    prev = pl.DataFrame({"source": ["s"] * 2, "record_id": ["a", "b"], "person_id": ["P4", "P4"]})
    res = assign_person_ids(clusters({"a": 0, "b": 1}), prev, changed=pl.Series([0]))
    got = ids(res)
    assert got["b"] == "P4"
    assert got["a"] == new_person_id("s", "a")
    assert res.id_changes.to_dicts() == [{"change": "split", "old_person_id": "P4", "new_person_id": got["a"]}]
    # Without knowing what changed, the tie is still settled as before (first record).
    assert ids(assign_person_ids(clusters({"a": 0, "b": 1}), prev))["a"] == "P4"


def test_same_day_and_month_decades_apart_is_not_a_typo():
    # Father and son of one name, the son born on his father's birthday: two people.
    recs = records([(1, None, False, date(1955, 3, 2)), (2, None, False, None), (3, None, False, date(1983, 3, 2))])
    res = cluster_pairs(recs, edges([(1, 2, 5.0), (2, 3, 9.0)]))
    assert groups(res) == {frozenset({1}), frozenset({2, 3})}
    # One digit of the year mistyped is a typo.
    recs = records([(1, None, False, date(1955, 3, 2)), (2, None, False, None), (3, None, False, date(1985, 3, 2))])
    assert groups(cluster_pairs(recs, edges([(1, 2, 5.0), (2, 3, 9.0)]))) == {frozenset({1, 2, 3})}
