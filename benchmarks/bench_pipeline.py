"""Pipeline benchmark: the Glue job's transform against a pandas baseline and a pyarrow floor.

Per input (generated histories of several sizes, plus the real file when present), side by side
in the same run, each measurement in a fresh subprocess, median of N runs:

- ``spark``: ``glue_jobs.pipeline.transform`` in Spark local mode on the local path, writing its
  curated and rejected outputs to a throwaway folder; session start timed apart from the transform;
- ``pandas``: :mod:`benchmarks.pandas_baseline` reads the whole file, cleans and groups in memory;
- ``arrow``: the floor, pyarrow reads the same file and counts rows per country.

Wall time (inside the worker, and the whole process from spawn to exit), rows/s and the peak RSS
of the process tree (``/proc/<pid>/status`` VmRSS of the worker and its descendants, sampled every
0.1 s) go to ``reports/bench_pipeline.{json,md,png}``; ``--write`` updates the Pipeline section of
docs/benchmarks.md.

    make bench-pipeline                       # BENCH_SIZES=2000 BENCH_RUNS=1 for a tiny one
    python -m benchmarks.bench_pipeline --sizes 300000,1000000 --runs 3 --no-real
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine, throwaway_database, write_section

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_FILE = REPO_ROOT.parent / "shared" / "data" / "voucher_history.parquet.gzip"
SECTION = "## Pipeline"
ENGINES = ("spark", "pandas", "arrow")
DEFAULT_SIZES = "300000,1000000,3000000,10000000"
SEED = 7
#: 1-minute load averages sampled every second while workers run.
LOAD_SAMPLES: list[float] = []


# --- workers: one measurement each, in a fresh interpreter --------------------------------------


def _work_spark(path: str, countries: str) -> dict:
    """The job as ``make pipeline`` runs it (record the run, transform, publish to the database
    in ``DATABASE_URL``), on the local file; every phase timed from the job's progress lines."""
    started = time.perf_counter()
    from chalicelib.runs import new_run_id
    from glue_jobs.pipeline import JobOptions, configure, run
    from glue_jobs.voucher_selection_job import local_session
    from infra.local.settings import from_env

    os.environ.setdefault("SPARK_CLASS_ARCHIVE", str(from_env().spark_class_archive))  # as runs do
    imported = time.perf_counter()
    spark = local_session()
    spark.sparkContext.setLogLevel("ERROR")
    configure(spark)
    session = time.perf_counter()
    lines: list[tuple[str, float]] = []  # the job's progress lines, and when each was logged

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append((record.msg, time.perf_counter()))

    def at(start: str) -> float:
        return next(when for msg, when in lines if msg.startswith(start))

    job_log = logging.getLogger("voucher_selection")
    job_log.setLevel(logging.INFO)
    job_log.addHandler(Lines())
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as out:
        options = JobOptions(path, countries, new_run_id(), f"{out}/curated", f"{out}/rejected")
        result = run(spark, options).result
    spark.stop()
    recorded, counted, published = at("run %s started"), at("counted"), at("run %s published")
    return {
        "import_s": imported - started,
        "session_s": session - imported,
        "record_s": recorded - session,  # the run's record in the database
        "transform_s": counted - recorded,
        "dedup_s": at("found") - recorded,  # rows read, repeated row hashes, their exact groups
        "write_s": at("wrote") - at("found"),  # rules and segments, curated + rejected parquet
        "tally_s": counted - at("wrote"),  # the two outputs read back and counted
        "publish_s": published - counted,  # statistics and selections, one transaction
        "work_s": published - imported,
        "countries": {
            c.country_key: {"rows_in": c.rows_in, "rows_kept": c.rows_kept,
                            "rejected_by_reason": dict(c.rejected_by_reason)}
            for c in result.countries
        },  # fmt: skip
    }


def _work_pandas(path: str, countries: str) -> dict:
    started = time.perf_counter()
    from benchmarks import pandas_baseline

    imported = time.perf_counter()
    result = pandas_baseline.run(path, countries)
    done = time.perf_counter()
    return {"import_s": imported - started, "work_s": done - imported,
            "countries": result["countries"]}  # fmt: skip


