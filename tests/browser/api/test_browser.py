"""The search page in a real headless Chromium (Debian's ``chromium``, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.runs import USAGE_TOP_AMOUNTS
from tests.helpers import SCREENSHOTS, offline_tab

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser, local_api, published):
    # Offline: any request that leaves the local API fails the test below.
    with offline_tab(browser, local_api) as tab:
        tab.page.goto(f"{local_api}/search_voucher")
        yield tab.page
    outside, problems = tab.outside, tab.problems
    assert outside == [], f"the page fetched outside resources: {outside}"
    assert [p for p in problems if "status of 400" not in p] == []


def fill(page, **fields):
    for name, value in fields.items():
        page.fill(f"#{name}", value)


def test_fill_the_form_submit_and_read_the_amount(page):
    fill(
        page,
        country_code=" peru ",
        last_order_ts="2018-05-03 00:00:00",
        first_order_ts="2017-05-03",
        timestamp="2018-12-01",
        customer_id="123",
    )
    page.select_option("#segment_name", "recency_segment")
    page.click("#submit")
    amount = page.locator("#voucher-amount")
    amount.wait_for()
    assert amount.inner_text() == "2640"
    assert "segment 180+ of recency_segment" in page.locator("#result").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "search_voucher_answer.png"), full_page=True)


def test_an_error_is_shown_with_its_field_marked(page):
    page.select_option("#segment_name", "frequent_segment")
    fill(page, total_orders="-3")
    page.click("#submit")
    message = page.locator("#error-message")
    message.wait_for()
    assert "total_orders cannot be negative" in message.inner_text()
    assert page.get_attribute("#total_orders", "aria-invalid") == "true"
    page.screenshot(path=str(SCREENSHOTS / "search_voucher_error.png"), full_page=True)


def test_the_criteria_table_lists_every_published_country(page):
    page.locator("section.country").first.wait_for()
    assert page.locator("section.country h3").all_inner_texts() == ["China", "Latvia", "Peru"]
    latvia = page.locator("section.country").nth(1).inner_text()
    assert "no history" in latvia and "7.5" in latvia


def test_a_list_pasted_as_csv_is_answered_and_downloaded(page):
    page.fill(
        "#list-csv",
        "customer_id,last_order_ts,total_orders,segment_name,country_code\n"
        '1,2018-05-03,,,\n2,,3,frequent_segment,"Latvia"\n3,,-1,frequent_segment,\n',
    )
    page.fill("#list-timestamp", "2018-12-01")
    page.click("#list-submit")
    page.locator("#list-table").wait_for()
    rows = [page.locator("tr.list-row").nth(i).inner_text() for i in range(3)]
    assert "2640" in rows[0] and "recency_segment 180+" in rows[0]
    assert "5" in rows[1] and "frequent_segment 0-4" in rows[1]
    assert "impossible_value" in rows[2]
    assert "3 customers: 2 answered, 1 refused" in page.locator("#list-summary").inner_text()
    with page.expect_download() as download:
        page.click("#list-download")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("row,customer_id,country_code,segment_name,segment,voucher_amount")
    assert lines[1].split(",")[:6] == ["1", "1", "Peru", "recency_segment", "180+", "2640"]
    assert lines[3].split(",")[-2] == "impossible_value"
    page.screenshot(path=str(SCREENSHOTS / "search_voucher_list.png"), full_page=True)


def test_a_list_uploaded_as_a_file_is_answered(page, tmp_path):
    upload = tmp_path / "customers.csv"
    upload.write_text("customer_id,last_order_ts\n7,2018-05-03\n")
    page.set_input_files("#list-file", str(upload))
    page.wait_for_function("document.getElementById('list-csv').value.includes('2018-05-03')")
    page.fill("#list-timestamp", "2018-12-01")
    page.click("#list-submit")
    page.locator("tr.list-row").first.wait_for()
    assert "2640" in page.locator("tr.list-row").first.inner_text()


def test_the_selection_page_draws_the_other_bucket_and_says_when_usage_is_missing(
    browser, local_api, published_with_usage
):
    """Peru's segment 180+ uses more amounts than the limit: the last bar sums the rest; Latvia
    is served by a run from before usage was recorded: no chart, and why."""
    with offline_tab(browser, local_api) as tab:
        tab.page.goto(f"{local_api}/selection#peru")
        card = tab.page.locator("article[data-segment='180+']")
        card.locator("g.bar").first.wait_for()
        bars = card.locator("g.bar")
        amounts = [bars.nth(i).get_attribute("data-amount") for i in range(bars.count())]
        assert amounts == [
            "2640",
            "4400",
            *(str(100 + i) for i in range(USAGE_TOP_AMOUNTS - 2)),
        ] + ["other"]
        other = bars.last
        assert other.get_attribute("data-rows") == "2"
        assert other.locator("text.label").text_content() == "+2 more"
        assert bars.first.get_attribute("data-chosen") == "true"
        assert "2 other amounts: 2 rows" in card.locator("svg.usage desc").text_content()
        tab.page.click("#countries button[data-country=latvia]")
        latvia = tab.page.locator("section.country[data-country=latvia]")
        latvia.wait_for()
        assert latvia.locator("svg.usage").count() == 0
        assert "published before the usage behind each choice was recorded" in latvia.inner_text()
    assert tab.outside == [] and tab.problems == []
