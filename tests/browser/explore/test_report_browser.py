"""The HTML report in a real headless Chromium: it loads offline, without a single error."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_the_report_opens_offline_without_errors(browser, sample_report):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    context.route(
        "**/*",
        lambda route: (
            requests.append(route.request.url),
            route.continue_() if route.request.url.startswith("file://") else route.abort(),
        ),
    )
    page = context.new_page()
    page.on(
        "console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type != "log" else None
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    try:
        page.goto(sample_report.html.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        headings = page.locator("h2").all_inner_texts()
        decisions = page.locator("#decisions .decision").count()
    finally:
        context.close()
    assert problems == []
    assert requests == [sample_report.html.as_uri()]  # embedded figures fetch nothing
    assert images and all(done and width > 500 and height > 200 for done, width, height in images)
    assert "Rows removed by each cleaning rule" in headings
    assert "Decisions: each finding and the rule it motivated" in headings
    assert decisions >= len(sample_report.profile["rules"]["reasons"])
