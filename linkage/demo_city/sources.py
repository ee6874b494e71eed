"""The seven department extracts of the demo city.

Each builder picks the people its department holds, writes the fields as that
department's system does (headers, codes, date and phone styles), adds the
department's typical errors, and returns an `Extract`: the cells as they go to the
file plus, row for row, the truth (who the row is, whether ingest must accept it,
which hard cases it carries) and the facts the household findings are computed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.demo_city import names_data as nd
from linkage.demo_city import noise, places
from linkage.demo_city.people import (
    EXTRACT_DATE,
    REL_CHILD,
    REL_HEAD,
    REL_PARENT,
    REL_SPOUSE,
    TOWNSHIPS,
)

T = noise.TAG_BIT
# Recorded relation, reduced to the codes the findings use.
R_HEAD, R_SPOUSE, R_CHILD, R_PARENT, R_OTHER = 0, 1, 2, 3, 4


@dataclass
class Extract:
    name: str
    department: str
    kind: str
    file: str
    format: str
    encoding: str | None
    columns: dict[str, str | list[str]]
    cells: pl.DataFrame
    # aligned with `cells`: pid (-1 unknown), record_id, tags (bit mask), reason (null when accepted),
    # corrupt (how the writer damages the row, or null), addr_twp, household_id, rel_code, registered_at
    rows: pl.DataFrame
    # a UTF-8 byte-order mark before the header, as Windows tools write one
    bom: bool = False
    # when the writer splits the extract over several files (`file` is then a glob):
    # (file relative to the sources file, data rows), in row order
    parts: list[tuple[str, int]] | None = None


@dataclass
class Ctx:
    rng: np.random.Generator
    people: pl.DataFrame
    # numpy views of the people columns the builders use
    hh: np.ndarray
    rel: np.ndarray
    male: np.ndarray
    age: np.ndarray
    floating: np.ndarray
    hukou_twp: np.ndarray
    res_twp: np.ndarray
    head_of: np.ndarray  # index of each person's household head
    spouse_of_head: np.ndarray  # index of the head's spouse in each person's household, or -1

    @classmethod
    def build(cls, rng: np.random.Generator, people: pl.DataFrame) -> Ctx:
        hh = people["hh"].to_numpy()
        rel = people["rel"].to_numpy()
        n = len(hh)
        first = np.r_[0, np.flatnonzero(np.diff(hh)) + 1]
        head_of = first[np.searchsorted(first, np.arange(n), side="right") - 1]
        sp = np.full(int(hh.max()) + 1, -1)
        s = np.flatnonzero(rel == REL_SPOUSE)
        sp[hh[s]] = s
        return cls(
            rng=rng, people=people, hh=hh, rel=rel, male=people["male"].to_numpy(),
            age=people["age"].to_numpy(), floating=people["is_floating"].to_numpy(),
            hukou_twp=people["hukou_twp"].to_numpy(), res_twp=people["res_twp"].to_numpy(),
            head_of=head_of, spouse_of_head=sp[hh],
        )

    def min_count(self, rate: float, n: int, minimum: int = 1) -> int:
        return min(n, max(minimum, int(round(rate * n))))


# ----------------------------------------------------------------------------- helpers

def _dates_between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    lo = lo.astype("datetime64[D]")
    hi = hi.astype("datetime64[D]")
    span = np.maximum((hi - lo).astype(np.int64), 1)
    return lo + (rng.random(len(lo)) * span).astype(np.int64).astype("timedelta64[D]")


def _timestamps(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    secs = rng.integers(8 * 3600, 18 * 3600, len(days)).astype("timedelta64[s]")
    return (days.astype("datetime64[D]").astype("datetime64[s]") + secs).astype("datetime64[us]")


def _base(ctx: Ctx, pids: np.ndarray) -> pl.DataFrame:
    """True values for the chosen people, one row each, with the person-level tags."""
    p = ctx.people[pids]
    tags = (
        pl.when(pl.col("twin_of").is_not_null()).then(T["twin"]).otherwise(0)
        | pl.when(pl.col("popular")).then(T["popular_name"]).otherwise(0)
    )
    return p.select(
        pid=pl.col("pid"),
        name=pl.col("name"),
        surname=pl.col("surname"),
        given=pl.col("given"),
        id_number=pl.col("id_number"),
        male=pl.col("male"),
        birth_date=pl.col("birth_date"),
        ethnicity=pl.col("ethnicity"),
        phone=pl.col("phone"),
        hukou_address=pl.col("hukou_address"),
        residence_address=pl.col("residence_address"),
        hukou_region=pl.col("hukou_region"),
        hukou_twp=pl.col("hukou_twp"),
        res_twp=pl.col("res_twp"),
        tags=tags.cast(pl.Int64),
    )


def _duplicate(ctx: Ctx, df: pl.DataFrame, rate: float) -> pl.DataFrame:
    """In-source duplicates: the same person registered twice under two record ids."""
    k = ctx.min_count(rate, df.height, 1) if df.height else 0
    idx = np.sort(ctx.rng.choice(df.height, k, replace=False))
    flag = np.zeros(df.height, dtype=bool)
    flag[idx] = True
    df = df.with_columns(tags=pl.col("tags") | pl.when(pl.Series(flag)).then(T["duplicate_in_source"]).otherwise(0))
    return pl.concat([df, df[idx]], how="vertical")


def _scatter(df: pl.DataFrame, col: str, idx: np.ndarray, values: list | pl.Series) -> pl.DataFrame:
    if len(idx) == 0:
        return df
    s = df[col].scatter(idx, pl.Series(values, dtype=df.schema[col]))
    return df.with_columns(s.alias(col))


def _or_tag(df: pl.DataFrame, idx: np.ndarray, tag: str) -> pl.DataFrame:
    flag = np.zeros(df.height, dtype=bool)
    flag[idx] = True
    return df.with_columns(tags=pl.col("tags") | pl.when(pl.Series(flag)).then(T[tag]).otherwise(0))


def _noisy(ctx: Ctx, df: pl.DataFrame, *, typo: float = 0.0, homophone: float = 0.0, trad: float = 0.0,
           noisy_id: float = 0.0, missing_id: float = 0.0, id15: float = 0.0) -> pl.DataFrame:
    """Name and id errors, each on its own rows, except that one name error in twelve comes
    with an id error too (a hurried clerk): two errors in one record are rare, as in real data."""
    n = df.height
    rng = ctx.rng
    u = rng.random(n)
    edges = np.cumsum([trad, typo, homophone, noisy_id, missing_id])
    slot = np.searchsorted(edges, u, side="right")  # 5 = untouched
    id_slot = slot.copy()
    if noisy_id + missing_id > 0:
        double = (slot < 3) & (rng.random(n) < 1 / 12)
        id_slot[double] = np.where(rng.random(int(double.sum())) < noisy_id / (noisy_id + missing_id), 3, 4)
    names = df["name"]
    surnames = df["surname"]

    def rows(k: int) -> np.ndarray:
        return np.flatnonzero(slot == k) if k < 3 else np.flatnonzero(id_slot == k)

    for k, fn, tag in ((0, None, "traditional_name"), (1, noise.typos, "typo_name"),
                       (2, noise.homophones, "homophone_name")):
        idx = rows(k)
        if not len(idx):
            continue
        sel_names = names.gather(idx).to_list()
        if fn is None:
            new = noise.traditional(sel_names)
        else:
            new = fn(sel_names, surnames.gather(idx).to_list(), rng)
        ok = np.array([v is not None for v in new], dtype=bool)
        idx_ok = idx[ok]
        df = _scatter(df, "name", idx_ok, [v for v in new if v is not None])
        df = _or_tag(df, idx_ok, tag)
    idx = rows(3)
    if len(idx):
        df = _scatter(df, "id_number", idx, noise.noisy_ids(df["id_number"].gather(idx).to_list(), rng))
        df = _or_tag(df, idx, "noisy_id")
    idx = rows(4)
    if len(idx):
        df = _scatter(df, "id_number", idx, [None] * len(idx))
        df = _or_tag(df, idx, "missing_id")
    if id15:
        # Old systems keep the 15-digit id of people who had one (born before 1999).
        old = (df["birth_date"].dt.year() < 1999).to_numpy() & ((id_slot < 3) | (id_slot == 5))
        idx = np.flatnonzero(old & (rng.random(n) < id15))
        if len(idx):
            df = _scatter(df, "id_number", idx, noise.id15(df["id_number"].gather(idx)))
            df = _or_tag(df, idx, "id15")
    return df


def _record_ids(ctx: Ctx, df: pl.DataFrame, prefix: str, width: int) -> pl.DataFrame:
    start = int(ctx.rng.integers(10 ** (width - 2), 10 ** (width - 1)))
    order = ctx.rng.permutation(df.height)
    ids = pl.Series(start + order).cast(pl.String).str.zfill(width)
    return df.with_columns(record_id=pl.lit(prefix) + ids)


def _quarantine(ctx: Ctx, df: pl.DataFrame, *, superseded: float, missing_rid: float, no_name: float,
                corrupt: dict[str, float], placeholder: tuple[str, ...] = ("无", "不详", "")) -> pl.DataFrame:
    """Rows ingest must reject, on disjoint rows: superseded record ids (an older copy of a
    record under the same id), an empty record id, no usable name or id, and rows the
    writer damages (`corrupt`: reason code → rate)."""
    rng = ctx.rng
    n = df.height
    df = df.with_columns(reason=pl.lit(None, pl.String), corrupt=pl.lit(None, pl.String))
    perm = rng.permutation(n)
    pos = 0

    def take(rate: float, minimum: int) -> np.ndarray:
        nonlocal pos
        k = ctx.min_count(rate, n, minimum) if rate > 0 else 0
        out = np.sort(perm[pos:pos + k])
        pos += k
        return out

    sup = take(superseded, 1)
    mis = take(missing_rid, 1 if missing_rid else 0)
    non = take(no_name, 1 if no_name else 0)
    df = _scatter(df, "record_id", mis, [None] * len(mis))
    df = _scatter(df, "reason", mis, ["missing_record_id"] * len(mis))
    df = _scatter(df, "name", non, [placeholder[int(i)] for i in rng.integers(0, len(placeholder), len(non))])
    df = _scatter(df, "id_number", non, [None] * len(non))
    df = _scatter(df, "reason", non, ["no_name_or_id"] * len(non))
    for reason, rate in corrupt.items():
        bad = take(rate, 1)
        df = _scatter(df, "reason", bad, [reason] * len(bad))
        df = _scatter(df, "corrupt", bad, [reason] * len(bad))
    # An older copy of each superseded record: same record id, earlier update, stale phone.
    old = df[sup].with_columns(
        updated_at=pl.col("updated_at") - pl.duration(days=pl.Series(rng.integers(30, 1500, len(sup)))),
        reason=pl.lit("superseded_duplicate_record_id"),
    )
    if "phone" in old.columns and len(sup):
        old = old.with_columns(phone=pl.when(pl.Series(rng.random(len(sup)) < 0.5)).then(None).otherwise(pl.col("phone")))
    return pl.concat([df, old], how="vertical")


def _shuffle(ctx: Ctx, df: pl.DataFrame) -> pl.DataFrame:
    return df[ctx.rng.permutation(df.height)]


def _strip_province(addr: pl.Expr, how: np.ndarray) -> pl.Expr:
    """Addresses as departments write them: with or without province, city, county."""
    h = pl.Series(how)
    return (
        pl.when(h == 0).then(addr)
        .when(h == 1).then(addr.str.replace(r"^浙江省", ""))
        .when(h == 2).then(addr.str.replace(r"^浙江省绍兴市", ""))
        .otherwise(addr.str.replace(r"^浙江省绍兴市[^区县市]+[区县市]", ""))
    )


def _former_names(addr: pl.Expr, share: float, rng: np.random.Generator, n: int) -> pl.Expr:
    """An old system's addresses: some renamed townships still under their former name."""
    old = pl.Series(rng.random(n) < share)
    former = addr.str.replace_many(list(places.FORMER_NAMES), list(places.FORMER_NAMES.values()))
    return pl.when(old).then(former).otherwise(addr)


