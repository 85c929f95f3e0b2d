"""The selection and runs pages in headless Chromium, against the real local stack as a stage that
requires the API key (prod): the real history published by real runs of the job, after an earlier
history that chose otherwise, then a failed run, a dataset folder waiting and an upload queued.

Screenshots at a laptop's and a phone's width go to ``reports/screenshots/`` (not committed).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import psycopg2
import pytest

from chalicelib import runs
from chalicelib.api.responses import amount
from chalicelib.sources import InputError
from infra.local.settings import REAL_FILE
from tests.helpers import (
    SCREENSHOTS,
    empty_tables,
    fetch,
    independent_expectations,
    independent_usage,
    offline_tab,
    run_job,
    upload,
)

pytestmark = [pytest.mark.browser, pytest.mark.real_data]

#: A laptop's and a phone's width.
WIDTHS = (1280, 390)
#: The real run's MIN_SEGMENT_ROWS: a few segments of the real history have fewer kept rows.
MIN_ROWS = 10_000
PAGES = ("/selection", "/runs/page", "/search_voucher")


#: Why the pending runs wait, as the intake says it.
WAITING_REASON = "a multipart upload is in progress: incoming/history_2026_12/part-2.parquet"
QUEUED_REASON = "waiting for capacity: NoCapacity: 2 local job(s) running"


@pytest.fixture(scope="module")
def real_history(local_stack, database_url, buckets, spark, s3):
    """The real file published over an earlier history with fewer Peruvian 2640 vouchers (so
    that Peru's choices changed), a failed run, a folder waiting and an upload queued; what an
    independent pandas computation expects of it."""
    if not REAL_FILE.exists():
        pytest.skip(f"{REAL_FILE} is absent")
    conn = psycopg2.connect(database_url)
    empty_tables(conn)
    real = pd.read_parquet(REAL_FILE)
    peru = real.country_code.str.strip().str.lower() == "peru"
    fewer = peru & (real.voucher_amount == 2640) & (np.arange(len(real)) % 5 < 3)
    earlier = io.BytesIO()
    real[~fewer].to_parquet(earlier, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUN_LEASE_SECONDS", "3600")  # the waiting and queued runs stay so meanwhile
        earlier_run = run_job(
            buckets, upload(s3, buckets, "incoming/h1.parquet", earlier.getvalue())
        )
        real_run = run_job(
            buckets,
            upload(s3, buckets, "incoming/history.parquet.gzip", REAL_FILE.read_bytes()),
            min_segment_rows=str(MIN_ROWS),
        )
        failed_run = runs.new_run_id()
        with pytest.raises(InputError):
            csv = upload(s3, buckets, "incoming/customers.parquet", b"customer_id,amount\n1,2\n")
            run_job(buckets, csv, run_id=failed_run)
        queued_run = runs.new_run_id()
        folder = runs.Source(buckets.raw, "incoming/history_2026_12/")
        waiting_run = runs.wait_for_dataset(conn, folder, None, WAITING_REASON).run_id
        queued = runs.Source(buckets.raw, "incoming/h2.parquet", "etag-h2")
        assert runs.take_in(conn, queued_run, queued, None, 60) == queued_run
        assert runs.starting(conn, queued_run, 60)
        runs.start_put_off(conn, queued_run, QUEUED_REASON, 60, False)
    _, before, before_fallbacks = independent_expectations(real[~fewer])
    _, now, now_fallbacks = independent_expectations(real)
    yield {
        "runs": {
            "earlier": earlier_run,
            "real": real_run,
            "failed": failed_run,
            "waiting": waiting_run,
            "queued": queued_run,
        },
        "usage": independent_usage(real, runs.USAGE_TOP_AMOUNTS),
        "now": now | {(k, None, None): v for k, v in now_fallbacks.items()},
        "before": before | {(k, None, None): v for k, v in before_fallbacks.items()},
        "conn": conn,
    }
    conn.close()


def open_page(tab, url: str, path: str, key: str, ready: str) -> None:
    """Go to a page; give the key when it asks (a keyed route refused it), then wait for
    ``ready``."""
    tab.page.goto(url + path)
    tab.page.wait_for_selector(f"#api-key-dialog[open], {ready}")
    if tab.page.locator("#api-key-dialog[open]").count():
        tab.page.fill("#api-key-input", key)
        tab.page.click("#api-key-form button[type=submit]")
    tab.page.locator(ready).first.wait_for()


def api_calls(tab) -> list[tuple[str, str, str | None]]:
    return [call for call in tab.calls if call[1].split("?")[0] not in PAGES]


def check_offline_and_sound(tab, width: int) -> None:
    """Nothing fetched from outside, no script error, and nothing wider than the screen."""
    assert tab.outside == [], f"the page fetched outside resources: {tab.outside}"
    assert [p for p in tab.problems if "status of 403" not in p] == []
    overflow = tab.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen"


READ_CARDS = """() => [...document.querySelectorAll("section.country article.choice")].map((c) => ({
  name: c.dataset.segmentName || null,
  segment: c.dataset.segment || null,
  state: c.dataset.state,
  text: c.innerText,
  history: (c.querySelector(".history-text") || {}).textContent || "",
  alternative: [...c.querySelectorAll("svg.usage title, svg.usage desc")]
    .map((n) => n.textContent).join(" "),
  bars: [...c.querySelectorAll("svg.usage g.bar")].map((g) => ({
    amount: g.dataset.amount,
    rows: Number(g.dataset.rows),
    chosen: g.dataset.chosen === "true",
    label: g.querySelector("text.label").textContent,
    value: g.querySelector("text.value").textContent,
    width: Number(g.querySelector("rect").getAttribute("width")),
  })),
}))"""


def test_the_selection_page_charts_the_published_usage_and_marks_each_choice(
    browser, keyed_api, real_history
):
    url, key = keyed_api
    usage, now, before = real_history["usage"], real_history["now"], real_history["before"]
    countries = sorted({choice[0] for choice in usage})
    for width in WIDTHS:
        with offline_tab(browser, url, width, 900) as tab:
            open_page(tab, url, "/selection", key, "section.country")
            buttons = tab.page.locator("#countries button")
            assert [b.lower() for b in buttons.all_inner_texts()] == countries
            for country in countries:
                buttons.filter(has_text=country.title()).click()
                tab.page.locator(f"section.country[data-country='{country}']").wait_for()
                cards = tab.page.evaluate(READ_CARDS)
                assert len(cards) == 1 + 8  # the fallback, three frequent and five recency
                for card in cards:
                    check_card(card, (country, card["name"], card["segment"]), usage, now, before)
                if country == "peru":
                    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                    tab.page.screenshot(
                        path=str(SCREENSHOTS / f"selection_{width}.png"), full_page=True
                    )
            check_offline_and_sound(tab, width)


def check_card(card: dict, choice: tuple, usage: dict, now: dict, before: dict) -> None:
    """One chart against the independent computation: its bars, the marked choice, its state
    (below MIN_SEGMENT_ROWS, no history) and what it says changed since the earlier history."""
    expected = usage.get(choice)
    if expected is None:  # no history in this segment
        assert card["state"] == "empty" and card["bars"] == [], choice
        assert "No history" in card["text"]
        return
    bars = card["bars"]
    assert [(float(b["amount"]), b["rows"]) for b in bars] == expected, choice
    for bar in bars:  # what a reader sees says the same
        assert bar["label"] == bar["amount"]
        assert bar["value"].split(" · ")[0].replace(",", "") == str(bar["rows"])
    most = max(b["rows"] for b in bars)
    widest = max(b["width"] for b in bars)
    for bar in bars:  # the bars' lengths are the rows, to the chart's scale
        assert bar["width"] / widest == pytest.approx(bar["rows"] / most, abs=0.01)
    [chosen] = [b for b in bars if b["chosen"]]
    winner, rows, total, *_ = now[choice]
    assert (float(chosen["amount"]), chosen["rows"]) == (winner, rows), choice
    for amount_, n in expected:  # the text alternative names every bar
        assert f"{amount(amount_)}: {n:,} rows" in card["alternative"]
    below = choice[1] is not None and total < MIN_ROWS
    assert card["state"] == ("below" if below else "chosen"), choice
    if below:
        assert "Below MIN_SEGMENT_ROWS" in card["text"]
    earlier = before.get(choice, (None,))[0]
    if earlier != winner:
        assert f"{amount(earlier)} → {amount(winner)}" in card["history"], choice
    else:
        assert card["history"].startswith("Unchanged over the country's last 2 runs"), choice


READ_RUNS = """(list) => [...document.querySelectorAll(`#${list} article.run`)].map((run) => ({
  run_id: run.dataset.runId,
  status: run.dataset.status,
  text: run.innerText,
  error: (run.querySelector("pre.error") || {}).textContent || null,
  why: (run.querySelector(".why") || {}).textContent || null,
  stats: [...run.querySelectorAll("tr.country")].map((row) => ({
    country: row.dataset.country,
    cells: [...row.querySelectorAll("td")].map((td) => Number(td.textContent.replace(/,/g, ""))),
    reasons: Object.fromEntries([...run.querySelectorAll(
        `tr.reasons[data-country="${row.dataset.country}"] li`)].map((li) =>
      [li.dataset.reason, Number(li.textContent.split(" ").pop().replace(/,/g, ""))])),
  })),
}))"""


def test_the_runs_page_shows_every_run_its_counts_why_it_waits_and_a_failure_in_full(
    browser, keyed_api, real_history
):
    url, key = keyed_api
    ids, conn = real_history["runs"], real_history["conn"]
    conn.rollback()
    [(error,)] = fetch(conn, "SELECT error FROM runs WHERE run_id = %s", ids["failed"])
    stats = fetch(
        conn,
        "SELECT country, rows_in, rows_kept, rows_rejected, rejected_by_reason"
        " FROM run_country_stats WHERE run_id = %s",
        ids["real"],
    )
    for width in WIDTHS:
        with offline_tab(browser, url, width, 900) as tab:
            open_page(tab, url, "/runs/page", key, "#runs article.run")
            listed = {r["run_id"]: r for r in tab.page.evaluate(READ_RUNS, "runs")}
            assert set(listed) == set(ids.values())
            assert {r["status"] for r in listed.values()} == set(runs.RUN_STATUSES) - {"running"}
            failed = listed[ids["failed"]]
            assert failed["status"] == "failed" and failed["error"] == error
            assert "is not parquet" in error  # the reason, in full
            real = listed[ids["real"]]
            assert "285,570 (0 out of scope)" in real["text"]
            assert {s["country"]: s["cells"] for s in real["stats"]} == {
                country: [rows_in, kept, rejected] for country, rows_in, kept, rejected, _ in stats
            }
            assert {s["country"]: s["reasons"] for s in real["stats"]} == {
                country: {code: n for code, n in by_reason.items() if n}
                for country, *_, by_reason in stats
            }
            pending = {r["run_id"]: r for r in tab.page.evaluate(READ_RUNS, "pending")}
            assert set(pending) == {ids["waiting"], ids["queued"]}
            assert "_SUCCESS marker" in pending[ids["waiting"]]["why"]
            assert "its job has not started yet" in pending[ids["queued"]]["why"]
            assert QUEUED_REASON in pending[ids["queued"]]["why"]
            assert WAITING_REASON in pending[ids["waiting"]]["why"]
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            tab.page.screenshot(path=str(SCREENSHOTS / f"runs_{width}.png"), full_page=True)

            for status, expected in (("failed", {ids["failed"]}), ("waiting", {ids["waiting"]})):
                tab.page.click(f"#filters button[data-status={status}]")
                tab.page.wait_for_function(
                    "(s) => [...document.querySelectorAll('#runs article.run')]"
                    ".every((r) => r.dataset.status === s)",
                    arg=status,
                )
                shown = tab.page.evaluate(READ_RUNS, "runs")
                assert {r["run_id"] for r in shown} == expected
                assert (
                    tab.page.get_attribute(f"#filters button[data-status={status}]", "aria-pressed")
                    == "true"
                )
            assert all(key_sent == key for *_, key_sent in api_calls(tab)[1:])
            check_offline_and_sound(tab, width)


def test_every_page_asks_for_the_key_once_per_tab_and_sends_it_on_every_call(
    browser, keyed_api, real_history
):
    url, key = keyed_api
    with offline_tab(browser, url, 1100, 900) as tab:
        page = tab.page
        page.goto(f"{url}/runs/page")
        page.locator("#api-key-dialog[open]").wait_for()
        page.fill("#api-key-input", "not the key")
        page.click("#api-key-form button[type=submit]")
        page.locator("#api-key-refused").wait_for()  # asked again, saying why
        page.fill("#api-key-input", key)
        page.click("#api-key-form button[type=submit]")
        page.locator("#runs article.run").first.wait_for()
        asked = len(tab.calls)

        open_page(tab, url, "/selection", key, "section.country")
        page.goto(f"{url}/search_voucher")
        page.fill("#country_code", "Peru")
        page.fill("#last_order_ts", "2018-05-03")
        page.fill("#timestamp", "2018-12-01")
        page.click("#submit")  # POST /voucher: a keyed route
        page.locator("#voucher-amount").wait_for()
        assert page.locator("#api-key-dialog").count() == 0  # never asked again in this tab
        later = api_calls(tab)[-(len(tab.calls) - asked) :]
        paths = {where.split("?")[0] for _, where, _ in later}
        assert {"/selection_criteria", "/voucher"} <= paths
        assert [k for *_, k in later] == [key] * len(later), later
        keys = [k for _, where, k in api_calls(tab) if where.startswith("/runs")]
        assert keys[:2] == [None, "not the key"] and set(keys[2:]) == {key}

        other = tab.context.new_page()  # another tab: a key is kept per tab
        other.goto(f"{url}/runs/page")
        other.locator("#api-key-dialog[open]").wait_for()
        other.click("#api-key-cancel")
        other.locator("#status").filter(has_text="needs its key").wait_for()
        check_offline_and_sound(tab, 1100)
