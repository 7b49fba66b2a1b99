"""report.html as a person sees it: Playwright driving Debian's Chromium at a laptop's and a phone's size."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obsgap.publish import write_outputs

LAPTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

# The box of every drawn chart (its outer SVG) and of the cell it sits in, per finding card.
CHART_BOXES = """() => Array.from(document.querySelectorAll('details.finding[open] .chart-cell')).map((cell) => {
  const svg = cell.querySelector('svg.main-svg');
  const r = (e) => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  return { cell: r(cell), chart: svg ? r(svg) : null, card: cell.closest('details').id };
})"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (Debian package `chromium`); `make test` installs it", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo_page(demo_run, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    run, _ = demo_run
    out = tmp_path_factory.mktemp("browser") / "report"
    write_outputs(run.result, out)
    return out / "report.html"


class Opened:
    def __init__(self, browser: Any, page: Path, viewport: dict[str, int], fragment: str = "") -> None:
        self.context = browser.new_context(viewport=viewport)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"])
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(page.resolve().as_uri() + fragment)
        self.page.wait_for_selector("body[data-rendered='1']")
        self.data = json.loads(self.page.locator("#obsgap-data").text_content() or "{}")

    def expand_all(self) -> int:
        """Open every finding on the page; wait until each one's charts are drawn. Returns how many charts."""
        ids = self.page.eval_on_selector_all("details.finding", "ds => ds.map((d) => { d.open = true; return d.id; })")
        want = sum(len(self.data["charts"].get(i.removeprefix("finding-"), [])) for i in ids)
        self.page.wait_for_function(f"document.querySelectorAll('details.finding[open] .chart-cell svg.main-svg')"
                                    f".length >= {want}")
        self.page.wait_for_timeout(300)  # ResizeObserver callbacks, after the grid settles
        return int(want)

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.context.close()


def _inside(inner: list[float], outer: list[float], slack: float = 1.0) -> bool:
    return inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack \
        and inner[3] <= outer[3] + slack


def _overlap(a: list[float], b: list[float]) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1440x900", "390x844"])
def test_every_chart_fits_its_box(browser: Any, demo_page: Path, viewport: dict[str, int]) -> None:
    with Opened(browser, demo_page, viewport) as view:
        drawn = view.expand_all()
        assert drawn >= 10  # histograms, traffic bars and timelines of the demo's findings
        boxes = view.page.evaluate(CHART_BOXES)
        assert len([b for b in boxes if b["chart"]]) == drawn
        for b in boxes:
            assert b["chart"] is not None, b
            assert _inside(b["chart"], b["cell"]), b
            assert b["chart"][2] - b["chart"][0] >= 200, b  # drawn at its cell's size, not collapsed
        charts = [b["chart"] for b in boxes]
        for i, a in enumerate(charts):
            for c in charts[i + 1:]:
                assert not _overlap(a, c), (a, c)
        if viewport is PHONE:
            assert view.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert view.errors == []


def test_charts_follow_their_container(browser: Any, demo_page: Path) -> None:
    """A window made narrower redraws open charts at their new size."""
    with Opened(browser, demo_page, LAPTOP) as view:
        view.expand_all()
        view.page.set_viewport_size(PHONE)
        # Plotly redraws on the resize observer's callback: wait until every chart is back inside its cell
        for _ in range(60):
            boxes = view.page.evaluate(CHART_BOXES)
            if all(b["chart"] and _inside(b["chart"], b["cell"]) for b in boxes):
                break
            view.page.wait_for_timeout(250)
        for b in boxes:
            assert _inside(b["chart"], b["cell"]) and b["chart"][2] <= PHONE["width"], b
        assert view.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_first_screen_answers(browser: Any, demo_page: Path) -> None:
    with Opened(browser, demo_page, LAPTOP) as view:
        page = view.page
        status = page.locator("#run-status").bounding_box()
        first = page.locator(".top-findings li").first
        box = first.bounding_box()
        assert status is not None and box is not None
        assert status["y"] + status["height"] <= LAPTOP["height"] and box["y"] + box["height"] <= LAPTOP["height"]
        assert "Complete run" in (page.locator("#run-status").text_content() or "")
        # the first top finding is the root cause (or lone finding) whose group is the most severe and affects the
        # most traffic, shown with its fix
        findings = view.data["findings"]
        impact = view.data["impact"]  # the model's evidence.impact: requests the mesh missed, observations ...
        rank = {"critical": 3, "warning": 2, "info": 1}

        def group(f: dict[str, Any]) -> list[dict[str, Any]]:
            return [g for g in findings if g["root"] == f["id"]] or [f]

        heads = [f for f in findings if f["root"] in (None, f["id"])]
        expect = max(heads, key=lambda f: (max(rank[g["severity"]] for g in group(f)),
                                           sum(impact.get(g["id"], 0) for g in group(f))))
        assert sum(impact.get(g["id"], 0) for g in group(expect)) > 0
        link = first.locator("a.title")
        assert link.get_attribute("href") == f"#finding-{expect['id']}"
        assert expect["suggestion"]["text"] in (first.locator(".fix").text_content() or "")
        # following it opens that finding further down
        link.click()
        page.wait_for_function(f"document.getElementById('finding-{expect['id']}').open")
        # sources and checks are there, collapsed; a first run says when trends will appear
        assert page.locator("#sources-details").get_attribute("open") is None
        assert "first stored run" in (page.locator("#trends").text_content() or "")
        assert view.errors == []


def test_evidence_reads_as_words_not_json(browser: Any, demo_page: Path) -> None:
    """Evidence tables show ports as written (9000), lists and mappings as words, never raw JSON; a contract chip
    does not repeat its note."""
    with Opened(browser, demo_page, LAPTOP) as view:
        orders = next(f for f in view.data["findings"] if f["check"] == "port-missing-from-metrics"
                      and f["port"] == 9000)
        view.expand_all()
        nested = {k for f in view.data["findings"] for k, v in f["evidence"].items() if isinstance(v, dict | list)}
        cells = view.page.eval_on_selector_all("details.finding[open] table tr", """rows => rows.map((r) =>
            Array.from(r.querySelectorAll('td')).map((c) => c.textContent))""")
        shown = [c for c in cells if len(c) == 2 and c[0].replace("\u200b", "") in nested]
        assert shown and not [c for c in shown if c[1].lstrip().startswith(("{", "["))], shown
        ports = view.page.eval_on_selector_all(f"#finding-{orders['id']} table tr", """rows => rows.map((r) =>
            Array.from(r.querySelectorAll('td')).map((c) => c.textContent)).filter((c) => c[0] === 'port')""")
        assert ports == [["port", "9000"]]
        # a count axis has whole ticks from zero: never 1.5 or -0.27
        axes = view.page.evaluate("""() => Array.from(document.querySelectorAll('details.finding .js-plotly-plot'))
            .filter((d) => d.data.every((t) => (t.y || []).every((v) => v === null || Number.isInteger(v))))
            .map((d) => [d._fullLayout.yaxis.tickformat, d._fullLayout.yaxis.range[0],
                         Array.from(d.querySelectorAll('.ytick text')).map((t) => t.textContent)])""")
        assert axes and all(fmt == ",d" and low >= 0 for fmt, low, _ in axes), axes
        assert not [t for _, _, ticks in axes for t in ticks if "." in t or t.startswith(("-", "−"))]
        assert all(len(ticks) == len(set(ticks)) for _, _, ticks in axes), axes  # no 240, 240, 241
        # a symptom's card names the finding whose cause explains it, linked
        symptom = next(f for f in view.data["findings"] if f["root"] not in (None, f["id"]))
        explained = view.page.locator(f"#finding-{symptom['id']} .explained a")
        assert explained.get_attribute("href") == f"#finding-{symptom['root']}"
        chips = view.page.eval_on_selector_all("#contract-table .chip", "cs => cs.map((c) => c.textContent)")
        assert chips and not [c for c in chips if "pod-ip" in c and c.count("pod-ip") > 1]


def test_empty_mesh_series_said_in_words(browser: Any, demo_page: Path) -> None:
    with Opened(browser, demo_page, LAPTOP) as view:
        charts = view.data["charts"]
        silent = [i for i, cs in charts.items()
                  if any(c["kind"] == "lines" and len(c["lines"]) == 1 for c in cs)]
        assert silent, "the demo has services whose every request bypasses Envoy"
        view.expand_all()
        for i in silent:
            card = view.page.locator(f"#finding-{i}")
            assert "the mesh counted nothing" in (card.text_content() or "")
            # its timeline holds the logged line only: no empty trace for the axis to zoom on
            traces = view.page.evaluate(f"""() => Array.from(document.querySelectorAll('#finding-{i} .js-plotly-plot'))
                .filter((d) => d.data.some((t) => t.type === 'scatter')).map((d) => d.data.length)""")
            assert traces == [1]


def test_each_copy_button_copies_its_snippet(browser: Any, demo_page: Path) -> None:
    with Opened(browser, demo_page, LAPTOP) as view:
        view.expand_all()
        snippets = view.data["snippets"]
        assert any(len(s) >= 3 for s in snippets.values()), "histogram findings offer several config forms"
        checked = 0
        for i in snippets:
            buttons = view.page.locator(f"#finding-{i} button.copy")
            assert buttons.count() == len(snippets[i])
            for k, snip in enumerate(snippets[i]):
                buttons.nth(k).click()
                got = view.page.evaluate("navigator.clipboard.readText()")
                assert got == snip["text"]
                assert got.count("\n\n") == snip["text"].count("\n\n")  # one form, not the block of all
                checked += 1
        assert checked == sum(len(s) for s in snippets.values()) >= 10
        assert view.errors == []


def test_hostile_strings_stay_inert(browser: Any, tmp_path: Path) -> None:
    from tests.test_report import hostile_report

    page = tmp_path / "report.html"
    page.write_text(hostile_report())
    for viewport in (LAPTOP, PHONE):
        with Opened(browser, page, viewport, "#expand") as view:
            view.expand_all()
            assert view.page.title().startswith("obsgap report")
            assert view.page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
            assert view.page.evaluate("Array.from(document.querySelectorAll('*')).filter((e) => "
                                      "Array.from(e.attributes).some((a) => a.name.startsWith('on'))).length") == 0
            assert view.page.evaluate("document.querySelectorAll('script').length") == 3
            assert view.page.locator("details.finding").count() == 6
            assert view.errors == []
            if viewport is PHONE:
                assert view.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