def _blank(cells: pl.DataFrame, rng: np.random.Generator, rates: dict[str, float]) -> pl.DataFrame:
    """Fields left empty by whoever keyed the record (never the record id, name or id number)."""
    return cells.with_columns([
        pl.when(pl.Series(rng.random(cells.height) < rate)).then(None).otherwise(pl.col(col)).alias(col)
        for col, rate in rates.items()
    ])


def _sex_zh(male: pl.Expr) -> pl.Expr:
    return pl.when(male).then(pl.lit("男")).otherwise(pl.lit("女"))


def _fmt_date(col: str, fmt: str) -> pl.Expr:
    return pl.col(col).dt.strftime(fmt)


def _rows_frame(df: pl.DataFrame, *, addr_twp: pl.Expr | None = None, household: pl.Expr | None = None,
                rel_code: pl.Expr | None = None, registered: pl.Expr | None = None) -> pl.DataFrame:
    return df.select(
        pid=pl.col("pid").cast(pl.Int64),
        record_id=pl.col("record_id"),
        tags=pl.col("tags"),
        reason=pl.col("reason"),
        corrupt=pl.col("corrupt"),
        addr_twp=(addr_twp if addr_twp is not None else pl.lit(-1)).cast(pl.Int64),
        household_id=(household if household is not None else pl.lit(None)).cast(pl.String),
        rel_code=(rel_code if rel_code is not None else pl.lit(None)).cast(pl.Int8),
        registered_at=(registered if registered is not None else pl.lit(None)).cast(pl.Date),
    )


