"""MLflow's compare page and `rlreg report`'s HTML, opened in a real headless Chromium.

Starts `mlflow ui` on a loopback port against a store holding the real demo pair (demo-grpo and
demo-egpo run through `mlflow run` at a reduced size by tests/conftest.py), then:
1. `chromium --dump-dom --virtual-time-budget` on `#/compare-runs?runs=[…]&experiments=[…]`: the
   page must show both parent runs, the differing EGPO params (MLflow marks them `diff-row`) and
   `eval/accuracy_mean` for both runs (MLflow rounds to 3 significant digits);
2. `chromium --screenshot` of that page → tests/artifacts/ui_compare.png;
3. the same page driven over the DevTools protocol: the wall time until the values are rendered,
   then MLflow's "Show diff only" switches → tests/artifacts/ui_compare_diff_only.png;
4. the report HTML (file://, offline): DOM check, every embedded image decoded, screenshot.
Chromium comes from Debian's `chromium` package (scripts/system-deps.sh); without it the test skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from _servers import mlflow_ui

from analysis import report, runs

if TYPE_CHECKING:
    from typing import Self  # 3.11+; annotations are not evaluated at runtime

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,2400",
]
# The GRPO spec resolves egpo_lambda/alpha to null (they only apply to egpo estimators); parents
# log no nulls (registry.parent_view), so the GRPO column has no value for them.
EGPO_PARAMS = {"train.algorithm.adv_estimator": ("grpo", "egpo"), "train.algorithm.egpo_lambda": ("", "0.4"),
               "train.algorithm.egpo_alpha": ("", "2.0")}


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian `chromium` is not installed (scripts/system-deps.sh installs it: apt-get install -y chromium)")
    return path




@pytest.fixture(scope="module")
def ui(tmp_path_factory, demo_pair_store):
    """The real demo pair (tests/conftest.py runs demo-grpo and demo-egpo through `mlflow run`),
    served by `mlflow ui` (which ignores MLFLOW_TRACKING_URI)."""
    chromium = _chromium()
    tmp = tmp_path_factory.mktemp("ui")
    uri = demo_pair_store["uri"]
    client = demo_pair_store["client"]
    parents = {r.data.tags["rlreg.spec"]: r for r in demo_pair_store["runs"] if r.data.tags.get("rlreg.role") == "parent"}
    grpo, egpo = (SimpleNamespace(parent_id=parents[n].info.run_id) for n in ("demo-grpo", "demo-egpo"))
    with mlflow_ui(uri, tmp) as base:
        yield {"chromium": chromium, "base": base, "client": client, "grpo": grpo, "egpo": egpo, "tmp": tmp}


def _run_chromium(ui: dict, *args: str, profile: str) -> subprocess.CompletedProcess:
    return subprocess.run([ui["chromium"], *CHROMIUM_FLAGS, f"--user-data-dir={ui['tmp'] / profile}", *args],
                          capture_output=True, text=True, timeout=300, check=False)


class _Page(HTMLParser):
    """Table rows (class + cell texts) and absolutely positioned grid cells (MLflow's metric grid)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.cells: list[tuple[int, str]] = []  # (top px, text)
        self._row: list[str] | None = None
        self._row_class = ""
        self._cell: list[str] | None = None
        self._grid: list[tuple[int, list[str]] | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self._row, self._row_class = [], a.get("class") or ""
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag == "div":
            m = re.search(r"position: absolute; top: (\d+)px", a.get("style") or "")
            self._grid.append((int(m.group(1)), []) if m else None)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._row_class, self._row))
            self._row = None
        elif tag == "div" and self._grid:
            entry = self._grid.pop()
            if entry is not None:
                self.cells.append((entry[0], "".join(entry[1]).strip()))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for entry in self._grid:
            if entry is not None:
                entry[1].append(data)

    def row(self, key: str) -> tuple[str, list[str]]:
        return next((cls, cells[1:]) for cls, cells in self.rows if cells and cells[0] == key)

    def grid_values(self, key: str) -> list[float]:
        top = next(t for t, text in self.cells if text == key)
        out = []
        for t, text in self.cells:
            if t == top and re.fullmatch(r"-?[0-9.]+(e-?\d+)?", text):
                out.append(float(text))
        return out


def _three_sig(x: float) -> float:
    return float(f"{x:.3g}")


