"""link_records: block → compare → classify → cluster → person ids, in one call.

This is the "one person, one record" (一人一档) step of the nightly flow; see
docs/DESIGN.md section 3 for the interface.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import polars as pl

from linkage.block import BLOCKING_PASSES, DEFAULT_MAX_BLOCK_SIZE, StoredBlockKeys, run_blocking
from linkage.classify import (
    SAME_VALID_ID,
    VETO_RULES,
    FellegiSunterModel,
    apply_rules,
    decide,
    estimate_u,
    fit_em,
    fit_em_by_sessions,
    fit_supervised,
    probability,
    score,
    term_frequency_adjustment,
)
from linkage.cluster import assign_person_ids, cluster_pairs
from linkage.compare import DEFAULT_COMPARISONS, Comparison, compare_pairs, pair_frame
from linkage.records import UNLIMITED_RECORDS, PreparedRecords

# 2: level weights capped at 0 bits for disagreement and a birth year decades off no longer a
# typo: pairs scored by version 1 are scored again on the next night.
MODEL_VERSION = 2


@dataclass(frozen=True)
class LinkageSettings:
    # A pair is a match when its probability reaches this (and no rule forbids it).
    match_probability_threshold: float = 0.5
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE
    em_max_iterations: int = 200
    # Random record pairs whose comparison vectors give u (Splink's estimate_u_using_random_sampling).
    u_sample_pairs: int = 300_000
    # "sessions": u from random pairs, m by EM per blocking pass over the comparisons that
    # pass did not block on (Splink's way); "random_pairs": u from random pairs, m by one EM
    # over all candidates; "candidates": m and u both by EM over the candidates.
    training: str = "sessions"
    random_seed: int = 20261123
    comparisons: tuple[Comparison, ...] = DEFAULT_COMPARISONS


@dataclass
class LinkageResult:
    entity_map: pl.DataFrame  # record_key, source, record_id, person_id
    pairs: pl.DataFrame  # record_key_l, record_key_r, match_weight, match_probability, is_match
    id_changes: pl.DataFrame  # change, old_person_id, new_person_id
    conflicts: pl.DataFrame  # kind, record_key, detail
    metrics: dict
    model: dict = field(default_factory=dict)  # JSON-serializable; no personal data
    # value, tf per term-frequency column: kept with the model for the nights that reuse it.
    tf_tables: dict[str, pl.DataFrame] = field(default_factory=dict)


@dataclass
class LinkState:
    """What a night that re-links only its new and changed records reuses from earlier nights.

    ``model`` and ``tf_tables`` are those of the last full night (the weights are not
    refitted on a 1% change). ``pairs``: the scored pairs between records that did not
    change, already in tonight's record keys (record_key_l < record_key_r), with their
    ``rule``. ``changed_keys``: tonight's keys of records that are new or changed; only
    pairs touching them are blocked, compared and scored tonight.
    """

    model: dict
    tf_tables: dict[str, pl.DataFrame]
    pairs: pl.DataFrame
    changed_keys: pl.Series


LINKAGE_METHOD = (
    "Blocking in DuckDB by several passes (identity number and its one-typo neighbours, name pinyin "
    "+ birth date, sorted syllables + birth date, surname + birth date + county, name + id birth "
    "digits, phone; no pair of two different valid ids), Fellegi-Sunter match weights learned by EM "
    "without labels with term-frequency adjustment for common names, rules for different valid ids "
    "and ids shared by two people, then connected components split at their weakest link where they "
    "would join conflicting records."
)


PAIR_SCHEMA = {
    "record_key_l": pl.Int64,
    "record_key_r": pl.Int64,
    "match_weight": pl.Float64,
    "match_probability": pl.Float64,
    "is_match": pl.Boolean,
    "rule": pl.String,
}


RULE_NAMES = ("", SAME_VALID_ID, *VETO_RULES)


def _rule_series(rule: np.ndarray) -> pl.Series:
    """The per-pair rule names (an object array) as a string column, built from small codes:
    ``astype(str)`` on tens of millions of pairs makes a fixed-width array of gigabytes."""
    codes = np.zeros(len(rule), dtype=np.uint8)
    for code, name in enumerate(RULE_NAMES[1:], start=1):
        codes[rule == name] = code
    if int((codes == 0).sum()) != int((rule == "").sum()):
        raise ValueError(f"a rule outside {RULE_NAMES[1:]}")
    return pl.Series("rule", codes).replace_strict(
        list(range(len(RULE_NAMES))), list(RULE_NAMES), return_dtype=pl.String
    )


def _empty_pairs() -> pl.DataFrame:
    return pl.DataFrame(schema=PAIR_SCHEMA)


def random_pairs(records: pl.DataFrame | PreparedRecords, n_pairs: int, seed: int) -> pl.DataFrame:
    """Up to ``n_pairs`` distinct random pairs of records (record_key_l < record_key_r), reproducibly."""
    keys = records.keys() if isinstance(records, PreparedRecords) else records["record_key"].to_numpy()
    n = len(keys)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = rng.integers(0, n, n_pairs)
    keep = i != j
    a, b = keys[i[keep]], keys[j[keep]]
    return pl.DataFrame({"record_key_l": np.minimum(a, b), "record_key_r": np.maximum(a, b)}).unique()


@dataclass
class ComparedPairs:
    gammas: np.ndarray  # (pairs, comparisons) int8 levels
    rule: np.ndarray  # per pair: '' or a rule name
    tf_adjustment: np.ndarray  # per pair, bits


def _pair_groups(pairs: pl.DataFrame, records: pl.DataFrame | PreparedRecords) -> list[tuple[np.ndarray | None, tuple]]:
    """The pairs split by the key blocks of their two sides: (positions in ``pairs``, key ranges).

    Fetching a chunk's fields from the DuckDB table scans the table; pairs whose sides lie
    in two known key ranges scan only those ranges. Without this a city of N records and
    N pairs would be scanned once per chunk: work growing with N squared.
    """
    if not isinstance(records, PreparedRecords) or records.in_memory or records.height <= PAIR_KEY_BLOCK_ROWS:
        return [(None, ())]
    low, high = records.key_range
    blocks = -(-records.height // PAIR_KEY_BLOCK_ROWS)
    width = (high - low) // blocks + 1
    block_l = (pairs["record_key_l"].to_numpy() - low) // width
    block_r = (pairs["record_key_r"].to_numpy() - low) // width
    group = block_l * blocks + block_r
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    groups = []
    for positions in np.split(order, bounds):
        if not len(positions):
            continue
        bl, br = int(block_l[positions[0]]), int(block_r[positions[0]])
        ranges = (low + bl * width, low + (bl + 1) * width, low + br * width, low + (br + 1) * width)
        groups.append((positions, ranges))
    return groups


# Records per key block of `_pair_groups`: a chunk's fetch scans at most two such blocks.
PAIR_KEY_BLOCK_ROWS = 1_000_000
# Chunks of pairs compared at a time when the fields are in memory (see compare_in_chunks).
COMPARE_WORKERS = 2


def compare_in_chunks(
    pairs: pl.DataFrame,
    records: pl.DataFrame | PreparedRecords,
    comparisons: tuple[Comparison, ...],
    tf_tables: dict[str, pl.DataFrame],
    chunk_size: int = 250_000,
    workers: int = COMPARE_WORKERS,
) -> ComparedPairs:
    """Comparison vectors, rules and term-frequency adjustments, a chunk of pairs at a time.

    The pair frame carries both sides' strings (names, addresses) for every pair: for
    millions of pairs that is gigabytes, so it lives one chunk at a time (``workers`` chunks
    when the fields are in memory). Nothing after this needs it: the model works on the small
    integer levels. The results are in the order of ``pairs``.
    """
    comps = list(comparisons)
    n = len(pairs)
    gammas = np.zeros((n, len(comps)), dtype=np.int8)
    rule = np.full(n, "", dtype=object)
    tf_adjustment = np.zeros(n)

    def compare_chunk(chunk: pl.DataFrame, at: slice | np.ndarray, ranges: tuple) -> None:
        if isinstance(records, PreparedRecords):
            pf = records.pair_frame(chunk, key_ranges=ranges or None)
        else:
            pf = pair_frame(chunk, records)
        g = compare_pairs(pf, comparisons)
        # Each chunk writes only its own rows: chunks compared side by side never meet.
        gammas[at] = g
        rule[at] = apply_rules(pf, g, comps)
        tf_adjustment[at] = term_frequency_adjustment(pf, g, comps, tf_tables)

    # A chunk's comparison is half string conversion for rapidfuzz (Python, holding the GIL)
    # and half polars and rapidfuzz (letting it go): two chunks at a time keep both cores
    # busy. Only over fields in memory: a DuckDB connection answers one query at a time.
    in_memory = not isinstance(records, PreparedRecords) or records.in_memory
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compare") if in_memory and workers > 1 else None
    try:
        pending: list[Future] = []
        for positions, ranges in _pair_groups(pairs, records):
            group = pairs if positions is None else pairs[positions]
            for start in range(0, len(group), chunk_size):
                chunk = group.slice(start, chunk_size)
                at = slice(start, start + len(chunk)) if positions is None else positions[start:start + len(chunk)]
                if pool is None:
                    compare_chunk(chunk, at, ranges)
                    continue
                pending.append(pool.submit(compare_chunk, chunk, at, ranges))
                # At most `workers` chunks' pair frames alive at once.
                if len(pending) >= workers:
                    pending.pop(0).result()
        for future in pending:
            future.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return ComparedPairs(gammas, rule, tf_adjustment)


def model_dict(
    model: FellegiSunterModel,
    comparisons: tuple[Comparison, ...],
    settings: LinkageSettings,
    tf_tables: dict[str, pl.DataFrame],
    blocking_report: list[dict],
) -> dict:
    """What explain needs to recompute a pair's score later, and what an auditor reads: no personal data."""
    d = model.to_dict()
    return {
        "model_version": MODEL_VERSION,
        "linkage_method": LINKAGE_METHOD,
        "comparisons": [c.spec() for c in comparisons],
        **d,
        "match_probability_threshold": settings.match_probability_threshold,
        "match_weight_threshold": float(np.log2(settings.match_probability_threshold / (1 - settings.match_probability_threshold))),
        "term_frequency": {
            col: {"expected_tf": float((t["tf"] ** 2).sum()), "distinct_values": len(t)} for col, t in tf_tables.items()
        },
        "rules": {
            "different_valid_ids": "two valid resident ids that differ (15/18 forms already made one): different people",
            "same_valid_id": "the same valid resident id, the record's own, without conflict: the same person",
            "id_conflict": "same id, different names and a different sex or birth date: an id carried by two people",
            "different_names": "two han names with nothing in common (or only close, with another sex) and no shared id: "
            "not matched on this pair's evidence",
        },
        "blocking": blocking_report,
        "max_block_size": settings.max_block_size,
    }