def _police_household_ids(hh: pl.Expr) -> pl.Expr:
    # 9-digit 户号: distinct for distinct households, not in household order.
    return ((hh.cast(pl.Int64) * 7919 + 1_000_003) % 1_000_000_000).cast(pl.String).str.zfill(9)


# ----------------------------------------------------------------------------- 1. police

def police_hukou(ctx: Ctx) -> Extract:
    """公安局户政科: the household register of every local (hukou in the city)."""
    rng = ctx.rng
    n = len(ctx.hh)
    local = ~ctx.floating
    # The register misses a few people: newborns not yet registered, recent moves.
    miss = np.where(ctx.rel == REL_HEAD, 0.0, np.where(ctx.age == 0, 0.3, 0.015))
    covered = local & (rng.random(n) >= miss)
    pids = np.flatnonzero(covered)
    df = _base(ctx, pids).with_columns(hh=pl.Series(ctx.hh[pids]), rel=pl.Series(ctx.rel[pids]))

    # --- planted register errors, on distinct households
    hh_local = np.unique(ctx.hh[pids])
    used: set[int] = set()

    def pick_households(cands: np.ndarray, k: int) -> np.ndarray:
        cands = rng.permutation(np.unique(cands))
        cands = cands[~np.isin(cands, np.fromiter(used, dtype=np.int64, count=len(used)))][:k].astype(np.int64)
        used.update(cands.tolist())
        return cands

    n_h = len(hh_local)
    k_sanity = max(2, int(round(n_h * 0.0015)))
    in_reg = np.zeros(n, dtype=bool)
    in_reg[pids] = True
    # two heads: the spouse also written as 户主
    sp = np.flatnonzero((ctx.rel == REL_SPOUSE) & in_reg)
    two = pick_households(ctx.hh[sp], k_sanity)
    # no head: the head moved the hukou out and no new head was named
    multi = np.bincount(ctx.hh[pids], minlength=int(ctx.hh.max()) + 1)
    no_head = pick_households(np.flatnonzero(multi >= 2), k_sanity)
    # child older than parent: the head's father keyed as 子
    par = np.flatnonzero((ctx.rel == REL_PARENT) & in_reg)
    old_child_hh = pick_households(ctx.hh[par], k_sanity)
    # spouse under legal age: a teenage child keyed as 妻/夫
    teen = np.flatnonzero((ctx.rel == REL_CHILD) & in_reg & (ctx.age >= 15) & (ctx.age <= 19))
    young_sp_hh = pick_households(ctx.hh[teen], k_sanity)

    rel_rec = df["rel"].to_numpy().copy()
    df_hh = df["hh"].to_numpy()
    df_pid = df["pid"].to_numpy()
    rel_rec[np.isin(df_hh, two) & (rel_rec == REL_SPOUSE)] = REL_HEAD
    drop = np.isin(df_hh, no_head) & (rel_rec == REL_HEAD)
    m = np.isin(df_hh, old_child_hh) & (rel_rec == REL_PARENT)
    # one parent per household is enough
    first_m = np.flatnonzero(m)
    first_m = first_m[np.r_[True, df_hh[first_m[1:]] != df_hh[first_m[:-1]]]] if len(first_m) else first_m
    rel_rec[first_m] = REL_CHILD
    t = np.isin(df_hh, young_sp_hh) & np.isin(df_pid, teen)
    first_t = np.flatnonzero(t)
    first_t = first_t[np.r_[True, df_hh[first_t[1:]] != df_hh[first_t[:-1]]]] if len(first_t) else first_t
    rel_rec[first_t] = REL_SPOUSE
    df = df.with_columns(rel=pl.Series(rel_rec, dtype=pl.Int8))[np.flatnonzero(~drop)]

    # multi_household: a married woman's hukou moved to her husband's household but the old
    # entry, as a daughter in another household, was never cancelled.
    wives = np.flatnonzero(in_reg & (ctx.rel == REL_SPOUSE) & ~ctx.male & (ctx.age >= 25) & (ctx.age <= 50)
                           & ~np.isin(ctx.hh, list(used)))
    k_multi = max(3, int(round(len(pids) * 0.002)))
    wives = rng.permutation(wives)[: k_multi * 20]
    heads = np.flatnonzero(in_reg & (ctx.rel == REL_HEAD) & ~np.isin(ctx.hh, list(used)))
    other_head = heads[rng.integers(0, len(heads), len(wives))]
    ok = (ctx.age[other_head] >= ctx.age[wives] + 20) & (ctx.hh[other_head] != ctx.hh[wives])
    wives, other_head = wives[ok][:k_multi], other_head[ok][:k_multi]
    extra = _base(ctx, wives).with_columns(
        hh=pl.Series(ctx.hh[other_head]), rel=pl.lit(REL_CHILD, pl.Int8),
        hukou_address=ctx.people["hukou_address"].gather(other_head),
        hukou_region=ctx.people["hukou_region"].gather(other_head),
        hukou_twp=pl.Series(ctx.hukou_twp[other_head]),
        tags=pl.col("tags") | T["duplicate_in_source"],
    )
    df = df.with_columns(tags=pl.col("tags") | pl.when(pl.col("pid").is_in(wives.tolist()))
                         .then(T["duplicate_in_source"]).otherwise(0))
    df = pl.concat([df, extra.select(df.columns)], how="vertical")

    df = _duplicate(ctx, df, 0.012)
    df = _noisy(ctx, df, typo=0.005, homophone=0.004, noisy_id=0.003, missing_id=0.001)
    upd = _timestamps(rng, _dates_between(rng, np.full(df.height, np.datetime64("2015-01-01")),
                                          np.full(df.height, EXTRACT_DATE)))
    df = df.with_columns(updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    df = _record_ids(ctx, df, "HJ", 10)
    df = _quarantine(ctx, df, superseded=0.003, missing_rid=0.0002, no_name=0.0002,
                     corrupt={"wrong_column_count": 0.001, "undecodable_bytes": 0.0005})
    # The register lists households together, head first.
    rel_order = pl.col("rel").replace_strict({REL_HEAD: 0, REL_SPOUSE: 1, REL_PARENT: 2, REL_CHILD: 3},
                                             default=4, return_dtype=pl.Int8)
    df = df.with_columns(hid=_police_household_ids(pl.col("hh")), _ro=rel_order,
                         _r=pl.Series(rng.random(df.height))).sort("hid", "_ro", "_r")
    rel_zh = _relation_police(rng, df)
    cells = df.select(
        记录编号=pl.col("record_id"),
        姓名=pl.col("name"),
        性别=_sex_zh(pl.col("male")),
        民族=pl.col("ethnicity"),
        出生日期=_fmt_date("birth_date", "%Y%m%d"),
        公民身份号码=pl.col("id_number"),
        户号=pl.col("hid"),
        与户主关系=rel_zh,
        户籍地址=pl.col("hukou_address"),
        户籍地区划代码=pl.col("hukou_region"),
        更新时间=pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M:%S"),
    )
    rows = _rows_frame(df, addr_twp=pl.col("hukou_twp"), household=pl.col("hid"), rel_code=pl.col("rel"))
    return Extract(
        name="police_hukou", department="公安局户政科", kind="hukou", file="extracts/police_hukou.csv",
        format="csv", encoding="gb18030",
        columns={"record_id": "记录编号", "name": "姓名", "sex": "性别", "ethnicity": "民族",
                 "birth_date": "出生日期", "id_number": "公民身份号码", "household_id": "户号",
                 "relation_to_head": "与户主关系", "hukou_address": "户籍地址",
                 "hukou_region": "户籍地区划代码", "updated_at": "更新时间"},
        cells=cells, rows=rows,
    )


def _relation_police(rng: np.random.Generator, df: pl.DataFrame) -> pl.Series:
    """与户主关系 as the register writes it (户主, 妻, 夫, 配偶, 子, 长女, 父亲 …)."""
    n = df.height
    u = pl.Series(rng.random(n))
    male = pl.col("male")
    r = pl.col("rel")
    expr = (
        pl.when(r == REL_HEAD).then(pl.lit("户主"))
        .when(r == REL_SPOUSE).then(pl.when(u < 0.3).then(pl.lit("配偶")).when(male).then(pl.lit("夫")).otherwise(pl.lit("妻")))
        .when(r == REL_CHILD).then(
            pl.when(u < 0.55).then(pl.when(male).then(pl.lit("子")).otherwise(pl.lit("女")))
            .when(u < 0.8).then(pl.when(male).then(pl.lit("长子")).otherwise(pl.lit("长女")))
            .otherwise(pl.when(male).then(pl.lit("儿子")).otherwise(pl.lit("女儿"))))
        .when(r == REL_PARENT).then(pl.when(male).then(pl.lit("父亲")).otherwise(pl.lit("母亲")))
        .otherwise(pl.lit("其他"))
    )
    return df.select(expr.alias("rel_zh")).to_series()


# ----------------------------------------------------------------------------- 2. residence

def residence_registration(ctx: Ctx) -> Extract:
    """公安局流动人口管理大队: residence registrations (居住登记) of people living away from hukou."""
    rng = ctx.rng
    n = len(ctx.hh)
    u = rng.random(n)
    lives_in = ctx.res_twp >= 0
    floating_reg = ctx.floating & lives_in & (u < np.where(ctx.age < 16, 0.6, 0.78))
    local_reg = ~ctx.floating & lives_in & (ctx.res_twp != ctx.hukou_twp) & (u < 0.45)
    pids = np.flatnonzero(floating_reg | local_reg)
    df = _base(ctx, pids)
    birth = df["birth_date"].to_numpy().astype("datetime64[D]")
    lo = np.maximum(birth, EXTRACT_DATE - np.timedelta64(8 * 365, "D"))
    df = df.with_columns(registered=pl.Series(_dates_between(rng, lo, np.full(len(lo), EXTRACT_DATE - 10))).cast(pl.Date))
    df = _duplicate(ctx, df, 0.01)
    df = _noisy(ctx, df, typo=0.01, homophone=0.008, noisy_id=0.008, missing_id=0.003)
    reg = df["registered"].to_numpy().astype("datetime64[D]")
    upd = _timestamps(rng, _dates_between(rng, reg, np.full(len(reg), EXTRACT_DATE)))
    df = df.with_columns(updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    df = _record_ids(ctx, df, "JZ", 10)
    df = _quarantine(ctx, df, superseded=0.004, missing_rid=0.0003, no_name=0.0003, corrupt={})
    df = _shuffle(ctx, df)
    h = df.height
    # Birth dates: Excel date cells, except some typed as text or as 8-digit numbers.
    f = rng.random(h)
    fmt = np.where(f < 0.02, 1, np.where(f < 0.035, 3, np.where(f < 0.05, 2, 0)))
    df = df.with_columns(
        _csrq_alt=pl.when(pl.Series(fmt) == 0).then(None).otherwise(noise.format_dates(df["birth_date"], fmt)),
        tags=pl.col("tags") | pl.when(pl.Series(fmt) != 0).then(T["date_format"]).otherwise(0),
    )
    cells = df.select(
        djbh=pl.col("record_id"),
        xm=pl.col("name"),
        xb=_sex_zh(pl.col("male")),
        mz=pl.col("ethnicity"),
        csrq=pl.when(pl.col("_csrq_alt").is_null()).then(pl.col("birth_date")),
        csrq__text=pl.col("_csrq_alt"),
        gmsfhm=pl.col("id_number"),
        lxdh=pl.col("phone"),
        hjdz=pl.col("hukou_address"),
        jzdz=_strip_province(pl.col("residence_address"), rng.choice(4, h, p=[0.25, 0.15, 0.5, 0.1])),
        djrq=pl.col("registered"),
        gxsj=pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M:%S"),
    )
    cells = _blank(cells, rng, {"mz": 0.03, "lxdh": 0.04, "hjdz": 0.01})
    rows = _rows_frame(df, addr_twp=pl.col("res_twp"), registered=pl.col("registered"))
    return Extract(
        name="residence_registration", department="公安局流动人口管理大队", kind="residence",
        file="extracts/residence_registration.xlsx", format="xlsx", encoding=None,
        columns={"record_id": "djbh", "name": "xm", "sex": "xb", "ethnicity": "mz", "birth_date": "csrq",
                 "id_number": "gmsfhm", "phone": "lxdh", "hukou_address": "hjdz",
                 "residence_address": "jzdz", "registered_at": "djrq", "updated_at": "gxsj"},
        cells=cells, rows=rows,
    )


# ----------------------------------------------------------------------------- 3. health

def health_family_planning(ctx: Ctx) -> Extract:
    """卫生健康委员会: residents' health records (居民健康档案), an old system with loose formats."""
    rng = ctx.rng
    n = len(ctx.hh)
    p = np.where(ctx.age < 7, 0.8, np.where(ctx.age >= 65, 0.75, 0.4))
    pids = np.flatnonzero((ctx.res_twp >= 0) & (rng.random(n) < p))
    df = _base(ctx, pids)
    df = _duplicate(ctx, df, 0.02)
    df = _noisy(ctx, df, trad=0.025, typo=0.015, homophone=0.01, noisy_id=0.01, missing_id=0.015, id15=0.1)
    h = df.height
    created = _dates_between(rng, np.maximum(df["birth_date"].to_numpy().astype("datetime64[D]"),
                                             np.datetime64("2009-06-01")), np.full(h, EXTRACT_DATE - 1))
    upd = _timestamps(rng, _dates_between(rng, created, np.full(h, EXTRACT_DATE)))
    df = df.with_columns(created=pl.Series(created).cast(pl.Date), updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    # 档案编号: township code of the managing centre + sequence
    df = _record_ids(ctx, df, "", 8)
    twp_code = pl.Series([t.code for t in TOWNSHIPS])
    df = df.with_columns(record_id=twp_code.gather(pl.Series(np.maximum(df["res_twp"].to_numpy(), 0))) + pl.col("record_id"))
    df = _quarantine(ctx, df, superseded=0.003, missing_rid=0.0, no_name=0.0003,
                     corrupt={"wrong_column_count": 0.001, "undecodable_bytes": 0.0003})
    df = _shuffle(ctx, df)
    h = df.height
    fmt = rng.choice(5, h, p=[0.55, 0.15, 0.15, 0.10, 0.05])
    style = rng.choice(5, h, p=[0.5, 0.15, 0.1, 0.15, 0.1])
    centre = pl.Series([t.name.replace("街道", "社区卫生服务中心") if not t.is_town else t.name + "卫生院"
                        for t in TOWNSHIPS]).gather(pl.Series(np.maximum(df["res_twp"].to_numpy(), 0)))
    df = df.with_columns(tags=pl.col("tags") | pl.when(pl.Series(fmt) != 0).then(T["date_format"]).otherwise(0))
    cells = df.select(
        档案编号=pl.col("record_id"),
        姓名=pl.col("name"),
        性别=pl.when(pl.col("male")).then(pl.lit("1")).otherwise(pl.lit("2")),
        出生日期=noise.format_dates(df["birth_date"], fmt),
        身份证号=pl.col("id_number"),
        联系电话=noise.format_phones(df["phone"], style),
        现住址=_former_names(_strip_province(pl.col("residence_address"), rng.choice(4, h, p=[0.1, 0.1, 0.6, 0.2])),
                          0.5, rng, h),
        建档日期=_fmt_date("created", "%Y-%m-%d"),
        更新日期=pl.col("updated_at").dt.strftime("%Y-%m-%d"),
        管理机构=centre,
    )
    cells = _blank(cells, rng, {"性别": 0.005, "出生日期": 0.003, "联系电话": 0.05, "管理机构": 0.02})
    rows = _rows_frame(df, addr_twp=pl.col("res_twp"), registered=pl.col("created"))
    return Extract(
        name="health_family_planning", department="卫生健康委员会", kind="generic",
        file="extracts/health_family_planning.csv", format="csv", encoding="utf-8", bom=True,
        columns={"record_id": "档案编号", "name": "姓名", "sex": "性别", "birth_date": "出生日期",
                 "id_number": "身份证号", "phone": "联系电话", "residence_address": "现住址",
                 "registered_at": "建档日期", "updated_at": "更新日期"},
        cells=cells, rows=rows,
    )


# ----------------------------------------------------------------------------- 4. social insurance

def social_insurance(ctx: Ctx) -> Extract:
    """人力资源和社会保障局: insured workers, with employer; names in two columns."""
    rng = ctx.rng
    n = len(ctx.hh)
    p = np.where((ctx.age >= 18) & (ctx.age < 60), 0.66, np.where((ctx.age >= 60) & (ctx.age < 65), 0.3, 0.0))
    pids = np.flatnonzero((ctx.res_twp >= 0) & (rng.random(n) < p))
    df = _base(ctx, pids)
    df = _duplicate(ctx, df, 0.01)
    df = _noisy(ctx, df, typo=0.01, homophone=0.01, noisy_id=0.005)
    h = df.height
    # Romanized names typed by an agent (Han names only).
    rom = np.flatnonzero((rng.random(h) < 0.012) & df["surname"].is_not_null().to_numpy()
                         & ((df["tags"].to_numpy() & (T["typo_name"] | T["homophone_name"])) == 0))
    # minority names and names whose surname was mistyped stay whole in the first column
    split = pl.col("surname").is_not_null() & pl.col("name").str.starts_with(pl.col("surname"))
    rest = pl.col("name").str.slice(pl.col("surname").str.len_chars())
    df = df.with_columns(
        xing=pl.when(split).then(pl.col("surname")).otherwise(pl.col("name")),
        ming=pl.when(split & (rest != "")).then(rest),
    )
    pairs = noise.romanized(df["surname"].gather(rom).to_list(), df["given"].gather(rom).to_list(), rng)
    df = _scatter(df, "xing", rom, [a for a, _ in pairs])
    df = _scatter(df, "ming", rom, [b for _, b in pairs])
    df = _or_tag(df, rom, "romanized_name")
    birth = df["birth_date"].to_numpy().astype("datetime64[D]")
    start = _dates_between(rng, np.maximum(birth + 18 * 365, np.datetime64("2000-01-01")), np.full(h, EXTRACT_DATE - 30))
    upd = _timestamps(rng, _dates_between(rng, start, np.full(h, EXTRACT_DATE)))
    df = df.with_columns(started=pl.Series(start).cast(pl.Date), updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    # Employers: the county's big firms or a small local company.
    county = np.array([TOWNSHIPS[t].county.code for t in range(len(TOWNSHIPS))])[np.maximum(df["res_twp"].to_numpy(), 0)]
    emp = np.empty(h, dtype=object)
    big = rng.random(h) < 0.3
    for code, firms in nd.EMPLOYERS_BY_COUNTY.items():
        sel = np.flatnonzero((county == code) & big)
        emp[sel] = np.array(firms, dtype=object)[rng.integers(0, len(firms), len(sel))]
        sel = np.flatnonzero((county == code) & ~big)
        cname = next(c.name for c in places.CITY_COUNTIES if c.code == code)
        a = np.array(list(nd.SMALL_EMPLOYER_FIRST))[rng.integers(0, len(nd.SMALL_EMPLOYER_FIRST), len(sel))]
        b = np.array(list(nd.SMALL_EMPLOYER_FIRST))[rng.integers(0, len(nd.SMALL_EMPLOYER_FIRST), len(sel))]
        st = np.array(nd.SMALL_EMPLOYER_STEMS)[rng.integers(0, len(nd.SMALL_EMPLOYER_STEMS), len(sel))]
        emp[sel] = np.char.add(np.char.add(np.char.add(np.char.add("绍兴市" + cname[:2], a), b), st), "有限公司")
    df = df.with_columns(employer=pl.Series(emp.astype(str)))
    df = _record_ids(ctx, df, "3306", 8)
    df = df.with_columns(name=pl.col("xing"))  # the no-name rows blank the first column
    df = _quarantine(ctx, df, superseded=0.003, missing_rid=0.0002, no_name=0.0003, corrupt={},
                     placeholder=("",))
    df = df.with_columns(ming=pl.when(pl.col("reason") == "no_name_or_id").then(None).otherwise(pl.col("ming")),
                         xing=pl.when(pl.col("name") == "").then(None).otherwise(pl.col("name")))
    df = _shuffle(ctx, df)
    no_addr = pl.Series(ctx.rng.random(df.height) < 0.1)
    cells = df.select(
        grbh=pl.col("record_id"),
        xing=pl.col("xing"),
        ming=pl.col("ming"),
        xb=_sex_zh(pl.col("male")),
        sfzh=pl.col("id_number"),
        csrq=pl.col("birth_date"),
        lxdh=pl.col("phone"),
        dwmc=pl.col("employer"),
        jzdz=pl.when(no_addr).then(None).otherwise(pl.col("residence_address").str.replace(r"^浙江省", "")),
        cbrq=pl.col("started"),
        gxsj=pl.col("updated_at"),
    )
    rows = _rows_frame(df, addr_twp=pl.when(no_addr).then(-1).otherwise(pl.col("res_twp")),
                       registered=pl.col("started"))
    return Extract(
        name="social_insurance", department="人力资源和社会保障局", kind="generic",
        file="extracts/social_insurance.parquet", format="parquet", encoding=None,
        columns={"record_id": "grbh", "name": ["xing", "ming"], "sex": "xb", "id_number": "sfzh",
                 "birth_date": "csrq", "phone": "lxdh", "employer": "dwmc", "residence_address": "jzdz",
                 "registered_at": "cbrq", "updated_at": "gxsj"},
        cells=cells, rows=rows,
    )


# ----------------------------------------------------------------------------- 5. civil affairs

ROSTER_REL = ("户主", "配偶", "子女", "父母", "其他")


def civil_affairs_roster(ctx: Ctx) -> Extract:
    """民政局: households on assistance rosters (低保, 特困 …) under the bureau's own numbering."""
    rng = ctx.rng
    heads = np.flatnonzero((ctx.rel == REL_HEAD) & ~ctx.floating)
    p = np.where(ctx.age[heads] >= 60, 0.1, 0.04)
    chosen = heads[rng.random(len(heads)) < p]
    if len(chosen) < 8:
        chosen = rng.choice(heads, min(8, len(heads)), replace=False)
    members = np.flatnonzero(np.isin(ctx.hh, ctx.hh[chosen]))
    df = _base(ctx, members).with_columns(hh=pl.Series(ctx.hh[members]), rel=pl.Series(ctx.rel[members]))
    # Roster conflicts with the register: a member the register lacks, a member left off,
    # a different head.
    k = max(2, int(round(len(chosen) * 0.03)))
    conf = rng.permutation(np.unique(ctx.hh[chosen]))
    extra_hh, miss_hh, head_hh = conf[:k], conf[k:2 * k], conf[2 * k:3 * k]
    outsiders = rng.choice(np.flatnonzero(~ctx.floating & ~np.isin(ctx.hh, ctx.hh[chosen])), len(extra_hh), replace=False)
    extra = _base(ctx, outsiders).with_columns(hh=pl.Series(extra_hh), rel=pl.lit(R_OTHER, pl.Int8))
    df = pl.concat([df, extra.select(df.columns)], how="vertical")
    hh_arr = df["hh"].to_numpy()
    rel_arr = df["rel"].to_numpy().astype(np.int8).copy()
    # missing: drop one non-head member (households with one member cannot lose one)
    non_head = np.flatnonzero(np.isin(hh_arr, miss_hh) & (rel_arr != REL_HEAD))
    drop_rows = non_head[np.r_[True, hh_arr[non_head[1:]] != hh_arr[non_head[:-1]]]] if len(non_head) else non_head
    # different head: the spouse named head, the head named spouse
    sw = np.isin(hh_arr, head_hh)
    has_sp = np.isin(hh_arr, hh_arr[sw & (rel_arr == REL_SPOUSE)])
    rel_arr[sw & has_sp & (rel_arr == REL_HEAD)] = 99
    rel_arr[sw & has_sp & (rel_arr == REL_SPOUSE)] = REL_HEAD
    rel_arr[rel_arr == 99] = REL_SPOUSE
    keep = np.ones(df.height, dtype=bool)
    keep[drop_rows] = False
    df = df.with_columns(rel=pl.Series(rel_arr, dtype=pl.Int8))[np.flatnonzero(keep)]
    df = _duplicate(ctx, df, 0.01)
    df = _noisy(ctx, df, trad=0.01, typo=0.01, homophone=0.005, noisy_id=0.005, id15=0.1)
    upd = _timestamps(rng, _dates_between(rng, np.full(df.height, np.datetime64("2019-01-01")),
                                          np.full(df.height, EXTRACT_DATE)))
    df = df.with_columns(updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    df = _record_ids(ctx, df, "M", 8)
    df = _quarantine(ctx, df, superseded=0.003, missing_rid=0.0, no_name=0.0, corrupt={"unreadable_row": 0.003})
    # the bureau's own household numbers: county + sequence in order of enrolment
    hh_u = np.unique(df["hh"].to_numpy())
    seq = rng.permutation(len(hh_u)) + 1
    county = np.array([TOWNSHIPS[t].county.code for t in range(len(TOWNSHIPS))])
    fam = pl.Series([f"MZ{county[ctx.hukou_twp[ctx.head_of[h_idx_first]]]}-{s:06d}"
                     for h_idx_first, s in zip(_first_member(ctx, hh_u), seq, strict=True)])
    fam_map = dict(zip(hh_u.tolist(), fam.to_list(), strict=True))
    df = df.with_columns(family=pl.col("hh").replace_strict(fam_map, return_dtype=pl.String))
    df = df.with_columns(_r=pl.Series(rng.random(df.height))).sort("family", "_r")
    assist = np.array(["低保", "低保边缘", "特困供养", "残疾人两项补贴"])[rng.choice(4, df.height, p=[0.5, 0.25, 0.1, 0.15])]
    cells = df.select(
        memberId=pl.col("record_id"),
        familyNo=pl.col("family"),
        name=pl.col("name"),
        idCard=pl.col("id_number"),
        gender=_sex_zh(pl.col("male")),
        birthday=_fmt_date("birth_date", "%Y-%m-%d"),
        relation=pl.col("rel").cast(pl.Int64).replace_strict(dict(enumerate(ROSTER_REL)), return_dtype=pl.String),
        address=_former_names(pl.col("hukou_address").str.replace(r"^浙江省绍兴市", ""), 0.6, rng, df.height),
        assistType=pl.Series(assist),
        updateTime=pl.col("updated_at").dt.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    cells = _blank(cells, rng, {"birthday": 0.005, "gender": 0.005})
    rows = _rows_frame(df, household=pl.col("family"), rel_code=pl.col("rel"))
    return Extract(
        name="civil_affairs_roster", department="民政局", kind="roster",
        file="extracts/civil_affairs_roster.jsonl", format="jsonl", encoding=None,
        columns={"record_id": "memberId", "household_id": "familyNo", "name": "name", "id_number": "idCard",
                 "sex": "gender", "birth_date": "birthday", "relation_to_head": "relation",
                 "hukou_address": "address", "updated_at": "updateTime"},
        cells=cells, rows=rows,
    )


def _first_member(ctx: Ctx, hh_u: np.ndarray) -> np.ndarray:
    first = np.r_[0, np.flatnonzero(np.diff(ctx.hh)) + 1]
    return first[hh_u]


# ----------------------------------------------------------------------------- 6. schools

def schools(ctx: Ctx) -> Extract:
    """教育局: pupils aged 6-17 with their guardian's phone."""
    rng = ctx.rng
    n = len(ctx.hh)
    pids = np.flatnonzero((ctx.res_twp >= 0) & (ctx.age >= 6) & (ctx.age <= 17) & (rng.random(n) < 0.96))
    df = _base(ctx, pids)
    # guardian: the parent among head and spouse (mother or father), else the head
    head = ctx.head_of[pids]
    spouse = ctx.spouse_of_head[pids]
    child = ctx.rel[pids] == REL_CHILD
    use_sp = child & (spouse >= 0) & (rng.random(len(pids)) < 0.5)
    guardian = np.where(use_sp, spouse, head)
    guardian = np.where(guardian == pids, -1, guardian)
    g = np.maximum(guardian, 0)
    P = ctx.people
    df = df.with_columns(
        g_name=pl.when(pl.Series(guardian >= 0)).then(P["name"].gather(g)),
        g_phone=pl.when(pl.Series(guardian >= 0)).then(P["phone"].gather(g)),
        g_id=pl.when(pl.Series(guardian >= 0)).then(P["id_number"].gather(g)),
    )
    df = _duplicate(ctx, df, 0.01)
    df = _noisy(ctx, df, typo=0.01, homophone=0.01, noisy_id=0.008, missing_id=0.02)
    # A child enrolled under a parent's id number.
    h = df.height
    clean = (df["tags"].to_numpy() & (T["noisy_id"] | T["missing_id"])) == 0
    eligible = np.flatnonzero(clean & df["g_id"].is_not_null().to_numpy())
    share = np.sort(rng.choice(eligible, ctx.min_count(0.01, len(eligible), 2), replace=False))
    df = _scatter(df, "id_number", share, df["g_id"].gather(share))
    df = _or_tag(df, share, "shared_parent_id")
    upd = _timestamps(rng, _dates_between(rng, np.full(h, np.datetime64("2025-09-01")), np.full(h, EXTRACT_DATE)))
    df = df.with_columns(updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    df = _record_ids(ctx, df, "XJ", 10)
    df = _quarantine(ctx, df, superseded=0.002, missing_rid=0.0, no_name=0.0,
                     corrupt={"wrong_column_count": 0.001, "undecodable_bytes": 0.0005})
    df = _shuffle(ctx, df)
    h = df.height
    f = rng.random(h)
    fmt = np.where(f < 0.08, 1, np.where(f < 0.12, 2, 0))
    df = df.with_columns(tags=pl.col("tags") | pl.when(pl.Series(fmt) != 0).then(T["date_format"]).otherwise(0))
    age = df.select((pl.lit(EXTRACT_DATE.astype(object)) - pl.col("birth_date")).dt.total_days() // 365).to_series().to_numpy()
    grade = np.clip(age - 5, 1, 12)
    level = np.where(grade <= 6, 0, np.where(grade <= 9, 1, 2))
    twp_names = [t.name.removesuffix("街道").removesuffix("镇").removesuffix("乡") for t in TOWNSHIPS]
    stem = pl.Series(twp_names).gather(pl.Series(np.maximum(df["res_twp"].to_numpy(), 0)))
    suffix = np.array(["实验小学", "初级中学", "高级中学"])[level]
    grade_zh = np.array(["一年级", "二年级", "三年级", "四年级", "五年级", "六年级",
                         "初一", "初二", "初三", "高一", "高二", "高三"])[grade - 1]
    cells = df.select(
        xsbh=pl.col("record_id"),
        xm=pl.col("name"),
        xb=_sex_zh(pl.col("male")),
        csrq=noise.format_dates(df["birth_date"], fmt),
        sfzh=pl.col("id_number"),
        mz=pl.col("ethnicity"),
        xxmc=stem + pl.Series(suffix),
        nj=pl.Series(grade_zh),
        jzdz=pl.col("residence_address").str.replace(r"^浙江省绍兴市", ""),
        jhrxm=pl.col("g_name"),
        lxdh=pl.col("g_phone"),
        gxsj=pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M:%S"),
    )
    cells = _blank(cells, rng, {"mz": 0.01, "lxdh": 0.02, "jhrxm": 0.01})
    rows = _rows_frame(df, addr_twp=pl.col("res_twp"))
    return Extract(
        name="schools", department="教育局", kind="generic", file="extracts/schools.csv",
        format="csv", encoding="gbk",
        columns={"record_id": "xsbh", "name": "xm", "sex": "xb", "birth_date": "csrq", "id_number": "sfzh",
                 "ethnicity": "mz", "residence_address": "jzdz", "phone": "lxdh", "updated_at": "gxsj"},
        cells=cells, rows=rows,
    )


# ----------------------------------------------------------------------------- 7. rental

def rental_housing(ctx: Ctx) -> Extract:
    """住房和城乡建设局: rented houses and their adult tenants."""
    rng = ctx.rng
    n_h = int(ctx.hh.max()) + 1
    rents_hh = rng.random(n_h) < 0.8
    rents_local = rng.random(len(ctx.hh)) < 0.4
    lives_away = (ctx.res_twp >= 0) & (ctx.res_twp != ctx.hukou_twp)
    tenant = (ctx.age >= 16) & lives_away & np.where(ctx.floating, rents_hh[ctx.hh], rents_local[ctx.head_of] | rents_local)
    pids = np.flatnonzero(tenant)
    df = _base(ctx, pids)
    house = df.select(pl.col("residence_address").rank("dense")).to_series().to_numpy()
    df = df.with_columns(house_id=pl.lit("FW") + pl.Series(house * 37 + 100_000).cast(pl.String).str.zfill(8))
    h = df.height
    movein = _dates_between(rng, np.maximum(df["birth_date"].to_numpy().astype("datetime64[D]") + 16 * 365,
                                            EXTRACT_DATE - np.timedelta64(5 * 365, "D")), np.full(h, EXTRACT_DATE - 5))
    df = df.with_columns(movein=pl.Series(movein).cast(pl.Date))
    df = _duplicate(ctx, df, 0.02)
    df = _noisy(ctx, df, typo=0.015, homophone=0.01, noisy_id=0.015, missing_id=0.01)
    h = df.height
    mv = df["movein"].to_numpy().astype("datetime64[D]")
    upd = _timestamps(rng, _dates_between(rng, mv, np.full(h, EXTRACT_DATE)))
    df = df.with_columns(updated_at=pl.Series(upd).cast(pl.Datetime("us")))
    df = _record_ids(ctx, df, "ZL", 9)
    df = _quarantine(ctx, df, superseded=0.003, missing_rid=0.0003, no_name=0.0003,
                     corrupt={"wrong_column_count": 0.001})
    df = _shuffle(ctx, df)
    h = df.height
    cells = df.select(
        登记编号=pl.col("record_id"),
        房屋编号=pl.col("house_id"),
        房屋地址=_strip_province(pl.col("residence_address"), rng.choice(4, h, p=[0.05, 0.05, 0.4, 0.5])),
        承租人姓名=pl.col("name"),
        证件类型=pl.lit("居民身份证"),
        证件号码=pl.col("id_number"),
        联系电话=pl.col("phone"),
        入住日期=_fmt_date("movein", "%Y-%m-%d"),
        更新时间=pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M"),
    )
    cells = _blank(cells, rng, {"联系电话": 0.03})
    rows = _rows_frame(df, addr_twp=pl.col("res_twp"), registered=pl.col("movein"))
    return Extract(
        name="rental_housing", department="住房和城乡建设局", kind="rental",
        file="extracts/rental_housing.csv", format="csv", encoding="utf-8",
        columns={"record_id": "登记编号", "house_id": "房屋编号", "residence_address": "房屋地址",
                 "name": "承租人姓名", "id_number": "证件号码", "phone": "联系电话",
                 "registered_at": "入住日期", "updated_at": "更新时间"},
        cells=cells, rows=rows,
    )


BUILDERS = (police_hukou, residence_registration, health_family_planning, social_insurance,
            civil_affairs_roster, schools, rental_housing)
