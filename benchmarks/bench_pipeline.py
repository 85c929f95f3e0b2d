"""Pipeline benchmark: the Glue job against a straightforward Spark job of its rules (the floor),
the least Spark must do, pandas and a pyarrow count.

Per input (generated histories of several sizes, plus the real file when present), side by side
in the same run, each measurement in a fresh subprocess, median of N runs:

- ``spark`` (ours): ``glue_jobs.pipeline.run`` in Spark local mode on the local path (the run
  recorded and published in a throwaway database, the outputs in a throwaway folder); the time of
  each phase of the transform as the job returns it, and Spark's own account of the jobs of each
  phase (their wall time and executor CPU) from its event log;
- ``floor``: :mod:`benchmarks.spark_floor`, a straightforward Spark job of the same rules in the
  same session (the aim: ours no slower, wall and CPU);
- ``copy``: :mod:`benchmarks.spark_copy`, the same session reading every row, computing the
  country key, writing every row once partitioned by country and counting what it wrote;
- ``one_pass``: :mod:`benchmarks.one_pass`, the job's transforms with both outputs written as one
  dataset in one classification pass (what the single pass would save);
- ``pandas``: :mod:`benchmarks.pandas_baseline` reads the whole file, cleans and groups in memory;
- ``arrow``: pyarrow reads the same file and counts rows per country;
- ``before`` (with ``--before REF``): ours as it was at a git ref, from a worktree of it, in the
  same rounds: the before/after of a change on the same machine in one run;
- the builds of ``WITHOUT`` (asked for by name, ``make bench-guarantees``): ours, or the one
  pass, with guarantees switched off (:mod:`benchmarks.guarantees`): what each promise costs.

Each Spark engine's run also reports the Spark jobs, stages and tasks it started and the pieces of
generated code Spark compiled for it: the fixed work a cold JVM pays whatever the rows.

Wall time (inside the worker, and the whole process from spawn to exit), the CPU time of the
process tree (user + system of the worker and its descendants, Spark's JVM included, from
``/proc/<pid>/stat``), rows/s and the peak RSS of the process tree (``/proc/<pid>/status`` VmRSS,
both sampled every 0.1 s) go to ``reports/bench_pipeline.{json,md,png}``; ``--write`` updates
the Pipeline section of docs/benchmarks.md.

    make bench-pipeline                       # BENCH_SIZES=2000 BENCH_RUNS=1 for a tiny one
    python -m benchmarks.bench_pipeline --sizes 300000,1000000 --runs 3 --no-real
    python -m benchmarks.bench_pipeline --before 069131e --sizes 1000000,10000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import machine, throwaway_database, write_section
from infra.local.settings import REAL_FILE, REPO_ROOT, from_env

SECTION = "## Pipeline"
#: Benchmark-only builds of ours (:mod:`benchmarks.guarantees`), run when asked for: engine ->
#: (the engine it is built from, the guarantees switched off).
WITHOUT = {
    "without_strict_text": ("spark", ("strict_text",)),
    "without_unicode_key": ("spark", ("unicode_key",)),
    "lean": ("one_pass", ("strict_text", "unicode_key")),
}
ENGINES = ("spark", "floor", "copy", "one_pass", "pandas", "arrow")
LABELS = {
    "spark": "ours",
    "before": "ours before",
    "floor": "floor",
    "copy": "Spark copy",
    "one_pass": "one pass",
    "pandas": "pandas",
    "arrow": "pyarrow count",
    "without_strict_text": "ours without strict text",
    "without_unicode_key": "ours without Unicode key trim",
    "lean": "lean (one pass, both text guarantees off)",
}
DEFAULT_SIZES = "1000000,10000000,30000000"
#: pandas holds the whole file in memory (6 GB at 10M rows): beyond this it is left out.
PANDAS_MAX_ROWS = 10_000_000
SEED = 7
#: 1-minute load averages sampled every second while workers run.
LOAD_SAMPLES: list[float] = []


# --- workers: one measurement each, in a fresh interpreter --------------------------------------


def _session(event_log: str):
    """A local session as the job's (class archive, configuration), logging Spark's events."""
    os.environ["PYSPARK_SUBMIT_ARGS"] = (
        f"--conf spark.eventLog.enabled=true --conf spark.eventLog.dir=file://{event_log}"
        " pyspark-shell"
    )
    from glue_jobs import session

    os.environ.setdefault("SPARK_CLASS_ARCHIVE", str(from_env().spark_class_archive))  # as runs do
    spark = session.local()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_jobs(event_log: str) -> dict[str, dict[str, float]]:
    """Per job group (the job's phases label theirs ``voucher:<phase>``): Spark jobs, their wall
    time, and the executor run and CPU time of their tasks, from Spark's event log."""
    groups: dict[str, dict[str, float]] = {}
    job_group, stage_group, started = {}, {}, {}
    for file in Path(event_log).iterdir():
        if file.name.startswith("."):  # the local filesystem's checksum files
            continue
        for line in filter(None, file.read_text().split("\n")):  # not splitlines: U+2028 is text
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                group = (event.get("Properties") or {}).get("spark.jobGroup.id") or "other"
                group = group.removeprefix("voucher:")
                job_group[event["Job ID"]] = group
                started[event["Job ID"]] = event["Submission Time"]
                stage_group.update(dict.fromkeys(event["Stage IDs"], group))
                entry = groups.setdefault(
                    group, {"jobs": 0, "wall_s": 0.0, "run_s": 0.0, "cpu_s": 0.0}
                )
                entry["jobs"] += 1
            elif kind == "SparkListenerJobEnd":
                group = job_group[event["Job ID"]]
                wall = event["Completion Time"] - started[event["Job ID"]]
                groups[group]["wall_s"] += wall / 1e3
            elif kind == "SparkListenerTaskEnd" and event["Stage ID"] in stage_group:
                metrics = event.get("Task Metrics") or {}
                entry = groups[stage_group[event["Stage ID"]]]
                entry["run_s"] += metrics.get("Executor Run Time", 0) / 1e3
                entry["cpu_s"] += metrics.get("Executor CPU Time", 0) / 1e9
    return groups


def spark_work(event_log: str, spark: Any) -> dict[str, float]:
    """What a run started in Spark: its jobs, the stages that ran (not those skipped), their
    tasks (from the event log), and the pieces of generated code Spark compiled for it (whole
    stages, projections, predicates: each compile its ``CodegenMetrics`` counts) with about the
    seconds compiling took (their count times the mean of its sampled timings)."""
    counts = {"jobs": 0, "stages": 0, "tasks": 0}
    kinds = {
        "SparkListenerJobStart": "jobs",
        "SparkListenerStageCompleted": "stages",
        "SparkListenerTaskEnd": "tasks",
    }
    for file in Path(event_log).iterdir():
        if not file.name.startswith("."):
            for line in filter(None, file.read_text().split("\n")):
                kind = kinds.get(json.loads(line)["Event"])
                if kind:
                    counts[kind] += 1
    metrics = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    compiled = metrics.METRIC_COMPILATION_TIME()
    return {
        **counts,
        "compiles": compiled.getCount(),
        "compile_s": compiled.getCount() * compiled.getSnapshot().getMean() / 1e3,
    }


def _work_spark(path: str, countries: str) -> dict:
    """The job as ``make pipeline`` runs it (record the run, transform, publish to the database
    in ``DATABASE_URL``), on the local file; its phases as it returns them."""
    started = time.perf_counter()
    from chalicelib.runs import new_run_id
    from glue_jobs.pipeline import JobOptions, run

    with tempfile.TemporaryDirectory(prefix="bench-events-") as events:
        imported = time.perf_counter()
        spark = _session(events)
        session = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-lake-") as out:
            options = JobOptions(path, countries, new_run_id(), f"{out}/curated", f"{out}/rejected")
            outcome = run(spark, options)
        done = time.perf_counter()
        spark.stop()
        jobs = spark_jobs(events)
        work = spark_work(events, spark)
    transform = sum(outcome.phases.values())
    return {
        "import_s": imported - started,
        "session_s": session - imported,
        "transform_s": transform,
        "db_s": done - session - transform,  # record and publish the run (and the glue)
        "work_s": done - imported,
        "spark": work,
        "phases": {
            name: {"driver_s": seconds, **jobs.get(name, {})}
            for name, seconds in outcome.phases.items()
        },
        "countries": {
            c.country_key: {
                "rows_in": c.rows_in,
                "rows_kept": c.rows_kept,
                "rejected_by_reason": dict(c.rejected_by_reason),
            }
            for c in outcome.result.countries
        },
    }


def _without(engine: str) -> Callable[[str, str], dict]:
    """The benchmark-only build ``engine`` of ``WITHOUT``: its base engine with guarantees
    switched off (:func:`benchmarks.guarantees.switched_off`)."""
    base, guarantees = WITHOUT[engine]

    def work(path: str, countries: str) -> dict:
        started = time.perf_counter()
        from benchmarks.guarantees import switched_off

        imported = time.perf_counter() - started
        with switched_off(*guarantees):
            result = WORKERS[base](path, countries)
        return {**result, "import_s": result["import_s"] + imported}

    return work


def _in_session(started: float, run: Callable[[Any, str], dict]) -> dict:
    """``run(spark, out)``, a Spark engine of ``benchmarks`` imported since ``started``, in the
    session the job would have, writing under a throwaway ``out``: its rows per country."""
    with tempfile.TemporaryDirectory(prefix="bench-events-") as events:
        imported = time.perf_counter()
        spark = _session(events)
        session = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-out-") as out:
            rows = run(spark, f"{out}/out")
        done = time.perf_counter()
        spark.stop()
        work = spark_work(events, spark)
    return {
        "import_s": imported - started,
        "session_s": session - imported,
        "transform_s": done - session,
        "work_s": done - imported,
        "spark": work,
        "countries": rows,
    }


def _work_copy(path: str, countries: str) -> dict:
    """:func:`benchmarks.spark_copy.copy` (every country, whatever ``countries`` says)."""
    started = time.perf_counter()
    from benchmarks.spark_copy import copy

    return _in_session(
        started, lambda spark, out: {k: {"rows_in": n} for k, n in copy(spark, path, out).items()}
    )


def _work_floor(path: str, countries: str) -> dict:
    """:func:`benchmarks.spark_floor.floor`."""
    started = time.perf_counter()
    from benchmarks.spark_floor import floor

    return _in_session(started, lambda spark, out: floor(spark, path, out, countries))


def _work_one_pass(path: str, countries: str) -> dict:
    """:func:`benchmarks.one_pass.one_pass`."""
    started = time.perf_counter()
    from benchmarks.one_pass import one_pass

    return _in_session(started, lambda spark, out: one_pass(spark, path, out, countries))


def _work_pandas(path: str, countries: str) -> dict:
    started = time.perf_counter()
    from benchmarks import pandas_baseline

    imported = time.perf_counter()
    result = pandas_baseline.run(path, countries)
    done = time.perf_counter()
    return {
        "import_s": imported - started,
        "work_s": done - imported,
        "countries": result["countries"],
    }


def _work_arrow(path: str, countries: str) -> dict:
    started = time.perf_counter()
    import pyarrow.parquet as pq

    imported = time.perf_counter()
    table = pq.read_table(path)
    counts = table.group_by("country_code").aggregate([("country_code", "count")])
    done = time.perf_counter()
    return {
        "import_s": imported - started,
        "work_s": done - imported,
        "countries": {
            str(k): {"rows_in": n}
            for k, n in zip(
                counts["country_code"].to_pylist(),
                counts["country_code_count"].to_pylist(),
                strict=True,
            )
        },
    }


WORKERS = {
    "spark": _work_spark,
    "floor": _work_floor,
    "copy": _work_copy,
    "one_pass": _work_one_pass,
    "pandas": _work_pandas,
    "arrow": _work_arrow,
    **{name: _without(name) for name in WITHOUT},
}


# --- the parent: processes, memory, medians -----------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/<pid>/stat."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_rss(pid: int, cpu: dict[int, float] | None = None) -> int:
    """Resident bytes of ``pid`` and all its descendants (VmRSS of each); ``cpu`` gets each one's
    user + system seconds so far (a process's own, its children are in the tree)."""
    tree, total, todo = _children(), 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            if cpu is not None:
                fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
                cpu[current] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        except OSError:
            continue
    return total


def measure(
    engine: str, path: Path, countries: str, env: dict[str, str], trees: dict[str, Path]
) -> dict:
    """One run of ``engine`` in a fresh subprocess: its own timings, process wall, peak tree RSS.

    ``before`` is ours run from the worktree in ``trees`` (its code, this machine, this round)."""
    worker, cwd = ("spark", trees["before"]) if engine == "before" else (engine, REPO_ROOT)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_pipeline",
            "--worker",
            worker,
            "--data",
            str(path),
            "--countries",
            countries,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, ticks, cpu = 0, 0, {}
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid, cpu))
        if ticks % 10 == 0:
            LOAD_SAMPLES.append(os.getloadavg()[0])
        ticks += 1
        time.sleep(0.1)
    process_s = time.perf_counter() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} on {path} failed ({proc.returncode}):\n{err[-3000:]}")
    return {
        **json.loads(out.strip().splitlines()[-1]),
        "process_s": process_s,
        # The last 0.1 s of each process is not sampled: at most a tenth of a second a core.
        "cpu_s": sum(cpu.values()),
        "peak_rss_bytes": peak,
    }


