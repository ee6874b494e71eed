"""A synthetic city of department extracts, with its answer key (`renhu demo`).

`generate_city(out_dir, persons, seed)` makes 浙江省绍兴市 (330600) with its six
districts and counties and their real townships: households of locals, a floating
population (~20% of residents) whose hukou is in other provinces, locals living in a
township other than their hukou's (~8%), twins, namesakes, minority names; then writes
what seven departments would extract about them, each with its own headers, file
format, encoding, coverage and errors:

* ``police_hukou`` (公安局户政科, hukou): CSV in GB18030 with CRLF, Chinese headers; the
  household register of locals (~98%), 户号, 与户主关系, address and 9-digit township code.
* ``residence_registration`` (公安局流动人口管理大队, residence): XLSX with Excel date cells
  (some dates typed as text or 8-digit numbers), pinyin-initial headers (xm, gmsfhm, csrq …);
  ~78% of floating adults and ~45% of locals living away from their hukou township. Over a
  million rows it is split over workbooks named by a glob.
* ``health_family_planning`` (卫生健康委员会, generic): CSV UTF-8 with a byte-order mark;
  mixed date formats, 15-digit ids, traditional characters, phones as people write them,
  township names of before 撤镇设街道 in some addresses.
* ``social_insurance`` (人力资源和社会保障局, generic): Parquet; name in two columns
  (``name: [xing, ming]``), some romanized by an agent (ZHANG / WEI, Wei / Zhang), employer.
* ``civil_affairs_roster`` (民政局, roster): JSON lines with the bureau's own household
  numbers (MZ330602-000017), a few lines cut short, roster conflicts with the register.
* ``schools`` (教育局, generic): CSV in GBK; pupils 6-17 with the guardian's phone, a few
  enrolled under a parent's id number or without an id.
* ``rental_housing`` (住房和城乡建设局, rental): CSV UTF-8; houses and adult tenants, many of
  them floating people without a residence registration.

Output: ``sources.yaml`` (the contract's format), ``extracts/…``, and the answer key in
``truth/``:

* ``records.parquet`` — one row per data row of every extract file (damaged rows
  included): ``source, file, row_number, record_id, true_person_id, expected_outcome``
  (``accepted`` | ``quarantined``), ``expected_reason_code`` (DESIGN.md §6, null when
  accepted), ``hard_cases`` (list of tags: noisy_id, id15, traditional_name,
  homophone_name, typo_name, romanized_name, twin, shared_parent_id, missing_id,
  date_format, duplicate_in_source, popular_name).
  ``date_format`` marks a birth date written other than the source's usual way (health
  and schools: anything but YYYY-MM-DD; residence registration: text or a number where
  a date cell belongs). ``popular_name`` marks every row of a person whose true name is
  one of the country's most common full names; ``twin`` every row of a twin.
  ``duplicate_in_source`` marks every row of a person the source holds more than once
  under different record ids (重复登记, including a second household in the register).
  A superseded row (same record id, older ``updated_at``) is quarantined with
  ``superseded_duplicate_record_id``; its fresher twin is accepted.
* ``persons.parquet`` — one row per true person (with, beyond the key columns, the
  true hukou and residence addresses and mobile phone).
* ``findings.parquet`` — ``kind, true_person_id, detail``: one row per (kind, person).

Findings are computed from the accepted rows of the extracts as written (a person the
register misses has no registered household, whatever their true hukou):

multi_household
    the person has accepted rows in two or more households (户号) of the household
    register (kind ``hukou``).
two_heads
    every person recorded as head (户主) of a register household that has two or more
    heads.
no_head
    every member of a register household none of whose accepted rows is the head.
child_older_than_parent
    a register member recorded as the head's child (子/女/长子 …) born on or before a
    head of that household, or recorded as the head's parent born on or after it.
spouse_under_legal_age
    a register member recorded as the head's spouse (妻/夫/配偶) younger, on the extract
    date 2026-11-20, than the legal marriage age (22 for men, 20 for women).
roster_conflict
    for each household of a roster (kind ``roster``), the register household holding
    most of its members (ties: the smaller 户号) is its counterpart; then every roster
    member not in the counterpart, every counterpart member not on the roster, and the
    roster's head when the counterpart's head is someone else. Roster households none of
    whose members is in the register are not compared.
hukou_residence_split (人户分离, within the city)
    a person with a household in the register, who is placed by an accepted row of a
    residence, rental or generic source (residence registration, rental, school, health
    record address, social-insurance address) in a township (9-digit code) that is none
    of the townships of their register households. Floating people (hukou outside the
    city) are not in the register and are not counted here: they are the
    floating-registration figures. Detail: both townships and since when (earliest
    registration/move-in/enrolment date of that evidence), where known.
unregistered_resident
    a person placed by an accepted rental or school row at a township that is not a
    township of their register household(s), and who has no accepted residence
    registration row at all.

Generation is vectorised (numpy/polars; Python loops run over small tables and the few
percent of rows that carry an error) and deterministic for a seed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from linkage.demo_city import sources, truth, writers
from linkage.demo_city.people import generate_people

__all__ = ["DemoCity", "generate_city"]


@dataclass(frozen=True)
class DemoCity:
    out_dir: Path
    sources_file: Path
    truth_dir: Path
    extract_files: list[Path]
    persons: int
    records: int
    # data rows per source, damaged rows included
    records_by_source: dict[str, int] = field(default_factory=dict)
    findings_by_kind: dict[str, int] = field(default_factory=dict)
    # wall-clock seconds per step: people, each source (built and written), truth
    seconds_by_step: dict[str, float] = field(default_factory=dict)


def generate_city(out_dir: Path, persons: int, seed: int = 20261123) -> DemoCity:
    """Write a synthetic city's department extracts, `sources.yaml` and `truth/` into out_dir.

    Existing `extracts/` and `truth/` folders in out_dir are replaced.
    """
    if persons < 50:
        raise ValueError("a demo city needs at least 50 persons")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("extracts", "truth"):
        if (out_dir / sub).exists():
            shutil.rmtree(out_dir / sub)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir()
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    rng = np.random.default_rng(seed)
    people = generate_people(rng, persons)
    ctx = sources.Ctx.build(rng, people)
    lap("people")

    extracts: list[sources.Extract] = []
    files: list[Path] = []
    record_frames: list[pl.DataFrame] = []
    for build in sources.BUILDERS:
        ex = build(ctx)
        files.extend(writers.write_extract(ex, out_dir, rng))
        record_frames.append(truth.records(ex))
        # the cells are on disk; keep only what the findings need
        ex.cells = ex.cells.clear()
        extracts.append(ex)
        lap(ex.name)
    writers.write_sources_yaml(extracts, out_dir / "sources.yaml")

    recs = pl.concat(record_frames)
    recs.write_parquet(truth_dir / "records.parquet")
    truth.persons(people).write_parquet(truth_dir / "persons.parquet")
    found = truth.findings(extracts, people)
    found.write_parquet(truth_dir / "findings.parquet")
    lap("truth")
    return DemoCity(
        out_dir=out_dir,
        sources_file=out_dir / "sources.yaml",
        truth_dir=truth_dir,
        extract_files=files,
        persons=people.height,
        records=recs.height,
        records_by_source={ex.name: ex.rows.height for ex in extracts},
        findings_by_kind=dict(found.group_by("kind").len().sort("kind").iter_rows()),
        seconds_by_step=seconds,
    )
