"""The true population of the demo city: households, people, names, identity numbers,
where each person is registered (hukou) and where they actually live.

Everything is generated over numpy arrays; Python loops only run over the small
place and name tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.demo_city import names_data as nd
from linkage.demo_city import places as pl_

# The day the extracts are cut: ages and "since" dates count from here.
EXTRACT_DATE = np.datetime64("2026-11-20")

REL_HEAD, REL_SPOUSE, REL_CHILD, REL_PARENT = 0, 1, 2, 3
REL_NAMES = ("head", "spouse", "child", "parent")

# Shares of households by shape. Locals: (single, couple, couple+children,
# three generations, single parent, head with own parents); floating households
# are younger and smaller.
_LOCAL_TYPES = np.array([0.13, 0.22, 0.38, 0.17, 0.05, 0.05])
_FLOAT_TYPES = np.array([0.36, 0.22, 0.36, 0.0, 0.04, 0.02])
# Share of households that are floating: tuned so that floating people are ~20% of
# the city's residents.
_FLOAT_HH_SHARE = 0.25
# Locals living in another township of the city (市内人户分离), and outside the city.
SPLIT_SHARE = 0.08
OUTSIDE_SHARE = 0.03


@dataclass(frozen=True)
class Township:
    index: int
    code: str
    name: str
    county: pl_.County

    @property
    def is_town(self) -> bool:
        return not self.name.endswith("街道")


def township_table() -> list[Township]:
    out: list[Township] = []
    for county in (*pl_.CITY_COUNTIES, *pl_.ORIGIN_COUNTIES):
        for suffix, name in county.townships:
            out.append(Township(len(out), county.code + suffix, name, county))
    return out


TOWNSHIPS = township_table()
CITY_TOWNSHIPS = np.array([t.index for t in TOWNSHIPS if t.county.in_city])
ORIGIN_TOWNSHIPS = np.array([t.index for t in TOWNSHIPS if not t.county.in_city])


def _township_weights(idx: np.ndarray) -> np.ndarray:
    # County weight spread over its townships, streets (urban) twice as populous as towns.
    w = np.empty(len(idx))
    for k, ti in enumerate(idx):
        t = TOWNSHIPS[ti]
        n = len(t.county.townships)
        w[k] = t.county.weight / n * (1.6 if not t.is_town else 0.8)
    return w / w.sum()


def _gather(values: list[str] | tuple[str, ...], idx: np.ndarray) -> pl.Series:
    return pl.Series(values=list(values), dtype=pl.String).gather(pl.Series(idx.astype(np.int64)))


def _digits_str(values: np.ndarray, width: int) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.String).str.zfill(width)


def _years_before(rng: np.random.Generator, ages: np.ndarray) -> np.ndarray:
    days = (ages * 365.25 + rng.integers(0, 365, len(ages))).astype(np.int64)
    return EXTRACT_DATE - days.astype("timedelta64[D]")


def age_on(birth: np.ndarray, day: np.datetime64 = EXTRACT_DATE) -> np.ndarray:
    """Whole years of age on `day` for datetime64[D] birth dates."""
    b = birth.astype("datetime64[D]")
    by = b.astype("datetime64[Y]").astype(np.int64) + 1970
    bmd = (b - b.astype("datetime64[Y]")).astype(np.int64)
    d = np.datetime64(day, "D")
    dy = d.astype("datetime64[Y]").astype(np.int64) + 1970
    dmd = (d - d.astype("datetime64[Y]")).astype(np.int64)
    # Day-of-year comparison is off by one around 29 Feb in leap years: harmless here.
    return dy - by - (dmd < bmd)


def check_char(first17: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 11-2 check characters for an int64 array of 17-digit numbers."""
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
    x = first17.astype(np.int64)
    total = np.zeros(len(x), dtype=np.int64)
    for pos in range(16, -1, -1):
        total += (x % 10) * weights[pos]
        x //= 10
    return np.array(list("10X98765432"))[total % 11]