def _median_phases(runs: list[dict]) -> dict:
    """Per phase and measure, the median over the runs (phases as the first run names them)."""
    return {
        name: {
            key: statistics.median(r["phases"][name].get(key, 0.0) for r in runs)
            for key in runs[0]["phases"][name]
        }
        for name in runs[0]["phases"]
    }


def summarise(runs: list[dict]) -> dict:
    """Medians over the runs of one engine on one input (counts from the first run)."""
    keys = [k for k in runs[0] if k.endswith("_s") or k == "peak_rss_bytes"]
    summary = {
        "runs": len(runs),
        **{k: statistics.median(r[k] for r in runs) for k in keys},
        "countries": runs[0]["countries"],
    }
    if "phases" in runs[0]:
        summary["phases"] = _median_phases(runs)
    if "spark" in runs[0]:
        summary["spark"] = {
            k: statistics.median(r["spark"][k] for r in runs) for k in runs[0]["spark"]
        }
    return summary


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def inputs(sizes: list[int], data_dir: Path, real: Path | None) -> list[tuple[str, Path]]:
    """(label, path) per input: generated files (made once, kept in ``data_dir``), the real file."""
    from scripts.generate_data import write

    data_dir.mkdir(parents=True, exist_ok=True)
    found = []
    for rows in sizes:
        path = data_dir / f"generated-{rows}-seed{SEED}.parquet"
        if not path.exists() or parquet_rows(path) != rows:
            print(f"generating {rows:,} rows into {path}", flush=True)
            write(path, rows, SEED)
        found.append((f"generated {rows:,}", path))
    if real is not None and real.exists():
        found.append(("real file", real))
    return found


