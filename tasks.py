#!/usr/bin/env python3
"""renhu's one task runner. Needs only Python 3.11 and pip on the machine.

    python3 tasks.py demo [renhu demo options]   set up .venv from the lock file, then run `renhu demo`
    python3 tasks.py test [pytest options]       set up .venv, then run the whole test suite
    python3 tasks.py lint                        ruff over the project
    python3 tasks.py bench NAME [options]        run benchmarks/bench_NAME.py
    python3 tasks.py lock                        rewrite requirements.lock from the current .venv

Set-up is skipped when .venv already holds exactly what requirements.lock names
(a stamp file records the lock file's hash).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".renhu-lock-sha256"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*command: str | Path, **kwargs) -> int:
    return subprocess.call([str(c) for c in command], cwd=ROOT, **kwargs)


def _lock_hash() -> str:
    digest = hashlib.sha256(LOCK.read_bytes())
    digest.update((ROOT / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def setup() -> None:
    if STAMP.is_file() and STAMP.read_text().strip() == _lock_hash() and (BIN / "renhu").exists():
        return
    if not (BIN / "python").exists():
        print("tasks: creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("tasks: installing the locked dependencies into .venv (first time: about a minute) …", flush=True)
    pip = [BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if _run(*pip, "-r", LOCK) != 0:
        sys.exit("tasks: installing requirements.lock failed")
    if _run(*pip, "--no-deps", "-e", ".") != 0:
        sys.exit("tasks: installing renhu itself failed")
    STAMP.write_text(_lock_hash())


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "lock":
        frozen = subprocess.run(
            [str(BIN / "python"), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
            capture_output=True, text=True, check=True,
        ).stdout
        header = "# Exact versions renhu is tested with. Rewrite with: python3 tasks.py lock\n"
        LOCK.write_text(header + "".join(line + "\n" for line in frozen.splitlines() if not line.startswith("-e ")))
        return 0
    setup()
    if command == "demo":
        return _run(BIN / "renhu", "demo", *rest)
    if command == "test":
        # pytest exits 5 when it collected nothing: that is a failure here, as any non-zero is.
        return _run(BIN / "python", "-m", "pytest", *rest)
    if command == "lint":
        return _run(BIN / "ruff", "check", ".")
    if command == "bench":
        if not rest:
            sys.exit("tasks: bench needs a name, e.g. `python3 tasks.py bench city --records 100000`")
        return _run(BIN / "python", ROOT / "benchmarks" / f"bench_{rest[0]}.py", *rest[1:])
    sys.exit(f"tasks: unknown command {command!r}; see `python3 tasks.py --help`")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
