"""Clustering matched pairs into persons, guarding against chains, with stable person ids.

Matched pairs are edges; persons are connected components (scipy). A component can
chain: A~B and B~C are each plausible, yet A and C carry two different valid ids (or
birth dates no typo explains, or a pair a rule forbade). Such a component is rebuilt by
adding its links strongest first and refusing any link that would join conflicting
records: it splits at its weakest links, and every refused link is reported.

person_id is stable from night to night: a cluster keeps the old id most of its records
had; an old id spread over several clusters stays with its largest part.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from linkage.dates import one_slip_apart


@dataclass
class ClusterResult:
    clusters: pl.DataFrame  # record_key, cluster (Int64, dense)
    splits: pl.DataFrame  # kind, record_key, detail


def _birth_conflict(b1, b2) -> bool:
    """Two birth dates no single slip explains: not equal, not a d/m swap, not two of year, month,
    day equal with a differing year one typed digit or swap away (linkage.dates.one_slip_apart)."""
    if b1 is None or b2 is None:
        return False
    swapped = b1.year == b2.year and b1.month == b2.day and b1.day == b2.month
    return not (b1 == b2 or swapped or one_slip_apart(b1, b2))


class _Groups:
    """Union-find over one component's records, each group knowing what it holds."""

    def __init__(self, members: list[int], valid_id: dict[int, str], any_id: dict[int, str], birth: dict[int, object],
                 cannot: set[tuple[int, int]]) -> None:
        self.parent = {m: m for m in members}
        self.items = {m: [m] for m in members}
        self.valid_id, self.any_id, self.birth, self.cannot = valid_id, any_id, birth, cannot

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def conflict(self, ga: int, gb: int) -> str | None:
        ids_a = {self.valid_id[m] for m in self.items[ga] if m in self.valid_id}
        ids_b = {self.valid_id[m] for m in self.items[gb] if m in self.valid_id}
        if ids_a and ids_b and ids_a != ids_b:
            return "different valid identity numbers"
        for a in self.items[ga]:
            for b in self.items[gb]:
                if (min(a, b), max(a, b)) in self.cannot:
                    return "a pair the rules keep apart (id conflict or different valid ids)"
                ida, idb = self.any_id.get(a), self.any_id.get(b)
                if (ida is None or ida != idb) and _birth_conflict(self.birth.get(a), self.birth.get(b)):
                    return "birth dates no typo explains"
        return None

    def union(self, ga: int, gb: int) -> None:
        if len(self.items[ga]) < len(self.items[gb]):
            ga, gb = gb, ga
        self.parent[gb] = ga
        self.items[ga].extend(self.items.pop(gb))