def counts_match(spark: dict, pandas: dict) -> bool:
    """Whether another engine's per-country kept and rejected counts equal the job's."""
    keys = ("rows_in", "rows_kept", "rejected_by_reason")
    return {k: {f: v[f] for f in keys} for k, v in spark.items()} == {
        k: {f: v[f] for f in keys} for k, v in pandas.items()
    }


def bench(
    inputs_: list[tuple[str, Path]],
    runs: int,
    single_run_from: int,
    countries: str,
    env: dict[str, str],
    engines: tuple[str, ...] = ENGINES,
    trees: dict[str, Path] | None = None,
) -> list[dict]:
    results = []
    for label, path in inputs_:
        rows = parquet_rows(path)
        n = 1 if rows >= single_run_from else runs
        measured: dict[str, list[dict]] = {
            e: [] for e in engines if e != "pandas" or rows <= PANDAS_MAX_ROWS
        }
        first_sample = len(LOAD_SAMPLES)
        for i in range(n):  # engines interleaved: each round sees the same machine load
            for engine in measured:
                print(f"{label}: {engine} run {i + 1}/{n}", flush=True)
                measured[engine].append(measure(engine, path, countries, env, trees or {}))
        entry = {
            "input": label,
            "path": str(path),
            "rows": rows,
            "file_mb": path.stat().st_size / 1e6,
            # The 1-minute load average while this input's runs ran (2 cores: 2 is full).
            "load": statistics.fmean(LOAD_SAMPLES[first_sample:] or [os.getloadavg()[0]]),
            "engines": {e: summarise(r) for e, r in measured.items()},
        }
        got = entry["engines"]
        if "spark" in got:
            ours = got["spark"]
            entry["counts_match"] = {  # the engines that count what the job counts
                other: counts_match(ours["countries"], got[other]["countries"])
                for other in ("floor", "one_pass", "pandas", *WITHOUT)
                if other in got
            }
            entry["ratios"] = {
                f"ours/{other}": {
                    "work": ours["work_s"] / got[other]["work_s"],
                    "process": ours["process_s"] / got[other]["process_s"],
                    "cpu": ours["cpu_s"] / got[other]["cpu_s"],
                }
                for other in ("floor", "copy", "one_pass", "pandas", "arrow", "before", *WITHOUT)
                if other in got
            }
        if {"floor", "copy"} <= set(got):
            entry["floor/copy"] = {
                "process": got["floor"]["process_s"] / got["copy"]["process_s"],
                "cpu": got["floor"]["cpu_s"] / got["copy"]["cpu_s"],
            }
        for e in got.values():
            e["rows_per_s"] = rows / e["work_s"] if e["work_s"] else None
        results.append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "engines"}), flush=True)
    return results