def _work_arrow(path: str, countries: str) -> dict:
    started = time.perf_counter()
    import pyarrow.parquet as pq

    imported = time.perf_counter()
    table = pq.read_table(path)
    counts = table.group_by("country_code").aggregate([("country_code", "count")])
    done = time.perf_counter()
    return {"import_s": imported - started, "work_s": done - imported,
            "countries": {str(k): {"rows_in": n} for k, n in zip(
                counts["country_code"].to_pylist(), counts["country_code_count"].to_pylist(),
                strict=True)}}  # fmt: skip


WORKERS = {"spark": _work_spark, "pandas": _work_pandas, "arrow": _work_arrow}


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


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (VmRSS of each)."""
    tree, total, todo = _children(), 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def measure(engine: str, path: Path, countries: str, env: dict[str, str]) -> dict:
    """One run of ``engine`` in a fresh subprocess: its own timings, process wall, peak tree RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_pipeline", "--worker", engine,
         "--data", str(path), "--countries", countries],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak, ticks = 0, 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        if ticks % 10 == 0:
            LOAD_SAMPLES.append(os.getloadavg()[0])
        ticks += 1
        time.sleep(0.1)
    process_s = time.perf_counter() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} on {path} failed ({proc.returncode}):\n{err[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": process_s,
            "peak_rss_bytes": peak}  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    """Medians over the runs of one engine on one input (counts from the first run)."""
    keys = [k for k in runs[0] if k.endswith("_s") or k == "peak_rss_bytes"]
    return {"runs": len(runs), **{k: statistics.median(r[k] for r in runs) for k in keys},
            "countries": runs[0]["countries"]}  # fmt: skip


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
    """Whether the baseline's per-country kept and rejected counts equal the job's."""
    keys = ("rows_in", "rows_kept", "rejected_by_reason")
    return {k: {f: v[f] for f in keys} for k, v in spark.items()} == {
        k: {f: v[f] for f in keys} for k, v in pandas.items()
    }


def bench(inputs_: list[tuple[str, Path]], runs: int, single_run_from: int, countries: str,
          env: dict[str, str], engines: tuple[str, ...] = ENGINES) -> list[dict]:  # fmt: skip
    results = []
    for label, path in inputs_:
        rows = parquet_rows(path)
        n = 1 if rows >= single_run_from else runs
        measured: dict[str, list[dict]] = {e: [] for e in engines}
        for i in range(n):  # engines interleaved: each round sees the same machine load
            for engine in engines:
                print(f"{label}: {engine} run {i + 1}/{n}", flush=True)
                measured[engine].append(measure(engine, path, countries, env))
        entry = {"input": label, "path": str(path), "rows": rows,
                 "file_mb": path.stat().st_size / 1e6,
                 "engines": {e: summarise(r) for e, r in measured.items()}}  # fmt: skip
        got = entry["engines"]
        if "spark" in got and "pandas" in got:
            entry["counts_match"] = counts_match(got["spark"]["countries"],
                                                 got["pandas"]["countries"])
        if "spark" in got and "arrow" in got:
            entry["ours_over_floor"] = got["spark"]["work_s"] / got["arrow"]["work_s"]
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
    m = report["machine"]
    load = lambda key: ", ".join(f"{x:.1f}" for x in report[key])  # noqa: E731
    d = report.get("load_during")
    during = (f"; 1-minute load sampled every second during the run: {d['min']:.1f} min, "
              f"{d['mean']:.1f} mean, {d['max']:.1f} max") if d else ""
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
        "= find duplicates, classify, segment, write the curated and rejected parquet to a "
        "throwaway folder and count them, *db* = record the run and publish its results in a "
        "throwaway PostgreSQL database;",
        "- **pandas**: `benchmarks/pandas_baseline.py`, the usual public solution: read the whole "
        "file, clean, segment and group in memory (writes nothing);",
        "- **floor**: pyarrow reads the whole file and counts rows per country.",
        "",
        "*Work* is the time inside the worker after its imports (for ours: session + transform); "
        "*process* is the whole subprocess, interpreter start to exit. Rows/s = rows / work. "
        "Peak RSS is the whole process tree (Spark's JVM included), sampled every 0.1 s.",
        "",
        "| input | rows | file | engine | runs | work s | process s | rows/s | peak RSS |"
        " ours/floor (work) | counts match |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        for name, e in r["engines"].items():
            label = {"spark": "ours", "pandas": "pandas", "arrow": "floor"}[name]
            work = f"{e['work_s']:.2f}"
            if name == "spark":
                work += (f" ({e['session_s']:.1f} session + {e['transform_s']:.1f} transform + "
                         f"{e['record_s'] + e['publish_s']:.2f} db)")
            ratio = f"{r['ours_over_floor']:.1f}x" if name == "spark" and "ours_over_floor" in r \
                else ""
            match = ("yes" if r["counts_match"] else "**no**") if name == "pandas" and \
                "counts_match" in r else ""
            lines.append(
                f"| {r['input']} | {r['rows']:,} | {r['file_mb']:.1f} MB | {label} | {e['runs']} "
                f"| {work} | {e['process_s']:.2f} | {e['rows_per_s']:,.0f} | "
                f"{_mib(e['peak_rss_bytes'])} | {ratio} | {match} |"
            )
    lines += ["", *findings(report["results"]), "",
              "Plot: `reports/bench_pipeline.png` (log-log wall time against rows); the same "
              "figures as JSON and Markdown beside it.", ""]  # fmt: skip
    return "\n".join(lines)


def phases(spark: dict) -> str:
    if "dedup_s" not in spark:
        return ""
    return (f"the transform is {spark['dedup_s']:.1f} s reading and finding duplicates (repeated "
            f"row hashes and their exact groups), {spark['write_s']:.1f} s applying the rules and "
            f"writing the curated and rejected parquet, {spark['tally_s']:.1f} s counting the "
            "outputs; ")


def findings(results: list[dict]) -> list[str]:
    """Where the time goes, computed from the figures (so a rerun keeps it true)."""
    measured = [r for r in results if {"spark", "pandas", "arrow"} <= set(r["engines"])]
    if not measured:
        return []
    small, large = min(measured, key=lambda r: r["rows"]), max(measured, key=lambda r: r["rows"])
    lines = ["Where the time goes:", ""]
    for r in dict.fromkeys((small["input"], large["input"])):
        r = next(x for x in measured if x["input"] == r)
        s, p, a = (r["engines"][e] for e in ("spark", "pandas", "arrow"))
        lines.append(
            f"- {r['input']} ({r['rows']:,} rows): ours {s['work_s']:.1f} s = session start "
            f"{s['session_s']:.1f} s "
            f"({s['session_s'] / s['work_s']:.0%}) + transform {s['transform_s']:.1f} s + "
            f"{s['record_s']:.2f} s recording and {s['publish_s']:.2f} s publishing the run, plus "
            f"{s['process_s'] - s['work_s']:.1f} s of interpreter and imports; {phases(s)}"
            "pandas "
            f"{p['work_s']:.1f} s, floor {a['work_s']:.2f} s; "
            f"ours/floor {r['ours_over_floor']:.0f}x, "
            f"ours/pandas {s['work_s'] / p['work_s']:.1f}x; peak RSS ours "
            f"{_mib(s['peak_rss_bytes'])}, pandas {_mib(p['peak_rss_bytes'])}, floor "
            f"{_mib(a['peak_rss_bytes'])}."
        )
    generated = sorted((r for r in measured if r["input"] != "real file"), key=lambda r: r["rows"])
    if len(generated) >= 2:
        first, last = generated[0], generated[-1]
        growth = last["rows"] / first["rows"]
        per = {e: last["engines"][e]["work_s"] / first["engines"][e]["work_s"]
               for e in ("spark", "pandas", "arrow")}  # fmt: skip
        ours_t = last["engines"]["spark"]["transform_s"] / first["engines"]["spark"]["transform_s"]
        lines.append(
            f"- From {first['rows']:,} to {last['rows']:,} rows ({growth:.0f}x): ours takes "
            f"{per['spark']:.1f}x longer (its transform alone {ours_t:.1f}x), pandas "
            f"{per['pandas']:.1f}x, the floor {per['arrow']:.1f}x."
        )
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"spark": ("ours (Spark local, transform + session)", "o-"),
              "pandas": ("pandas baseline", "s-"), "arrow": ("floor (pyarrow read + count)", "^-")}
    generated = [r for r in report["results"] if r["input"] != "real file"]
    real = [r for r in report["results"] if r["input"] == "real file"]
    for engine, (label, style) in styles.items():
        points = [(r["rows"], r["engines"][engine]["work_s"]) for r in generated
                  if engine in r["engines"]]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
        for r in real:
            if engine in r["engines"]:
                ax.plot(r["rows"], r["engines"][engine]["work_s"], style[0], mfc="none", ms=10,
                        color=ax.lines[-1].get_color() if points else None)
        if engine == "spark":
            session = [(r["rows"], r["engines"]["spark"]["session_s"]) for r in generated
                       if "spark" in r["engines"]]
            if session:
                ax.plot(*zip(*session, strict=True), "o:", color=ax.lines[-1].get_color(),
                        alpha=0.6, label="ours: session start alone")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input rows (count, log scale)")
    ax.set_ylabel("wall time (seconds, log scale)")
    ax.set_title("Voucher pipeline: wall time vs input rows"
                 f" ({report['machine']['cores']} cores; hollow = real file)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_pipeline", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", DEFAULT_SIZES),
                        help="generated input sizes in rows, comma-separated ('' for none); "
                        "env BENCH_SIZES")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")),
                        help="runs per engine and input, the median is reported; env BENCH_RUNS")
    parser.add_argument("--single-run-from", type=int, default=int(
        os.environ.get("BENCH_SINGLE_RUN_FROM", "100000000")),
        help="inputs of this many rows or more are run once (default: none of the defaults)")
    parser.add_argument("--real", type=Path, default=REAL_FILE, help="the real history file")
    parser.add_argument("--no-real", action="store_true", help="leave the real file out")
    parser.add_argument("--countries", default=os.environ.get("BENCH_COUNTRIES", "all"))
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "reports" / "bench-data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports",
                        help="where bench_pipeline.{json,md,png} go")
    parser.add_argument("--write", type=Path, help="update this file's Pipeline section")
    parser.add_argument("--command", default="make bench-pipeline",
                        help="the command recorded in the report")
    parser.add_argument("--from-json", type=Path,
                        help="no measuring: render the reports (and --write) from this JSON")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.countries)), flush=True)
        return 0

    if args.from_json:
        publish(json.loads(args.from_json.read_text()), args.out, args.write)
        return 0
    sizes = [int(s) for s in args.sizes.replace("_", "").split(",") if s.strip()]
    load_before = os.getloadavg()
    started = time.perf_counter()
    with throwaway_database() as url:  # where ours records and publishes its runs
        results = bench(inputs(sizes, args.data_dir, None if args.no_real else args.real),
                        args.runs, args.single_run_from, args.countries,
                        env={**os.environ, "DATABASE_URL": url})
    report = {"command": args.command, "machine": spark_machine(), "countries": args.countries,
              "runs": args.runs, "single_run_from": args.single_run_from,
              "load_before": load_before, "load_after": os.getloadavg(),
              "load_during": {"min": min(LOAD_SAMPLES, default=0.0),
                              "mean": statistics.fmean(LOAD_SAMPLES) if LOAD_SAMPLES else 0.0,
                              "max": max(LOAD_SAMPLES, default=0.0)},
              "seconds": time.perf_counter() - started, "results": results}  # fmt: skip
    publish(report, args.out, args.write)
    return 0


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
