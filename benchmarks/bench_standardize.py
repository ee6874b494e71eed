"""Benchmark of the standardize stage alone: rows per second and peak memory.

    .venv/bin/python benchmarks/bench_standardize.py --rows 1000000

1. A child process builds N synthetic raw_records rows (a city's variety: many distinct
   names, ids, phones and addresses; simplified, traditional and romanized names,
   placeholders, 15- and 18-digit ids with some wrong check characters, passports,
   eight date formats, addresses with and without province/city/county prefix, Chinese
   numerals, township codes on some rows only) and writes them to a parquet file, so
   that building the data does not count in this process's peak memory.
2. This process reads the parquet, runs `standardize_records` and
   `standardization_metrics`, and prints the seconds, rows per second and the peak
   resident memory of the process (resource.getrusage ru_maxrss), plus the number of
   distinct names and addresses that the Python parts had to visit.

No synthetic id is a real person's: ids are built from random digits with their check
character computed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤单解仇区查盖朴乐")
COMPOUND = ["欧阳", "司马", "诸葛", "上官", "尉迟", "万俟", "长孙", "慕容", "东方", "夏侯"]
GIVEN_CHARS = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉斌宇浩凯健俊帆帅"
    "旭宁龙林欣然佳怡梓涵子轩一诺浩然雨欣紫萱思远博文天佑嘉怡晨阳梦琪欣怡若曦宇航子墨俊熙雅婷志"
    "国建新春海波东晓丹云飞雪梅兵亮成峰立红光荣德义忠孝礼智信仁和安福寿康宁瑞祥庆喜乐美丽婉婷颖"
)
TRAD = {"张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳", "郑": "鄭", "伟": "偉",
        "华": "華", "国": "國", "丽": "麗", "龙": "龍", "凯": "凱", "辉": "輝"}
COUNTIES = [("330602", "越城区"), ("330603", "柯桥区"), ("330604", "上虞区"), ("330624", "新昌县"),
            ("330681", "诸暨市"), ("330683", "嵊州市")]
TOWNSHIP_SUFFIX = ["街道", "镇", "乡"]
TOWNSHIP_STEMS = list("城南城北东湖府山塔山北海灵芝马山孙端陶堰富盛稽山鉴湖皋埠东浦斗门袍江")
HAN_NUM = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二", "十三", "二十", "二十五"]


def build(rows: int, path: Path, seed: int = 20261123) -> None:
    rng = np.random.default_rng(seed)
    persons = max(1, int(rows / 1.7))
    person = rng.integers(0, persons, rows)

    # --- people (one draw per person, then looked up per record) ---
    p_surname = rng.integers(0, len(SURNAMES), persons)
    p_compound = rng.random(persons) < 0.01
    p_given_len = rng.choice([1, 2], persons, p=[0.3, 0.7])
    p_g1 = rng.integers(0, len(GIVEN_CHARS), persons)
    p_g2 = rng.integers(0, len(GIVEN_CHARS), persons)
    names = []
    for i in range(persons):
        s = COMPOUND[p_surname[i] % len(COMPOUND)] if p_compound[i] else SURNAMES[p_surname[i]]
        g = GIVEN_CHARS[p_g1[i]] + (GIVEN_CHARS[p_g2[i]] if p_given_len[i] == 2 else "")
        names.append(s + g)
    names_arr = np.array(names, dtype=object)
    birth_days = rng.integers(0, 36500, persons)  # 1925 .. 2024
    birth = np.datetime64("1925-01-01") + birth_days
    birth_str = np.datetime_as_string(birth, unit="D")
    county_idx = rng.integers(0, len(COUNTIES), persons)
    township_idx = rng.integers(0, 40, persons)
    village_idx = rng.integers(0, 60, persons)
    house_no = rng.integers(1, 400, persons)
    seq = rng.integers(0, 100, persons)
    sex_digit = rng.integers(0, 10, persons)
    phone_tail = rng.integers(0, 10**8, persons)

    # ids: region + birth + sequence + sex digit + check character, vectorised
    region = np.array([COUNTIES[c][0] for c in county_idx], dtype=object)
    ymd = np.char.replace(birth_str.astype(str), "-", "")
    first17 = (region.astype(str).astype(object) + ymd.astype(object)
               + np.char.zfill(seq.astype(str), 2).astype(object) + sex_digit.astype(str).astype(object))
    digits = np.array([[ord(c) - 48 for c in s] for s in first17], dtype=np.int64)
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.array(list("10X98765432"))[(digits @ weights) % 11]
    ids = first17 + check.astype(object)

    # --- records: each a view of its person, written the way its department writes it ---
    r_name = names_arr[person].copy()
    u = rng.random(rows)
    trad = u < 0.05
    r_name[trad] = ["".join(TRAD.get(c, c) for c in n) for n in r_name[trad]]
    from pypinyin import lazy_pinyin

    roman = (u >= 0.05) & (u < 0.07)
    r_name[roman] = [" ".join(lazy_pinyin(n)).upper() for n in r_name[roman]]
    r_name[(u >= 0.07) & (u < 0.075)] = "无"
    spaced = (u >= 0.075) & (u < 0.09)
    r_name[spaced] = [n[0] + " " + n[1:] for n in r_name[spaced]]

    r_id = ids[person].copy()
    v = rng.random(rows)
    fifteen = v < 0.03
    r_id[fifteen] = [s[:6] + s[8:17] for s in r_id[fifteen]]
    wrong = (v >= 0.03) & (v < 0.05)
    r_id[wrong] = [s[:17] + ("0" if s[17] != "0" else "1") for s in r_id[wrong]]
    r_id[(v >= 0.05) & (v < 0.06)] = [f"E{n:08d}" for n in rng.integers(0, 10**8, int(((v >= 0.05) & (v < 0.06)).sum()))]
    spaced_id = (v >= 0.06) & (v < 0.08)
    r_id[spaced_id] = [f"{s[:6]} {s[6:14]} {s[14:].lower()}" for s in r_id[spaced_id]]
    r_id[(v >= 0.08) & (v < 0.10)] = None

    b = birth_str[person]
    fmt = rng.integers(0, 8, rows)
    bd = b.astype(object).copy()
    y, m, d = (np.char.ljust(b.astype(str), 10).astype(str), None, None)
    parts = [s.split("-") for s in b]
    for k, style in enumerate(fmt):
        yy, mm, dd = parts[k]
        if style == 1:
            bd[k] = f"{yy}/{int(mm)}/{int(dd)}"
        elif style == 2:
            bd[k] = yy + mm + dd
        elif style == 3:
            bd[k] = f"{yy}.{mm}.{dd}"
        elif style == 4:
            bd[k] = f"{yy}年{int(mm)}月{int(dd)}日"
        elif style == 5:
            bd[k] = str((date(int(yy), int(mm), int(dd)) - date(1899, 12, 30)).days)
        elif style == 6:
            bd[k] = f"{yy}-{mm}-{dd}T00:00:00"
    bad = rng.random(rows) < 0.002
    bd[bad] = "1990年2月30日"
    del y, m, d

    county = county_idx[person]
    tws = township_idx[person]
    addr = []
    prefix_style = rng.integers(0, 3, rows)
    numeral = rng.random(rows) < 0.3
    for k in range(rows):
        c = county[k]
        tname = TOWNSHIP_STEMS[tws[k] % len(TOWNSHIP_STEMS)] + TOWNSHIP_STEMS[(tws[k] * 7) % len(TOWNSHIP_STEMS)] + TOWNSHIP_SUFFIX[tws[k] % 3]
        hn = house_no[person[k]]
        no = HAN_NUM[hn % len(HAN_NUM)] if numeral[k] else str(hn)
        body = f"{tname}第{village_idx[person[k]]}村{no}号"
        ps = prefix_style[k]
        prefix = ("浙江省绍兴市" + COUNTIES[c][1]) if ps == 0 else (COUNTIES[c][1] if ps == 1 else "")
        addr.append(prefix + body)
    has_code = rng.random(rows) < 0.4
    township_code = np.array([f"{COUNTIES[county[k]][0]}{(tws[k] % 40) + 1:03d}" for k in range(rows)], dtype=object)
    hukou_region = np.where(has_code, township_code, None)

    sexes = np.where(sex_digit[person] % 2 == 1, "男", "女").astype(object)
    sex_style = rng.random(rows)
    sexes[sex_style < 0.3] = np.where(sex_digit[person][sex_style < 0.3] % 2 == 1, "1", "2")
    sexes[(sex_style >= 0.3) & (sex_style < 0.4)] = np.where(sex_digit[person][(sex_style >= 0.3) & (sex_style < 0.4)] % 2 == 1, "M", "F")

    phone = np.char.add("13", np.char.zfill(phone_tail[person].astype(str), 9)).astype(object)
    ph = rng.random(rows)
    phone[ph < 0.2] = ["+86 " + p[:3] + "-" + p[3:7] + "-" + p[7:] for p in phone[ph < 0.2]]
    phone[(ph >= 0.2) & (ph < 0.3)] = None

    sources = np.array(["police_hukou", "residence", "health", "social_insurance", "civil_roster", "school", "rental"])
    src = sources[rng.integers(0, len(sources), rows)]
    columns = {
            "record_key": np.arange(1, rows + 1, dtype=np.int64),
            "source": src,
            "department": src,
            "source_kind": np.where(src == "police_hukou", "hukou", "generic"),
            "file": np.char.add(src.astype(str), ".csv"),
            "row_number": np.arange(1, rows + 1, dtype=np.int32),
            "file_sha256": ["0" * 64] * rows,
            "load_batch": ["bench"] * rows,
            "record_id": np.arange(1, rows + 1).astype(str),
            "name": r_name,
            "id_number": r_id,
            "sex": sexes,
            "birth_date": bd,
            "ethnicity": np.where(rng.random(rows) < 0.9, "汉", "回族").astype(object),
            "phone": phone,
            "hukou_address": addr,
            "hukou_region": hukou_region,
            "residence_address": np.where(rng.random(rows) < 0.5, np.array(addr, dtype=object), None),
            "residence_region": [None] * rows,
            "household_id": np.char.zfill(person.astype(str), 9),
            "relation_to_head": np.where(rng.random(rows) < 0.4, "户主", "子").astype(object),
            "house_id": [None] * rows,
            "employer": [None] * rows,
            "registered_at": np.where(rng.random(rows) < 0.5, "2015-06-01", None).astype(object),
            "updated_at": [None] * rows,
    }
    # numpy object arrays → Python lists: polars reads those as strings with nulls.
    frame = pl.DataFrame(
        {k: (v.tolist() if isinstance(v, np.ndarray) and v.dtype != np.int64 and v.dtype != np.int32 else v) for k, v in columns.items()},
        schema_overrides={k: pl.String for k in columns if k not in ("record_key", "row_number")},
    )
    frame.write_parquet(path)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="parquet of raw rows to reuse (built there first if missing)")
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.rows, args.build_only)
        return 0

    from linkage.standardize import standardization_metrics, standardize_records

    with tempfile.TemporaryDirectory() as tmp:
        path = args.data or Path(tmp) / "raw_records.parquet"
        t0 = time.perf_counter()
        if not path.exists():
            subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--build-only", str(path)], check=True)
        build_s = time.perf_counter() - t0
        raw = pl.read_parquet(path)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    std = standardize_records(raw, as_of=date(2026, 11, 23))
    std_s, std_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    t0 = time.perf_counter()
    metrics = standardization_metrics(std)
    metrics_s = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    distinct_names = raw.get_column("name").n_unique()
    distinct_addresses = pl.concat([raw["hukou_address"], raw["residence_address"]]).n_unique()
    print(f"rows                     {raw.height:>12,}")
    print(f"distinct names           {distinct_names:>12,}")
    print(f"distinct addresses       {distinct_addresses:>12,}")
    print(f"build data (child)       {build_s:>12.1f} s")
    print(f"standardize_records      {std_s:>12.2f} s   {raw.height / std_s:>12,.0f} rows/s")
    # CPU seconds (user + system, all threads) tell the cost even when other work shares the machine.
    print(f"  cpu time (user+sys)    {std_cpu:>12.2f} s   {raw.height / std_cpu:>12,.0f} rows per cpu-second")
    print(f"standardization_metrics  {metrics_s:>12.2f} s")
    print(f"load average (1 min)     {os.getloadavg()[0]:>12.2f}")
    print(f"peak RSS (this process)  {peak_mib:>12,.0f} MiB   (read parquet + standardize + metrics)")
    print(f"cpu cores                {os.cpu_count():>12}")
    flagged = metrics.group_by("field").agg(pl.col("flagged_invalid").sum()).sort("field")
    print("flagged_invalid by field: " + ", ".join(f"{f}={n}" for f, n in flagged.rows()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