def id_check_ok(id_number: str) -> bool:
    """True when an 18-character resident id has a correct check character."""
    if len(id_number) != 18 or not id_number[:17].isdigit():
        return False
    return check_char(np.array([int(id_number[:17])]))[0] == id_number[17].upper()


def _households(rng: np.random.Generator, persons: int) -> dict[str, np.ndarray]:
    """One row per household member: household, relation, sex, age (years)."""
    n_h = max(8, int(persons / 2.0) + 8)
    floating = rng.random(n_h) < _FLOAT_HH_SHARE
    kind = np.where(
        floating,
        rng.choice(6, n_h, p=_FLOAT_TYPES),
        rng.choice(6, n_h, p=_LOCAL_TYPES),
    )
    u = rng.random(n_h)
    head_age = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4, kind == 5],
        [
            np.where(floating | (u < 0.6), rng.integers(19, 38, n_h), rng.integers(62, 94, n_h)),
            np.where(floating | (u < 0.4), rng.integers(24, 50, n_h), rng.integers(52, 90, n_h)),
            rng.integers(27, 63, n_h),
            rng.integers(30, 52, n_h),
            rng.integers(30, 60, n_h),
            rng.integers(22, 42, n_h),
        ],
    )
    has_spouse = np.isin(kind, (1, 2, 3))
    head_male = np.where(
        has_spouse, rng.random(n_h) < 0.82,
        np.where(kind == 4, rng.random(n_h) < 0.3, rng.random(n_h) < 0.55),
    )
    n_children = np.where(np.isin(kind, (2, 3, 4)), rng.choice([1, 2, 3], n_h, p=[0.55, 0.38, 0.07]), 0)
    n_parents = np.where(np.isin(kind, (3, 5)), rng.choice([1, 2], n_h, p=[0.4, 0.6]), 0)

    hh = np.arange(n_h)
    # Heads
    parts = [(hh, np.full(n_h, REL_HEAD), head_male, head_age)]
    # Spouses: a few years apart, at least of legal marriage age (22 men, 20 women).
    sp = hh[has_spouse]
    sp_male = ~head_male[sp]
    gap = rng.integers(-2, 6, len(sp))
    sp_age = np.where(sp_male, head_age[sp] + gap, head_age[sp] - gap)
    sp_age = np.maximum(sp_age, np.where(sp_male, 22, 20))
    parts.append((sp, np.full(len(sp), REL_SPOUSE), sp_male, sp_age))
    # Children: born when the head was 22-39; unborn ones are dropped.
    ch = np.repeat(hh, n_children)
    ch_age = head_age[ch] - rng.integers(22, 40, len(ch))
    keep = ch_age >= 0
    ch, ch_age = ch[keep], ch_age[keep]
    parts.append((ch, np.full(len(ch), REL_CHILD), rng.random(len(ch)) < 0.52, ch_age))
    # The head's own parents, 22-35 years older, alive up to 95.
    pa = np.repeat(hh, n_parents)
    rank = np.arange(len(pa)) - np.repeat(np.cumsum(n_parents) - n_parents, n_parents)
    pa_age = head_age[pa] + rng.integers(22, 36, len(pa))
    pa_male = np.where(n_parents[pa] == 2, rank == 0, rng.random(len(pa)) < 0.3)
    keep = pa_age <= 95
    parts.append((pa[keep], np.full(int(keep.sum()), REL_PARENT), pa_male[keep], pa_age[keep]))

    hh_all = np.concatenate([p[0] for p in parts])
    rel = np.concatenate([p[1] for p in parts])
    male = np.concatenate([p[2] for p in parts])
    age = np.concatenate([p[3] for p in parts])
    order = np.lexsort((rel, hh_all))[:persons]
    if len(order) < persons:
        raise ValueError("household generator made too few people")  # cannot happen: 2x headroom
    hh_all, rel, male, age = hh_all[order], rel[order], male[order], age[order]
    # Renumber households densely in order of appearance.
    uniq, hh_dense = np.unique(hh_all, return_inverse=True)
    return {
        "hh": hh_dense.astype(np.int64),
        "rel": rel.astype(np.int8),
        "male": male.astype(bool),
        "age": age.astype(np.int64),
        "hh_floating": floating[uniq],
    }