def cluster_pairs(
    records: pl.DataFrame,
    matches: pl.DataFrame,
    cannot_link: pl.DataFrame | None = None,
) -> ClusterResult:
    """Persons from matched pairs.

    records: record_key, id_number, id_valid, birth (prepared records; ``id_own`` is used
    instead of id_valid when present, so that a parent's number on a child's record
    does not count as the child's).
    matches: record_key_l, record_key_r, match_weight (the pairs classified as matches).
    cannot_link: record_key_l, record_key_r pairs a rule keeps apart.
    """
    keys = records["record_key"].to_numpy()
    n = len(keys)
    # The flow's keys are nearly consecutive (ingest numbers rows; quarantined ones leave
    # gaps): a key's row is read from a table over the key range. Sorting and searching
    # ten million keys took 5 s a night.
    low = int(keys.min()) if n else 0
    if n and int(keys.max()) - low < 4 * n:
        row_of_key = np.zeros(int(keys.max()) - low + 1, dtype=np.int64)
        row_of_key[keys - low] = np.arange(n)

        def index_of(k: np.ndarray) -> np.ndarray:
            return row_of_key[k - low]
    else:
        order = np.argsort(keys)
        sorted_keys = keys[order]

        def index_of(k: np.ndarray) -> np.ndarray:
            return order[np.searchsorted(sorted_keys, k)]

    li = index_of(matches["record_key_l"].to_numpy())
    ri = index_of(matches["record_key_r"].to_numpy())
    graph = coo_matrix((np.ones(len(li)), (li, ri)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    labels = labels.astype(np.int64)

    valid_col = "id_own" if "id_own" in records.columns else "id_valid"
    comp = records.select("record_key", "id_number", pl.col(valid_col).alias("id_valid"), "birth").with_columns(
        pl.Series("cluster", labels)
    )
    # Components worth checking: several valid ids, several birth dates, or a forbidden pair
    # inside. Only components of three or more records can be split, and most persons have
    # fewer: the others are left out before the grouping (10M records: 3.1 -> 1.2 s).
    sizes = np.bincount(labels, minlength=1)
    comp_large = comp.filter(pl.Series(sizes[labels] > 2))
    stats = comp_large.group_by("cluster").agg(
        pl.len().alias("size"),
        pl.col("id_number").filter(pl.col("id_valid")).n_unique().alias("valid_ids"),
        pl.col("birth").drop_nulls().n_unique().alias("births"),
    )
    suspect = set(stats.filter((pl.col("size") > 2) & ((pl.col("valid_ids") > 1) | (pl.col("births") > 1)))["cluster"])
    cannot: set[tuple[int, int]] = set()
    if cannot_link is not None and len(cannot_link):
        cl = cannot_link.select("record_key_l", "record_key_r")
        ci_l = labels[index_of(cl["record_key_l"].to_numpy())]
        ci_r = labels[index_of(cl["record_key_r"].to_numpy())]
        inside = ci_l == ci_r
        suspect |= set(ci_l[inside].tolist())
        cannot = set(zip(cl["record_key_l"].to_numpy()[inside].tolist(), cl["record_key_r"].to_numpy()[inside].tolist(),
                         strict=True))

    split_rows: list[dict] = []
    if suspect:
        labels = labels.copy()
        next_label = int(labels.max()) + 1 if n else 0
        sus = comp.filter(pl.col("cluster").is_in(list(suspect)))
        edges = matches.with_columns(pl.Series("cluster", labels[li])).filter(pl.col("cluster").is_in(list(suspect)))
        edges = edges.sort(["cluster", "match_weight", "record_key_l", "record_key_r"], descending=[False, True, False, False])
        # Pulled into Python once: the loop below runs over the few suspect components only.
        rec_rows: dict[int, list[tuple]] = defaultdict(list)
        for cid, k, idn, valid, birth in sus.select("cluster", "record_key", "id_number", "id_valid", "birth").iter_rows():
            rec_rows[cid].append((k, idn, valid, birth))
        edge_rows: dict[int, list[tuple]] = defaultdict(list)
        for cid, a, b, w in edges.select("cluster", "record_key_l", "record_key_r", "match_weight").iter_rows():
            edge_rows[cid].append((a, b, w))
        for cid in sorted(rec_rows):
            members = rec_rows[cid]
            mk = [r[0] for r in members]
            valid_id = {r[0]: r[1] for r in members if r[2] and r[1]}
            any_id = {r[0]: r[1] for r in members if r[1]}
            birth = {r[0]: r[3] for r in members}
            groups = _Groups(mk, valid_id, any_id, birth, cannot)
            refused: list[tuple[int, int, float, str]] = []
            for a, b, w in edge_rows.get(cid, []):
                ga, gb = groups.find(a), groups.find(b)
                if ga == gb:
                    continue
                why = groups.conflict(ga, gb)
                if why:
                    refused.append((a, b, w, why))
                else:
                    groups.union(ga, gb)
            roots = sorted({groups.find(m) for m in mk}, key=lambda r: min(groups.items[r]))
            if len(roots) == 1:
                continue
            # The part holding the smallest record key keeps the component's label.
            for root in roots[1:]:
                labels[index_of(np.asarray(groups.items[root], dtype=keys.dtype))] = next_label
                next_label += 1
            for a, b, w, why in refused:
                if groups.find(a) == groups.find(b):
                    continue
                for x, y in ((a, b), (b, a)):
                    split_rows.append(
                        {
                            "kind": "cluster_split",
                            "record_key": int(x),
                            "detail": f"link to record_key {y} (weight {w:.1f}) not followed: {why}; "
                            f"cluster split into {len(roots)}",
                        }
                    )
    # Dense labels, numbered by each cluster's smallest record key: same input, same numbering.
    out = pl.DataFrame({"record_key": keys, "cluster": labels})
    first = out.group_by("cluster").agg(pl.col("record_key").min().alias("first")).sort("first")
    first = first.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("dense"))
    out = out.join(first.select("cluster", "dense"), on="cluster").select("record_key", pl.col("dense").alias("cluster"))
    splits = pl.DataFrame(split_rows, schema={"kind": pl.String, "record_key": pl.Int64, "detail": pl.String})
    return ClusterResult(clusters=out, splits=splits.unique(maintain_order=True))


def new_person_id(source: str, record_id: str, salt: int = 0) -> str:
    """Deterministic id of a new person: P + 12 hex digits of a hash of its first record."""
    text = f"{source}\x1f{record_id}" + (f"\x1f{salt}" if salt else "")
    return "P" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _new_person_ids(firsts: pl.DataFrame, given: pl.Series) -> list[str]:
    """The ids of new persons from their first records (cluster, source, record_id), in
    order: an id already given, or given to an earlier one of them, is salted until it is not.

    An id is given already most often where a person split and its new part holds the record
    that first named it. The given ids are probed against the few candidates (a few salts
    ahead where one is needed), not gathered into a set: that set of the ids of 10M records
    took 2.4 s every night, the probes 0.1 s.
    """
    if not firsts.height:
        return []
    rows = firsts.select("source", "record_id").rows()
    new_ids = [new_person_id(source, record_id) for source, record_id in rows]
    candidates = pl.Series(new_ids, dtype=pl.String)
    # Probing the given ids against the candidates hashes only the few (1.5 s at 10M the other way).
    taken = set(given.filter(given.is_in(candidates.implode())).to_list())
    repeated = candidates.is_duplicated()
    if not taken and not repeated.any():
        return new_ids
    salted = [
        new_person_id(source, record_id, salt)
        for (source, record_id), pid, twin in zip(rows, new_ids, repeated, strict=True)
        if pid in taken or twin
        for salt in range(1, _SALTS_PROBED + 1)
    ]
    taken |= set(given.filter(given.is_in(pl.Series(salted, dtype=pl.String).implode())).to_list())
    probed = set(new_ids) | set(salted)
    assigned = _salted_in_order(rows, new_ids, taken, probed)
    if assigned is None:  # past the salts probed (a repeat of a repeat): every given id after all
        assigned = _salted_in_order(rows, new_ids, set(given.to_list()))
    return assigned


# Salts whose ids are probed ahead for a new person whose first id is given already.
_SALTS_PROBED = 3


def _salted_in_order(rows: list[tuple[str, str]], unsalted: list[str], used: set[str],
                     probed: set[str] | None = None) -> list[str] | None:
    """Each row's id (``unsalted``: its id before any salt), salted until it is not in ``used``
    (to which it is added); None when a salted id is not among ``probed``, whose given ones
    ``used`` holds."""
    assigned: list[str] = []
    for (source, record_id), pid in zip(rows, unsalted, strict=True):
        salt = 0
        while pid in used:
            salt += 1
            pid = new_person_id(source, record_id, salt)
            if probed is not None and pid not in probed:
                return None
        used.add(pid)
        assigned.append(pid)
    return assigned


@dataclass
class PersonIds:
    entity_map: pl.DataFrame  # record_key, source, record_id, person_id
    id_changes: pl.DataFrame  # change, old_person_id, new_person_id


def assign_person_ids(clusters: pl.DataFrame, previous: pl.DataFrame | None,
                      changed: pl.Series | None = None) -> PersonIds:
    """Give each cluster a person_id, keeping last night's where it can.

    clusters: record_key, source, record_id, cluster. previous: source, record_id, person_id.
    A cluster takes the old id most of its records had, each old id going to at most one
    cluster (the one holding most of its records). Ties, both ways: more of those records
    unchanged since last night, then the smallest id. Old ids that lost
    out are recorded: ``merge`` when the id disappears into another person, ``split`` when
    the id lives on but some of its records now form another person.

    ``changed``: the record keys whose content is new or changed tonight, when known. A record
    whose id a department gave to someone else still carries its old person id; without this,
    such a record could take the id from the unchanged records of the person it named.
    """
    def firsts_of(frame: pl.DataFrame) -> pl.DataFrame:
        # Each cluster's first record by (source, record_id), clusters in that order.
        return (
            frame.sort(["source", "record_id"])
            .group_by("cluster", maintain_order=True)
            .agg(pl.col("source").first(), pl.col("record_id").first())
        )

    assigned: dict[int, str] = {}
    simple_ids = pl.DataFrame(schema={"cluster": clusters.schema["cluster"], "person_id": pl.String})
    counts = pl.DataFrame(schema={"cluster": pl.Int64, "old": pl.String, "n": pl.UInt32, "n_unchanged": pl.UInt32})
    rest = clusters
    if previous is not None and len(previous):
        prev = previous.select("source", "record_id", pl.col("person_id").alias("old")).unique(["source", "record_id"])
        cm = clusters.join(prev, on=["source", "record_id"], how="inner")
        # A column first, summed per group after: the membership test inside the aggregation
        # ran once per group against the whole list of changed keys (1M city, 10,179 changed:
        # past 24 GB).
        unchanged = (
            ~pl.col("record_key").is_in(changed.cast(clusters.schema["record_key"]).implode())
            if changed is not None and len(changed) else pl.lit(True)
        )
        counts = (
            cm.with_columns(unchanged=unchanged)
            .group_by("cluster", "old")
            .agg(pl.len().cast(pl.UInt32).alias("n"), pl.col("unchanged").sum().cast(pl.UInt32).alias("n_unchanged"))
        )
        per_cluster = counts.group_by("cluster").len().rename({"len": "olds"})
        per_old = counts.group_by("old").len().rename({"len": "clusters"})
        c2 = counts.join(per_cluster, on="cluster").join(per_old, on="old")
        simple = c2.filter((pl.col("olds") == 1) & (pl.col("clusters") == 1))
        simple_ids = simple.select("cluster", pl.col("old").alias("person_id"))
        # Only the other clusters need their first record (tie-breaks, new ids): on a night
        # after another that is a few thousand, not the whole city's sort.
        rest = clusters.filter(~pl.col("cluster").is_in(simple["cluster"].implode()))
        rest_firsts = firsts_of(rest)
        # The tangled rest (merges, splits) is few: settle it greedily, biggest share first.
        tangled = c2.filter((pl.col("olds") > 1) | (pl.col("clusters") > 1)).join(
            rest_firsts.select("cluster", pl.concat_str("source", pl.lit("\x1f"), "record_id").alias("first")),
            on="cluster",
        ).sort(["n", "n_unchanged", "old", "first"], descending=[True, True, False, False])
        taken: set[str] = set()
        for cid, old in tangled.select("cluster", "old").iter_rows():
            if cid in assigned or old in taken:
                continue
            assigned[cid] = old
            taken.add(old)
    else:
        rest_firsts = firsts_of(rest)
    new_firsts = rest_firsts.filter(~pl.col("cluster").is_in(list(assigned)))
    # Every id kept tonight is one of last night's.
    given = previous["person_id"] if previous is not None and len(previous) else pl.Series(dtype=pl.String)
    new_ids = _new_person_ids(new_firsts, given)
    cluster_ids = pl.concat(
        [
            simple_ids,
            pl.DataFrame(
                {"cluster": list(assigned), "person_id": list(assigned.values())},
                schema={"cluster": clusters.schema["cluster"], "person_id": pl.String},
            ),
            new_firsts.select("cluster", pl.Series("person_id", new_ids, dtype=pl.String)),
        ]
    )
    entity_map = clusters.join(cluster_ids, on="cluster", how="left").select("record_key", "source", "record_id", "person_id")

    changes = pl.DataFrame(schema={"change": pl.String, "old_person_id": pl.String, "new_person_id": pl.String})
    if len(counts):
        kept = set(assigned.values())
        lost = counts.join(cluster_ids, on="cluster").filter(pl.col("old") != pl.col("person_id"))
        changes = (
            lost.select(
                pl.when(pl.col("old").is_in(list(kept))).then(pl.lit("split")).otherwise(pl.lit("merge")).alias("change"),
                pl.col("old").alias("old_person_id"),
                pl.col("person_id").alias("new_person_id"),
            )
            .unique()
            .sort(["change", "old_person_id", "new_person_id"])
        )
    return PersonIds(entity_map=entity_map, id_changes=changes)