def link_records(
    con: duckdb.DuckDBPyConnection,
    std: pl.DataFrame | str,
    previous: pl.DataFrame | None,
    *,
    settings: LinkageSettings | None = None,
    labels: pl.DataFrame | None = None,
    state: LinkState | None = None,
    stored_keys: StoredBlockKeys | None = None,
) -> LinkageResult:
    """Link every standardized record to a person.

    ``std``: the standardized records, as a frame or as the name of a table of ``con``
    (the flow's ``int_persons_standardized``: blocking and clustering fields are derived
    in DuckDB, only the comparison fields come to polars; see `linkage.records`).

    ``previous``: last night's person_registry (source, record_id, person_id), or None.
    ``labels``: optional labelled pairs (record_key_l, record_key_r, is_match); when given,
    the weights come from a logistic regression on them instead of EM.
    ``state``: reuse an earlier night's model and scored pairs, and block, compare and
    score only the pairs that touch ``state.changed_keys``; clustering and person ids
    still run over every record, so the result has the same form as a full night's.
    ``stored_keys``: the blocking passes' keys kept in ``con`` between nights
    (`linkage.block.StoredBlockKeys`); the pairs are the same with or without.
    """
    settings = settings or LinkageSettings()
    if settings.training not in ("sessions", "random_pairs", "candidates"):
        raise ValueError(f"unknown training {settings.training!r}: sessions, random_pairs or candidates")
    comparisons = settings.comparisons
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(std, str):
        # The comparison fields are loaded after blocking, whose DuckDB work would otherwise
        # share memory with them. An incremental night loads only those of tonight's pairs'
        # records, which fit in polars at any size, so its blocking fields are derived in
        # DuckDB (int_link_records.sql) even past IN_MEMORY_MAX_RECORDS. Preparing every
        # field in polars slices and comparing by DuckDB joins instead took 63 s to block and
        # 20 s to compare at 10M records with 1% changed, against 39 s and 0.6 s.
        records = PreparedRecords.from_table(
            con, std, load_frame=False, max_in_memory=None if state is None else UNLIMITED_RECORDS
        )
        key_order = records.select("record_key")
    else:
        records = PreparedRecords.from_frame(con, std)
        key_order = std.select(pl.col("record_key").cast(pl.Int64))
    blocking = run_blocking(
        con, records, settings.max_block_size, changed_keys=state.changed_keys if state is not None else None,
        stored=stored_keys,
    )
    if records.blocking_ready and not records.in_memory:
        if state is None:
            records.load_frame()
        else:
            records.load_frame(pl.concat([blocking.pairs["record_key_l"], blocking.pairs["record_key_r"]]).unique())
    timings["block"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if state is not None:
        tf_tables = state.tf_tables
    else:
        tf_tables = {c.tf_column: records.term_frequencies(c.tf_column) for c in comparisons if c.tf_column}
    compared = compare_in_chunks(blocking.pairs, records, comparisons, tf_tables)
    gammas, rule = compared.gammas, compared.rule
    timings["compare"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sessions: list[dict] = []
    if state is not None:
        model = FellegiSunterModel.from_dict(state.model)
        sessions = list(state.model.get("training_sessions", []))
    elif labels is not None and len(labels):
        lab = blocking.pairs.join(
            labels.select("record_key_l", "record_key_r", pl.col("is_match").cast(pl.Boolean)),
            on=["record_key_l", "record_key_r"],
            how="left",
        )["is_match"]
        known = lab.is_not_null().to_numpy()
        classes = set(lab.drop_nulls().to_list())
        if classes != {True, False}:
            raise ValueError("labelled pairs must include matches and non-matches among the candidate pairs")
        model = fit_supervised(gammas[known], lab.to_numpy()[known].astype(bool), list(comparisons))
    else:
        n = len(records)
        all_pairs = n * (n - 1) / 2
        u_fixed = None
        if n >= 2:
            sample = random_pairs(records, settings.u_sample_pairs, settings.random_seed)
            u_fixed = estimate_u(compare_pairs(records.pair_frame(sample), comparisons), list(comparisons), all_pairs)
        if settings.training == "candidates" or u_fixed is None:
            model = fit_em(gammas, list(comparisons), max_iterations=settings.em_max_iterations, u_init=u_fixed)
        elif settings.training == "random_pairs":
            model = fit_em(gammas, list(comparisons), max_iterations=settings.em_max_iterations, u_fixed=u_fixed)
        else:
            bits = {p.name: 1 << i for i, p in enumerate(BLOCKING_PASSES)}
            model, sessions = fit_em_by_sessions(
                gammas, blocking.pairs["passes"].to_numpy(), bits, list(comparisons), u_fixed,
                max_iterations=settings.em_max_iterations,
            )
        if all_pairs and model.u_source == "random_pairs":
            # Matches outside the candidates are negligible: the candidates' expected matches over all pairs.
            model.prior = min(model.lam * len(gammas) / all_pairs, 0.5)
    total = score(model, gammas)[0] + compared.tf_adjustment
    prob = probability(total)
    is_match = decide(prob, rule, settings.match_probability_threshold)
    timings["classify"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pairs = blocking.pairs.select("record_key_l", "record_key_r").with_columns(
        pl.Series("match_weight", total, dtype=pl.Float64),
        pl.Series("match_probability", prob, dtype=pl.Float64),
        pl.Series("is_match", is_match, dtype=pl.Boolean),
        _rule_series(rule),
    ) if len(blocking.pairs) else _empty_pairs()
    # The per-pair arrays live on in `pairs`; at ten million records they are gigabytes.
    del compared, gammas, rule, total, prob, is_match
    blocking.pairs = blocking.pairs.clear()
    pairs_scored_tonight = len(pairs)
    if state is not None and len(state.pairs):
        pairs = pl.concat([state.pairs.select(list(PAIR_SCHEMA)).cast(PAIR_SCHEMA), pairs]).sort(
            "record_key_l", "record_key_r"
        )
    ruled = pairs.filter((pl.col("rule") != "") & (pl.col("rule") != "same_valid_id"))
    # Id rules are hard: such records never share a person, not even through others.
    # different_names only keeps the pair's own evidence from deciding.
    cannot_link = ruled.filter(pl.col("rule").is_in(["different_valid_ids", "id_conflict"]))
    clustered = cluster_pairs(
        records.select("record_key", "id_number", "id_own", "birth"),
        pairs.filter(pl.col("is_match")),
        cannot_link.select("record_key_l", "record_key_r"),
    )
    id_conflicts = ruled.filter(pl.col("rule") == "id_conflict")
    conflict_rows = pl.concat(
        [
            id_conflicts.select(
                pl.lit("id_conflict").alias("kind"),
                pl.col(k).alias("record_key"),
                pl.format(
                    "same identity number as record_key {} but a different person (name and birth date or sex differ); not merged",
                    pl.col(o),
                ).alias("detail"),
            )
            for k, o in (("record_key_l", "record_key_r"), ("record_key_r", "record_key_l"))
        ]
        + [clustered.splits],
        how="vertical_relaxed",
    ).unique(maintain_order=True)
    clusters = clustered.clusters.join(records.select("record_key", "source", "record_id"), on="record_key")
    records.drop()
    ids = assign_person_ids(clusters, previous, changed=state.changed_keys if state is not None else None)
    # Same order as std, as the design asks.
    entity_map = key_order.join(ids.entity_map, on="record_key", how="left", maintain_order="left")
    timings["cluster"] = time.perf_counter() - t0

    n_persons = entity_map["person_id"].n_unique() if len(entity_map) else 0
    metrics = {
        "linkage_method": LINKAGE_METHOD,
        "records": len(records),
        "persons": n_persons,
        "refresh": "incremental" if state is not None else "full",
        "records_relinked": len(state.changed_keys) if state is not None else len(records),
        "pairs_scored": len(pairs),
        "pairs_scored_tonight": pairs_scored_tonight,
        "pairs_matched": int(pairs["is_match"].sum()),
        "pairs_ruled_different_valid_ids": int((pairs["rule"] == "different_valid_ids").sum()),
        "pairs_ruled_different_names": int((pairs["rule"] == "different_names").sum()),
        "id_conflicts": len(id_conflicts),
        "cluster_splits": clustered.splits["record_key"].n_unique() if len(clustered.splits) else 0,
        "id_changes": {
            "merge": int((ids.id_changes["change"] == "merge").sum()),
            "split": int((ids.id_changes["change"] == "split").sum()),
        },
        "blocking": blocking.report,
        "em": {"iterations": model.iterations, "converged": model.converged, "lambda": model.lam,
               "training": model.kind, "sessions": sessions},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    return LinkageResult(
        entity_map=entity_map,
        pairs=pairs,
        id_changes=ids.id_changes,
        conflicts=conflict_rows,
        metrics=metrics,
        model=state.model if state is not None else {
            **model_dict(model, comparisons, settings, tf_tables, blocking.report), "training_sessions": sessions
        },
        tf_tables=tf_tables,
    )