def spark_machine() -> dict:
    return {**machine(), "spark_master": os.environ.get("SPARK_MASTER", "local[*]")}


# --- reports ------------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def markdown(report: dict) -> str:
    from benchmarks.guarantees import GUARANTEES

    m = report["machine"]
    load = lambda key: ", ".join(f"{x:.1f}" for x in report[key])  # noqa: E731
    d = report.get("load_during")
    during = (
        (
            f"; 1-minute load sampled every second during the run: {d['min']:.1f} min, "
            f"{d['mean']:.1f} mean, {d['max']:.1f} max"
        )
        if d
        else ""
    )
    before = report.get("before")
    lines = [
        SECTION,
        "",
        f"Command: `{report['command']}`. Machine: {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB RAM, Python {m['python']}, {m['system']}, Spark "
        f"`{m['spark_master']}`; load average (1, 5, 15 min) {load('load_before')} before the run, "
        f"{load('load_after')} after it{during}. Countries: `{report['countries']}`. Median of "
        f"{report['runs']} runs per engine and input (1 run for inputs of "
        f"{report['single_run_from']:,} rows or more), each run a fresh subprocess, engines "
        "interleaved round by round.",
        "",
        "- **ours**: the job as `make pipeline` runs it, `glue_jobs.pipeline.run` in Spark local "
        "mode on the local file: *session* = starting the SparkSession (JVM included), *transform* "
        "= its phases (read the footers, find duplicates, write the curated and the rejected "
        "parquet to a throwaway folder, count them), *db* = the rest: record the run and publish "
        "its results in a throwaway PostgreSQL database (tens of milliseconds of calls) and the "
        "driver building the plans between the timed phases;",
        "- **floor**: `benchmarks/spark_floor.py`, a straightforward Spark job of the same rules "
        "in the same session: read every row, find exact duplicates with a window over the six "
        "raw columns, parse them with Spark's native casts, classify each row by the first rule "
        "it fails, compute both measures, write every row once (one dataset partitioned by "
        "country and outcome), count per country and outcome from what was written. The aim: "
        "ours no slower, wall and CPU;",
        "- **Spark copy**: `benchmarks/spark_copy.py`, the least this job must do, done by Spark "
        "in the same session: read every row, compute the country key, write every row once as "
        "parquet partitioned by country, count the rows per country from what was written;",
        "- **one pass**: `benchmarks/one_pass.py`, the job's own transforms with both outputs "
        "written as one dataset partitioned by kind (one schema holding both sets of columns) in "
        "one classification pass, then the same counts read back: what the single pass would "
        "save if the lake's curated and rejected tables became one;",
        *(
            [
                f"- **ours before**: the job at `{before}`, from a worktree of it, in the same"
                " rounds;"
            ]
            if before
            else []
        ),
        *(
            f"- **{LABELS[name]}**: benchmark-only (`benchmarks/guarantees.py`), {LABELS[base]}"
            f" with guarantees switched off: {'; '.join(GUARANTEES[g][0] for g in off)};"
            for name, (base, off) in WITHOUT.items()
            if any(name in r["engines"] for r in report["results"])
        ),
        "- **pandas**: `benchmarks/pandas_baseline.py`, the usual public solution: read the whole "
        "file, clean, segment and group in memory (writes nothing);",
        "- **pyarrow count**: pyarrow reads the whole file and counts rows per country.",
        "",
        "*Work* is the time inside the worker after its imports (session included); *process* is "
        "the whole subprocess, interpreter start to exit; *CPU* is the user + system time of the "
        "whole process tree (Spark's JVM included). Rows/s = rows / work. Peak RSS is the whole "
        "process tree, sampled every 0.1 s. Ratios are ours over the other engine: process time "
        "(work time), and CPU. *Load* is the mean 1-minute load average while the input's runs "
        "ran (2 cores: above 2, other work shared them).",
        "",
        "| input | load | rows | file | engine | runs | work s | process s | CPU s | rows/s |"
        " peak RSS | ours over it, wall (work) | CPU | counts match |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        for name, e in r["engines"].items():
            work = f"{e['work_s']:.2f}"
            if name == "spark":
                work += (
                    f" ({e['session_s']:.1f} session + {e['transform_s']:.1f} transform + "
                    f"{e['db_s']:.2f} db)"
                )
            ratio = r.get("ratios", {}).get(f"ours/{name}")
            cpu = f"{ratio['cpu']:.2f}x" if ratio and "cpu" in ratio else ""
            ratio = f"{ratio['process']:.2f}x ({ratio['work']:.2f}x)" if ratio else ""
            matched = r.get("counts_match", {}).get(name)
            match = "" if matched is None else "yes" if matched else "**no**"
            lines.append(
                f"| {r['input']} | {r.get('load', 0):.1f} | {r['rows']:,} | {r['file_mb']:.1f} MB "
                f"| {LABELS[name]} | {e['runs']} | {work} | {e['process_s']:.2f} | "
                f"{e.get('cpu_s', 0):.1f} | {e['rows_per_s']:,.0f} | {_mib(e['peak_rss_bytes'])} "
                f"| {ratio} | {cpu} | {match} |"
            )
    lines += [
        "",
        *phase_table(report["results"]),
        "",
        *spark_work_table(report["results"]),
        "",
        *findings(report["results"]),
        "",
        "Plot: `reports/bench_pipeline.png` (log-log wall time against rows); the same "
        "figures as JSON and Markdown beside it.",
        "",
    ]
    return "\n".join(lines)


def phase_table(results: list[dict]) -> list[str]:
    """Where ours spends its time, per input and phase: the driver's wall time for the phase,
    and Spark's account of the phase's jobs (their wall time, their tasks' executor CPU)."""
    rows = [r for r in results if "phases" in r["engines"].get("spark", {})]
    if not rows:
        return []
    names = list(rows[0]["engines"]["spark"]["phases"])
    lines = [
        "Where ours spends its time, per phase (driver wall s / Spark jobs' wall s / "
        "executor CPU s, from the job's own timings and Spark's event log):",
        "",
        "| input | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for r in rows:
        phases = r["engines"]["spark"]["phases"]
        cells = [
            f"{p['driver_s']:.1f} / {p.get('wall_s', 0):.1f} / {p.get('cpu_s', 0):.1f}"
            if (p := phases.get(n))
            else ""
            for n in names
        ]
        lines.append(f"| {r['input']} | " + " | ".join(cells) + " |")
    return lines


def spark_work_table(results: list[dict]) -> list[str]:
    """What each Spark engine started per run: jobs, stages, tasks, and the code it compiled."""
    rows = [
        (r["input"], name, e["spark"])
        for r in results
        for name, e in r["engines"].items()
        if "spark" in e
    ]
    if not rows:
        return []
    return [
        "What each Spark engine starts per run (medians; a cold JVM pays for each job and each"
        " class compiled, whatever the rows):",
        "",
        "| input | engine | jobs | stages run | tasks | code compiles | compiling s (about) |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(
            f"| {label} | {LABELS[name]} | {w['jobs']:.0f} | {w['stages']:.0f} | {w['tasks']:.0f}"
            f" | {w['compiles']:.0f} | {w['compile_s']:.2f} |"
            for label, name, w in rows
        ),
    ]


def findings(results: list[dict]) -> list[str]:
    """What the figures say, computed from them (so a rerun keeps it true)."""
    measured = [r for r in results if {"spark", "copy"} <= set(r["engines"])]
    if not measured:
        return []
    lines = ["What the figures say:", ""]
    for r in measured:
        ratios = r["ratios"]
        parts = []
        if "ours/floor" in ratios:
            ours = ratios["ours/floor"]
            aim = ours["process"] <= 1.0 and ours["cpu"] <= 1.0
            parts.append(
                f"ours/floor {ours['process']:.2f}x wall, {ours['cpu']:.2f}x CPU"
                f" ({'within' if aim else 'beyond'} the 1.0x aim), floor/copy"
                f" {r['floor/copy']['process']:.2f}x wall"
            )
        parts.append(f"ours/copy {ratios['ours/copy']['process']:.2f}x")
        got = r["engines"]
        if "one_pass" in got:
            one = got["one_pass"]["process_s"] / got["copy"]["process_s"]
            parts.append(f"one pass/copy {one:.2f}x")
        for other, label in (
            ("one_pass", "ours/one pass"),
            ("pandas", "ours/pandas"),
            ("arrow", "ours/pyarrow count"),
            ("before", "ours/before"),
            *((name, f"ours/{LABELS[name]}") for name in WITHOUT),
        ):
            if f"ours/{other}" in ratios:
                parts.append(f"{label} {ratios[f'ours/{other}']['process']:.2f}x")
        lines.append(
            f"- {r['input']} (load {r.get('load', 0):.1f}): {', '.join(parts)} (process time)."
        )
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {
        "spark": ("ours (Spark local, transform + session)", "o-"),
        "before": ("ours before", "o--"),
        "floor": ("floor (a straightforward Spark job of the rules)", "P-"),
        "copy": ("Spark copy (read, key, write)", "D-"),
        "one_pass": ("one pass (both outputs as one dataset)", "v-"),
        "pandas": ("pandas baseline", "s-"),
        "arrow": ("pyarrow read + count", "^-"),
    }
    generated = [r for r in report["results"] if r["input"] != "real file"]
    real = [r for r in report["results"] if r["input"] == "real file"]
    for engine, (label, style) in styles.items():
        points = [
            (r["rows"], r["engines"][engine]["work_s"]) for r in generated if engine in r["engines"]
        ]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
        for r in real:
            if engine in r["engines"]:
                ax.plot(
                    r["rows"],
                    r["engines"][engine]["work_s"],
                    style[0],
                    mfc="none",
                    ms=10,
                    color=ax.lines[-1].get_color() if points else None,
                )
        if engine == "spark":
            session = [
                (r["rows"], r["engines"]["spark"]["session_s"])
                for r in generated
                if "spark" in r["engines"]
            ]
            if session:
                ax.plot(
                    *zip(*session, strict=True),
                    "o:",
                    color=ax.lines[-1].get_color(),
                    alpha=0.6,
                    label="ours: session start alone",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input rows (count, log scale)")
    ax.set_ylabel("wall time (seconds, log scale)")
    ax.set_title(
        "Voucher pipeline: wall time vs input rows"
        f" ({report['machine']['cores']} cores; hollow = real file)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    """The command line (``--worker`` and ``--data`` are how a measured subprocess is told
    what to run)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default=os.environ.get("BENCH_SIZES", DEFAULT_SIZES),
        help="generated input sizes in rows, comma-separated ('' for none); env BENCH_SIZES",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=int(os.environ.get("BENCH_RUNS", "3")),
        help="runs per engine and input, the median is reported; env BENCH_RUNS",
    )
    parser.add_argument(
        "--single-run-from",
        type=int,
        default=int(os.environ.get("BENCH_SINGLE_RUN_FROM", "100000000")),
        help="inputs of this many rows or more are run once (default: none of the defaults)",
    )
    parser.add_argument("--real", type=Path, default=REAL_FILE, help="the real history file")
    parser.add_argument("--no-real", action="store_true", help="leave the real file out")
    parser.add_argument("--countries", default=os.environ.get("BENCH_COUNTRIES", "all"))
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "reports" / "bench-data")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "reports",
        help="where bench_pipeline.{json,md,png} go",
    )
    parser.add_argument("--write", type=Path, help="update this file's Pipeline section")
    parser.add_argument(
        "--command", default="make bench-pipeline", help="the command recorded in the report"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="no measuring: render the reports (and --write) from this JSON",
    )
    parser.add_argument(
        "--engines",
        default=os.environ.get("BENCH_ENGINES", ",".join(ENGINES)),
        help="engines to run, comma-separated (default: all); env BENCH_ENGINES",
    )
    parser.add_argument(
        "--before",
        metavar="REF",
        help="also run ours as it was at this git ref (a worktree), same rounds",
    )
    parser.add_argument("--worker", choices=(*ENGINES, *WITHOUT), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.countries)), flush=True)
        return 0

    if args.from_json:
        publish(json.loads(args.from_json.read_text()), args.out, args.write)
        return 0
    sizes = [int(s) for s in args.sizes.replace("_", "").split(",") if s.strip()]
    load_before = os.getloadavg()
    started = time.perf_counter()
    engines = tuple(e for e in args.engines.split(",") if e in (*ENGINES, *WITHOUT))
    engines += ("before",) if args.before else ()
    with throwaway_database() as url, worktree(args.before) as trees:
        results = bench(
            inputs(sizes, args.data_dir, None if args.no_real else args.real),
            args.runs,
            args.single_run_from,
            args.countries,
            env={
                **os.environ,
                "DATABASE_URL": url,
                "SPARK_CLASS_ARCHIVE": str(from_env().spark_class_archive),
            },
            engines=engines,
            trees=trees,
        )
    report = {
        "command": args.command,
        "machine": spark_machine(),
        "countries": args.countries,
        "before": args.before,
        "runs": args.runs,
        "single_run_from": args.single_run_from,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "load_during": {
            "min": min(LOAD_SAMPLES, default=0.0),
            "mean": statistics.fmean(LOAD_SAMPLES) if LOAD_SAMPLES else 0.0,
            "max": max(LOAD_SAMPLES, default=0.0),
        },
        "seconds": time.perf_counter() - started,
        "results": results,
    }
    publish(report, args.out, args.write)
    return 0


@contextlib.contextmanager
def worktree(ref: str | None) -> Iterator[dict[str, Path]]:
    """A git worktree of ``ref`` for the ``before`` engine (removed afterwards); none without."""
    if not ref:
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-before-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(folder), ref],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    try:
        yield {"before": folder}
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(folder)],
            cwd=REPO_ROOT,
            check=False,
            capture_output=True,
        )


def publish(report: dict, out: Path, docs: Path | None) -> None:
    """reports/bench_pipeline.{json,md,png}, and the Pipeline section of ``docs``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_pipeline.json").write_text(json.dumps(report, indent=2) + "\n")
    section = markdown(report)
    (out / "bench_pipeline.md").write_text(section)
    plot(report, out / "bench_pipeline.png")
    print(section)
    if docs:
        write_section(docs, SECTION, section)
        print(f"written to {docs}")


if __name__ == "__main__":
    sys.exit(main())
