"""The search page in a real headless Chromium (Debian's ``chromium``, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser, local_api, published):
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    # Offline: any request that leaves the local API fails the test below.
    outside = []
    context.route("**/*", lambda route: (
        route.continue_() if route.request.url.startswith(local_api)
        else (outside.append(route.request.url), route.abort())))
    tab = context.new_page()
    problems = []  # script errors and console errors (a CSP violation is one)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.goto(f"{local_api}/search_voucher")
    yield tab
    context.close()
    assert outside == [], f"the page fetched outside resources: {outside}"
    assert [p for p in problems if "status of 400" not in p] == []


def fill(page, **fields):
    for name, value in fields.items():
        page.fill(f"#{name}", value)


def test_fill_the_form_submit_and_read_the_amount(page):
    fill(page, country_code=" peru ", last_order_ts="2018-05-03 00:00:00",
         first_order_ts="2017-05-03", timestamp="2018-12-01", customer_id="123")
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
