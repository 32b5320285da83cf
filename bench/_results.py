"""Shared by the benchmarks: write one section of bench/RESULTS.md without touching the others."""

import platform
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is rewritten by the script it names; numbers are measured, never typed in.\n"


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    gpu = ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            gpu = ", GPU: " + "; ".join(out.stdout.strip().splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}, Python {platform.python_version()}"


def run_as() -> list[str]:
    """How this benchmark was started, as a command that runs from the repository's root: `-m bench.NAME`
    (the benchmarks import the project, so the script's path alone fails outside it)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None and spec.name:
        return ["-m", spec.name]
    script = Path(sys.argv[0]).resolve()
    try:
        return [script.relative_to(RESULTS.parents[1]).as_posix()]
    except ValueError:
        return [script.as_posix()]


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of RESULTS.md with `body`, stamped with command and machine."""
    command = shlex.join(["python", *run_as(), *sys.argv[1:]])  # quoted: it runs as written
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- section:{name} -->\n## {name}\n\n"
               f"Command: `{command}`  \nMachine: {machine()}  \nMeasured: {stamp}\n\n"
               f"{body.strip()}\n<!-- end:{name} -->\n")
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(rf"<!-- section:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)


def trainable_seconds(study: Path) -> float:
    """Seconds a study's trials spent inside their trainables (Tune's time_total_s of each trial's last result:
    a paused trial's wait and a trial's start and end are not in it)."""
    import pandas as pd

    busy = 0.0
    for progress in Path(study).glob("tune/study/trial_*/progress.csv"):
        frame = pd.read_csv(progress)
        if "time_total_s" in frame:
            busy += float(frame["time_total_s"].max())
    return busy
