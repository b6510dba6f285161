"""The static website of the executed workbook: built with Sphinx + myst-nb from the notebooks
the notebook test executed (or by executing them here), then opened from plain files in headless
Chromium: every notebook has its page, its plots as pictures, no error output, a table of
contents, previous/next links and the banner."""

from __future__ import annotations

from pathlib import Path

import pytest

from natsdemo.workbook import site
from tests.conftest import ROOT, run_cli
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, executed_notebooks: Path) -> Path:
    return site.build(tmp_path_factory.mktemp("site"), executed=executed_notebooks)


def test_every_notebook_has_a_page_with_its_plots_and_no_errors(built: Path):
    from playwright.sync_api import sync_playwright

    names = [p.stem for p in site.notebooks()]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(built.as_uri())
            toc = page.eval_on_selector_all("nav a.reference.internal", "els => els.map(e => e.getAttribute('href'))")
            assert all(any(n in (h or "") for h in toc) for n in names), toc
            for i, name in enumerate(names):
                path = built.parent / f"{name}.html"
                assert path.exists(), name
                page.goto(path.as_uri())
                assert page.locator("main .output.traceback").count() == 0, f"{name} shows an error output"
                assert "Traceback (most recent call last)" not in page.inner_text("main"), name
                pictures = page.eval_on_selector_all(
                    "main .cell_output img", "els => els.filter(e => e.complete && e.naturalWidth > 100).length")
                assert pictures >= 1, f"{name}: no plot pictures"
                assert "interactive only in JupyterLab" in page.inner_text("body"), "banner"
                nxt = page.locator("a.right-next")
                if i + 1 < len(names):
                    assert names[i + 1] in (nxt.get_attribute("href") or ""), name
                if i == 3:
                    page.screenshot(path=str(ROOT / "tests" / "artifacts" / f"site-{name}.png"), full_page=False)
        finally:
            browser.close()


def test_the_site_command_refuses_an_output_that_is_a_file(tmp_path: Path):
    f = tmp_path / "taken"
    f.write_text("x")
    out = run_cli("site", "--out", str(f), timeout=60)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out.stderr