def _twins(rng: np.random.Generator, hh: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Pairs of children (first two of a household) made twins: returns twin_of index or -1."""
    n = len(hh)
    twin_of = np.full(n, -1, dtype=np.int64)
    child = np.flatnonzero(rel == REL_CHILD)
    if len(child) < 2:
        return twin_of
    # consecutive children of one household
    same = hh[child[1:]] == hh[child[:-1]]
    first_pair = np.flatnonzero(same & np.r_[True, hh[child[1:-1]] != hh[child[:-2]]] if len(child) > 2 else same)
    a, b = child[first_pair], child[first_pair + 1]
    # ~1 in 45 births is a twin pair; among households with 2+ children that is ~6%.
    pick = rng.random(len(a)) < 0.06
    a, b = a[pick], b[pick]
    twin_of[a], twin_of[b] = b, a
    return twin_of


def generate_people(rng: np.random.Generator, persons: int) -> pl.DataFrame:
    """The true population: one row per person (see `truth/persons.parquet`)."""
    h = _households(rng, persons)
    hh, rel, male, age = h["hh"], h["rel"], h["male"], h["age"]
    n = len(hh)
    n_h = int(hh.max()) + 1
    hh_floating = h["hh_floating"]
    floating = hh_floating[hh]

    # -- births: twins share a birth date
    birth = _years_before(rng, age)
    twin_of = _twins(rng, hh, rel)
    tw = np.flatnonzero(twin_of > np.arange(n))
    birth[twin_of[tw]] = birth[tw]
    age = age_on(birth)

    # -- hukou township of each household
    city_w = _township_weights(CITY_TOWNSHIPS)
    origin_w = _township_weights(ORIGIN_TOWNSHIPS)
    hh_hukou = np.where(
        hh_floating,
        rng.choice(ORIGIN_TOWNSHIPS, n_h, p=origin_w),
        rng.choice(CITY_TOWNSHIPS, n_h, p=city_w),
    )
    # -- where the household lives. Floating: industrial districts draw more workers.
    float_res_w = city_w * np.array([
        {"330603": 1.6, "330681": 1.3, "330602": 1.1}.get(TOWNSHIPS[t].county.code, 0.7) for t in CITY_TOWNSHIPS
    ])
    float_res_w /= float_res_w.sum()
    u = rng.random(n_h)
    moved_hh = (~hh_floating) & (u < SPLIT_SHARE * 0.8)
    away_hh = (~hh_floating) & (u >= SPLIT_SHARE * 0.8) & (u < SPLIT_SHARE * 0.8 + OUTSIDE_SHARE * 0.5)
    other_twp = _other_township(rng, hh_hukou, city_w)
    hh_res = np.where(hh_floating, rng.choice(CITY_TOWNSHIPS, n_h, p=float_res_w),
                      np.where(moved_hh, other_twp, hh_hukou))
    hh_res = np.where(away_hh, -1, hh_res)
    # Individuals who live apart from their household: adult children working in
    # another township or outside the city.
    res = hh_res[hh].copy()
    hukou = hh_hukou[hh]
    adult_child = (~floating) & (rel == REL_CHILD) & (age >= 18) & (res == hukou)
    v = rng.random(n)
    ind_split = adult_child & (v < 0.16)
    ind_away = adult_child & (v >= 0.16) & (v < 0.22)
    res[ind_split] = _other_township(rng, hukou[ind_split], city_w)
    res[ind_away] = -1
    # own address key: members living apart get their own dwelling
    dwelling = np.where(ind_split | ind_away, n_h + np.arange(n), hh)

    # -- addresses
    hukou_addr = _addresses(rng, hh_hukou, np.arange(n_h)).gather(pl.Series(hh))
    moved_addr = _addresses(rng, np.where(res < 0, CITY_TOWNSHIPS[0], res), dwelling)
    res_addr = pl.select(
        pl.when(pl.Series(res < 0)).then(None).when(pl.Series(res == hukou)).then(hukou_addr).otherwise(moved_addr)
    ).to_series()

    # -- ethnicity and names
    county_code = np.array([TOWNSHIPS[t].county.code for t in range(len(TOWNSHIPS))])
    hh_county = county_code[hh_hukou]
    uyghur_hh = hh_county == "653101"
    e = rng.random(n_h)
    hh_eth = np.where(uyghur_hh, "维吾尔族", "汉族").astype(object)
    dafang = hh_county == "520521"
    hh_eth[dafang & (e < 0.12)] = "彝族"
    hh_eth[dafang & (e >= 0.12) & (e < 0.22)] = "苗族"
    local = ~hh_floating
    hh_eth[local & (e < 0.004)] = "畲族"
    hh_eth[local & (e >= 0.004) & (e < 0.006)] = "回族"
    hh_eth[local & (e >= 0.006) & (e < 0.007)] = "满族"
    hh_eth[(hh_county == "430626") & (e < 0.03)] = "土家族"
    ethnicity = hh_eth[hh]
    # A spouse's ethnicity may differ from the head's.
    sp_mix = (rel == REL_SPOUSE) & (rng.random(n) < 0.5) & (ethnicity != "维吾尔族")
    ethnicity[sp_mix] = "汉族"

    surname, given = _names(rng, hh, rel, male, birth, uyghur_hh[hh])
    name = np.char.add(surname.astype(str), given.astype(str)).astype(object)
    uy = uyghur_hh[hh]
    father_given = _uyghur_fathers(rng, hh, rel, male, given)
    name[uy] = np.char.add(np.char.add(given[uy].astype(str), "·"), father_given[uy].astype(str))
    surname[uy] = None

    # -- identity numbers: region at birth + birth date + sequence (parity = sex) + check
    id_region = hh_county[hh].copy()
    reg_u = rng.random(n)
    city_codes = np.array([c.code for c in pl_.CITY_COUNTIES])
    origin_codes = np.array([c.code for c in pl_.ORIGIN_COUNTIES])
    married_in = (~floating) & (rel == REL_SPOUSE) & (reg_u < 0.3)
    id_region[married_in] = np.where(
        reg_u[married_in] < 0.18, rng.choice(city_codes, int(married_in.sum())),
        rng.choice(origin_codes, int(married_in.sum())),
    )
    byear = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    for c in pl_.ORIGIN_COUNTIES:
        if c.old_code:
            id_region[(id_region == c.code) & (byear < c.code_since)] = c.old_code
    id_number = _id_numbers(id_region, birth, male)

    phone = _phones(rng, age)

    pid = np.arange(n)
    twp_code = np.array([t.code for t in TOWNSHIPS])
    df = pl.DataFrame({
        "pid": pid,
        "true_person_id": _digits_str(pid + 1, 8).str.replace(r"^", "T"),
        "hh": hh,
        "hukou_household": _digits_str(hh + 1, 7).str.replace(r"^", "H"),
        "rel": rel,
        "relation_to_head": _gather(REL_NAMES, rel.astype(np.int64)),
        "male": male,
        "sex": np.where(male, "M", "F"),
        "birth_date": pl.Series(birth.astype("datetime64[D]")).cast(pl.Date),
        "age": age,
        "name": pl.Series(name.astype(str)),
        "surname": pl.Series(surname, dtype=pl.String),
        "given": pl.Series(given.astype(str)),
        "ethnicity": pl.Series(ethnicity.astype(str)),
        "id_number": id_number,
        "id_region": pl.Series(id_region.astype(str)),
        "phone": phone,
        "hukou_twp": hukou,
        "res_twp": res,
        "hukou_region": pl.Series(twp_code[hukou]),
        "residence_region": pl.Series(np.where(res >= 0, twp_code[np.maximum(res, 0)], None), dtype=pl.String),
        "hukou_address": hukou_addr,
        "residence_address": res_addr,
        "is_floating": floating,
        "twin_of_pid": twin_of,
    })
    return df.with_columns(
        twin_of=pl.when(pl.col("twin_of_pid") >= 0)
        .then(pl.lit("T") + (pl.col("twin_of_pid") + 1).cast(pl.String).str.zfill(8)),
        popular=pl.col("name").is_in(list(nd.POPULAR_FULL_NAMES)),
    )


def _other_township(rng: np.random.Generator, twp: np.ndarray, city_w: np.ndarray) -> np.ndarray:
    """A different city township: half the time in the same county, else anywhere."""
    n = len(twp)
    out = rng.choice(CITY_TOWNSHIPS, n, p=city_w)
    county_of = np.array([t.county.code for t in TOWNSHIPS])
    same_county = rng.random(n) < 0.5
    for code in np.unique(county_of[twp]):
        members = CITY_TOWNSHIPS[county_of[CITY_TOWNSHIPS] == code]
        sel = same_county & (county_of[twp] == code)
        if len(members) > 1 and sel.any():
            out[sel] = rng.choice(members, int(sel.sum()))
    clash = out == twp
    while clash.any():
        out[clash] = rng.choice(CITY_TOWNSHIPS, int(clash.sum()), p=city_w)
        clash = out == twp
    return out


def _addresses(rng: np.random.Generator, twp: np.ndarray, key: np.ndarray) -> pl.Series:
    """A full address (province to room) in each township; equal keys get equal addresses."""
    n = len(twp)
    num = rng.integers(1, 400, n)
    bld = rng.integers(1, 30, n)
    unit = rng.integers(1, 4, n)
    room = rng.integers(1, 25, n) * 100 + rng.integers(1, 5, n)
    kind = rng.random(n)
    road_k = rng.integers(0, 10_000, n)
    vill_a = rng.integers(0, len(pl_.VILLAGE_FIRST), n)
    vill_b = rng.integers(0, len(pl_.VILLAGE_SECOND), n)
    comp = rng.integers(0, len(pl_.RESIDENTIAL_COMPOUNDS), n)
    group = rng.integers(1, 12, n)
    # each street owns a slice of four of its county's roads
    roads = [
        pl_.CITY_ROADS[t.county.code][(t.index * 3 + k) % len(pl_.CITY_ROADS[t.county.code])]
        if t.county.in_city else ""
        for t in TOWNSHIPS for k in range(4)
    ]
    village = np.array([t.is_town or not t.county.in_city for t in TOWNSHIPS])[twp]
    in_city = np.array([t.county.in_city for t in TOWNSHIPS])[twp]
    lf, ls = len(pl_.VILLAGE_FIRST), len(pl_.VILLAGE_SECOND)

    def g(values: list[str], idx: np.ndarray) -> pl.Series:
        return pl.Series(values, dtype=pl.String).gather(pl.Series(idx.astype(np.int64)))

    df = pl.DataFrame({
        "prefix": g([t.county.prefix + t.name for t in TOWNSHIPS], twp),
        # a township's villages share the township's own two-character stems
        "stem": g(list(pl_.VILLAGE_FIRST), (vill_a + twp) % lf) + g(list(pl_.VILLAGE_SECOND), (vill_b * 7 + twp) % ls),
        "road": g(roads, twp * 4 + road_k % 4),
        "compound": g(list(pl_.RESIDENTIAL_COMPOUNDS), comp),
        "num": num, "bld": bld, "unit": unit, "room": room, "group": group,
        "village": village, "in_city": in_city, "flat": kind < 0.75, "in_compound": kind < 0.4,
    })
    c = pl.col
    s = {k: c(k).cast(pl.String) for k in ("num", "bld", "unit", "room", "group")}
    expr = (
        pl.when(c("village") & c("in_city"))
        .then(pl.concat_str([c("prefix"), c("stem"), pl.lit("村"), s["num"], pl.lit("号")]))
        .when(c("village"))
        .then(pl.concat_str([c("prefix"), c("stem"), pl.lit("村"), s["group"], pl.lit("组"), s["num"], pl.lit("号")]))
        .otherwise(pl.concat_str([
            c("prefix"), c("road"), s["num"], pl.lit("号"),
            pl.when(c("flat") & c("in_compound")).then(c("compound")).otherwise(pl.lit("")),
            pl.when(c("flat")).then(pl.concat_str([s["bld"], pl.lit("幢"), s["unit"], pl.lit("单元"),
                                                   s["room"], pl.lit("室")])).otherwise(pl.lit("")),
        ]))
    )
    out = df.select(expr.alias("address")).to_series()
    # equal keys share the address of the key's first row
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return out.gather(pl.Series(first[inv].astype(np.int64)))


def _names(rng: np.random.Generator, hh: np.ndarray, rel: np.ndarray, male: np.ndarray,
           birth: np.ndarray, uyghur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(hh)
    sn = np.array([s for s, _ in nd.SURNAME_WEIGHTS])
    sw = np.array([w for _, w in nd.SURNAME_WEIGHTS], dtype=float)
    surname = sn[rng.choice(len(sn), n, p=sw / sw.sum())].astype(object)
    # The family surname is the husband's (the head's if single); children take it
    # (9 in 10), the head's father shares the head's surname.
    first = np.r_[0, np.flatnonzero(np.diff(hh)) + 1]
    head_idx = first[np.searchsorted(first, np.arange(n), side="right") - 1]
    spouse_idx = np.full(int(hh.max()) + 1, -1)
    sp = np.flatnonzero(rel == REL_SPOUSE)
    spouse_idx[hh[sp]] = sp
    hh_head = head_idx[first]
    fam = np.where(male[hh_head] | (spouse_idx < 0), hh_head, np.maximum(spouse_idx, 0))
    fam_surname = surname[fam][hh]
    child = (rel == REL_CHILD) & (rng.random(n) < 0.9)
    surname[child] = fam_surname[child]
    head_father = (rel == REL_PARENT) & male
    surname[head_father] = surname[head_idx][head_father]

    # Given names: one or two characters; older women often carry a generation's names.
    byear = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    mc = np.array(list(nd.MALE_CHARS))
    fc = np.array(list(nd.FEMALE_CHARS))
    c1 = np.where(male, mc[rng.integers(0, len(mc), n)], fc[rng.integers(0, len(fc), n)])
    c2 = np.where(male, mc[rng.integers(0, len(mc), n)], fc[rng.integers(0, len(fc), n)])
    single = rng.random(n) < np.where(byear < 1960, 0.15, np.where(byear < 1990, 0.3, 0.2))
    given = np.where(single | (c1 == c2), c1, np.char.add(c1, c2)).astype(object)
    old = (byear < 1962) & (rng.random(n) < 0.5)
    og_f = np.array(nd.OLD_FEMALE_GIVEN)[rng.integers(0, len(nd.OLD_FEMALE_GIVEN), n)]
    og_m = np.array(nd.OLD_MALE_GIVEN)[rng.integers(0, len(nd.OLD_MALE_GIVEN), n)]
    given[old & ~male] = og_f[old & ~male]
    old_m = old & male & (rng.random(n) < 0.5)
    given[old_m] = og_m[old_m]
    # The most common full names (张伟, 王芳 …): strangers sharing a name.
    pop = rng.random(n) < 0.12
    for s, entries in nd.POPULAR_NAMES.items():
        for sex_male in (True, False):
            choices = [g for g, sx in entries if (sx == "M") == sex_male]
            sel = np.flatnonzero(pop & (surname == s) & (male == sex_male))
            if len(sel) and choices:
                given[sel] = np.array(choices, dtype=object)[rng.integers(0, len(choices), len(sel))]
    # Namesakes of one age: strangers (heads or spouses of different households) of the
    # same sex and birth year who carry the same common full name.
    cand = np.flatnonzero(np.isin(surname, list(nd.POPULAR_NAMES)) & np.isin(rel, (REL_HEAD, REL_SPOUSE)))
    groups = (
        pl.DataFrame({"i": cand, "s": surname[cand].astype(str), "m": male[cand], "y": byear[cand],
                      "r": rng.random(len(cand))})
        .sort("r")
        .group_by("s", "m", "y", maintain_order=True)
        .agg(pl.col("i").head(2))
        .filter(pl.col("i").list.len() == 2)
        .head(max(2, n // 1000))
    )
    for s, m, pair in groups.select("s", "m", "i").iter_rows():
        choices = [g for g, sx in nd.POPULAR_NAMES[s] if (sx == "M") == m]
        given[pair] = choices[int(rng.integers(len(choices)))]
    # Siblings never share a given name.
    key = np.char.add(hh.astype(str), given.astype(str))
    _, first_k, counts = np.unique(key, return_index=True, return_counts=True)
    dup = np.ones(n, dtype=bool)
    dup[first_k] = False
    given[dup] = np.char.add(given[dup].astype(str), mc[rng.integers(0, len(mc), int(dup.sum()))])
    # Uyghur names
    um = np.array(nd.UYGHUR_MALE)[rng.integers(0, len(nd.UYGHUR_MALE), n)]
    uf = np.array(nd.UYGHUR_FEMALE)[rng.integers(0, len(nd.UYGHUR_FEMALE), n)]
    given[uyghur] = np.where(male, um, uf)[uyghur]
    return surname, given


def _uyghur_fathers(rng: np.random.Generator, hh: np.ndarray, rel: np.ndarray, male: np.ndarray,
                    given: np.ndarray) -> np.ndarray:
    n = len(hh)
    out = np.array(nd.UYGHUR_MALE, dtype=object)[rng.integers(0, len(nd.UYGHUR_MALE), n)]
    first = np.r_[0, np.flatnonzero(np.diff(hh)) + 1]
    head_idx = first[np.searchsorted(first, np.arange(n), side="right") - 1]
    # children of a male head carry his name as their second part
    kids = (rel == REL_CHILD) & male[head_idx]
    out[kids] = given[head_idx][kids]
    # nobody is named after himself: take the next name on the list
    same = out == given
    nxt = {a: b for a, b in zip(nd.UYGHUR_MALE, (*nd.UYGHUR_MALE[1:], nd.UYGHUR_MALE[0]), strict=True)}
    out[same] = [nxt.get(x, nd.UYGHUR_MALE[0]) for x in out[same]]
    return out


def _id_numbers(region: np.ndarray, birth: np.ndarray, male: np.ndarray) -> pl.Series:
    ymd = pl.Series(birth.astype("datetime64[D]")).cast(pl.Date).dt.strftime("%Y%m%d").cast(pl.Int64).to_numpy()
    reg = region.astype(np.int64)
    # Sequence numbers are unique within (region, birth date, sex): rank inside the group,
    # shifted by a per-group offset so numbers do not all start at 000.
    key_df = pl.DataFrame({"reg": reg, "ymd": ymd, "male": male})
    rank = key_df.select(pl.int_range(pl.len()).over(["reg", "ymd", "male"])).to_series().to_numpy()
    if rank.max(initial=0) >= 500:
        raise ValueError("more than 500 people of one sex born on one day in one county")
    offset = (reg * 7919 + ymd * 104729) % 500
    k = (offset + rank) % 500
    seq = k * 2 + male.astype(np.int64)
    first17 = reg * 10**11 + ymd * 10**3 + seq
    cc = check_char(first17)
    return pl.Series(first17).cast(pl.String) + pl.Series(cc)


def _phones(rng: np.random.Generator, age: np.ndarray) -> pl.Series:
    n = len(age)
    pre = np.array(nd.MOBILE_PREFIXES)[rng.integers(0, len(nd.MOBILE_PREFIXES), n)]
    tail = pl.Series(rng.integers(0, 10**8, n)).cast(pl.String).str.zfill(8)
    phone = pl.Series(pre) + tail
    has = (age >= 16) & ~((age >= 80) & (rng.random(n) < 0.5))
    return pl.select(pl.when(pl.Series(has)).then(phone)).to_series().alias("phone")