def test_mlflow_compare_page_shows_both_runs(ui):
    client, grpo, egpo = ui["client"], ui["grpo"], ui["egpo"]
    parents = [runs.get_run(client, r.parent_id) for r in (grpo, egpo)]
    url = runs.compare_page(parents, ui["base"])
    assert url == (ui["base"] + "/#/compare-runs?runs=" + urllib.parse.quote(json.dumps([grpo.parent_id, egpo.parent_id]))
                   + "&experiments=" + urllib.parse.quote(json.dumps([parents[0].experiment_id])))

    t0 = time.monotonic()
    res = _run_chromium(ui, "--virtual-time-budget=20000", "--dump-dom", url, profile="dom")
    print(f"chromium --dump-dom of the compare page: {time.monotonic() - t0:.1f} s")
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "Comparing 2 Runs" in dom
    page = _Page()
    page.feed(dom)
    for key, (left, right) in EGPO_PARAMS.items():
        cls, values = page.row(key)
        assert values == [left, right], (key, values)
        assert "diff-row" in cls  # MLflow itself flags the row as differing
    cls, values = page.row("train.rollout.n")
    assert values == ["4", "4"] and "diff-row" not in cls
    _, names = page.row("Run Name:")
    assert names == ["demo-grpo", "demo-egpo"]
    logged = [client.get_run(r.parent_id).data.metrics["eval/accuracy_mean"] for r in (grpo, egpo)]
    assert page.grid_values("eval/accuracy_mean") == [_three_sig(v) for v in logged]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ui_compare.png"
    shot.unlink(missing_ok=True)
    res = _run_chromium(ui, "--virtual-time-budget=20000", f"--screenshot={shot}", url, profile="shot")
    assert res.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG"), res.stderr[-2000:]

    # Real (not virtual) time until the values render, and MLflow's own "Show diff only" view.
    timings = asyncio.run(_devtools_compare(ui, url, ARTIFACTS / "ui_compare_diff_only.png"))
    print(f"compare page: values rendered {timings['rendered_s']:.1f} s after navigation")
    assert timings["diff_rows"] >= 3


# -- DevTools protocol (aiohttp ships with mlflow) ----------------------------------------------
async def _devtools_compare(ui: dict, url: str, shot: Path) -> dict:
    async with _DevTools(ui) as dt:
        t0 = time.monotonic()
        await dt.call("Page.navigate", url=url)
        await dt.wait_for("document.body && document.body.innerText.includes('Comparing 2 Runs') && "
                          "document.body.innerText.includes('eval/accuracy_mean') && "
                          "document.body.innerText.includes('train.algorithm.adv_estimator')")
        rendered = time.monotonic() - t0
        clicked = await dt.eval("(() => { const s = [...document.querySelectorAll('[role=switch]')]; "
                                "s.forEach(x => x.click()); return s.length; })()")
        assert clicked >= 1, "MLflow's 'Show diff only' switches were not found"
        await dt.wait_for("!document.body.innerText.includes('train.rollout.n')")
        rows = await dt.eval("[...document.querySelectorAll('tr.diff-row')].length")
        shot.write_bytes(await dt.screenshot())
        return {"rendered_s": rendered, "diff_rows": rows}


class _DevTools:
    def __init__(self, ui: dict):
        self.ui = ui
        self.ids = iter(range(1, 1_000_000))

    async def __aenter__(self) -> Self:
        import tempfile

        import aiohttp

        profile = Path(tempfile.mkdtemp(prefix="devtools-", dir=self.ui["tmp"]))  # fresh: no stale port file
        self.proc = await asyncio.create_subprocess_exec(
            self.ui["chromium"], *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "about:blank", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.2)
        port = port_file.read_text().split()[0]
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Emulation.setDeviceMetricsOverride", width=1400, height=1600, deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        await self.session.close()
        os.killpg(self.proc.pid, signal.SIGTERM)  # the browser we started, and its helpers
        await asyncio.wait_for(self.proc.wait(), timeout=20)

    async def call(self, method: str, **params):
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=120)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return msg["result"]

    async def eval(self, expression: str):
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not await self.eval(expression):
            assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
            await asyncio.sleep(0.1)

    async def screenshot(self) -> bytes:
        import base64

        return base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])


def test_report_html_in_browser(ui):
    client = ui["client"]
    rep = report.build_report(client, ["demo-grpo", "demo-egpo"])
    out = ui["tmp"] / "report.html"
    report.write_report(rep, out)
    res = _run_chromium(ui, "--virtual-time-budget=5000", "--dump-dom", out.as_uri(), profile="rdom")
    assert res.returncode == 0, res.stderr[-2000:]
    page = _Page()
    page.feed(res.stdout)
    assert page.row("train.algorithm.adv_estimator")[1] == ["grpo", "egpo"]
    acc = rep.comparison.row("eval/accuracy_mean")
    from analysis.render import fmt_cell

    assert page.row("eval/accuracy_mean")[1] == [fmt_cell(c, True) for c in acc.cells]
    decoded = asyncio.run(_devtools_images(ui, out.as_uri()))
    assert decoded == [True] * len(rep.figures)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    res = _run_chromium(ui, "--virtual-time-budget=5000", f"--screenshot={shot}", out.as_uri(), profile="rshot")
    assert res.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG")


async def _devtools_images(ui: dict, url: str) -> list[bool]:
    async with _DevTools(ui) as dt:
        await dt.call("Page.navigate", url=url)
        await dt.wait_for("document.readyState === 'complete'")
        return await dt.eval("[...document.images].map(i => i.complete && i.naturalWidth > 300)")
