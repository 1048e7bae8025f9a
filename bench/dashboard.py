"""The dashboard in headless Chromium. (1) Click "Create environment" → VS Code's
workbench showing, through the dashboard (progress view, environment page, "Open VS Code")
vs the same done by a script (REST create, wait for `ready` on the event stream, open the
VS Code URL): median of N each, the image already present, and the ratio; for scale,
the workbench of an environment already running. (2) `ready` → VS Code's page answered:
the proxy holding the request until code-server answers vs the "Starting…" page's reload
every second. (3) Page weight of each dashboard page: bytes transferred on a first load
(empty cache) and on a later visit (cached static files). Usage:
    python -m bench.dashboard [--runs 5] [--image dev8/fullstack:latest]
"""
from __future__ import annotations

import argparse
import time

import httpx

from bench.common import dev8_server, median, report, wait_ready
from tests.support import CHROMIUM, CHROMIUM_ARGS, Dev8Server, User, log_in, set_web_password, unique

PAGES = ["/", "/new", "/settings"]


def via_dashboard(page, server: Dev8Server, image: str) -> float:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/new")
    name = unique("b")
    page.fill("#f-name", name)
    page.fill("#f-image", image)
    start = time.perf_counter()
    page.click("#create-button")
    page.wait_for_url(server.url + f"/environments/{name}", timeout=300_000)
    with page.context.expect_page() as opened:
        page.click("#open-vscode")
    vscode = opened.value
    vscode.wait_for_selector(".monaco-workbench", timeout=120_000)
    elapsed = time.perf_counter() - start
    vscode.close()
    return elapsed


def open_running(page, url: str) -> float:  # type: ignore[no-untyped-def]
    """The workbench of an environment that is already up (code-server started)."""
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(".monaco-workbench", timeout=120_000)
    return time.perf_counter() - start


def via_script(page, server: Dev8Server, user: User, image: str) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    api = user.http()
    name = unique("s")
    start = time.perf_counter()
    env = api.post("/environments", json={"name": name, "image": image}).json()
    wait_ready(api, name)
    page.goto(env["vscode_url"])
    page.wait_for_selector(".monaco-workbench", timeout=120_000)
    return time.perf_counter() - start, env["vscode_url"]


def vscode_page_after_ready(server: Dev8Server, user: User, image: str, browser: httpx.Client,
                            reload_every: float | None) -> float:
    """`ready` → VS Code's page answered: one request that the proxy holds until
    code-server answers, or (``reload_every``) the "Starting…" page's way: a request that
    fails at once, again every ``reload_every`` seconds."""
    api = user.http()
    name = unique("p")
    api.post("/environments", json={"name": name, "image": image}).raise_for_status()
    url = f"/@{user.username}/{name}/apps/vscode/"  # the relay a browser gets on VS Code's own host
    wait_ready(api, name)
    start = time.perf_counter()
    accept = "application/json" if reload_every else "text/html"
    while browser.get(url, headers={"accept": accept}, timeout=60).status_code in (502, 503):
        time.sleep(reload_every or 0)
    elapsed = time.perf_counter() - start
    api.delete(f"/environments/{name}")
    return elapsed


def page_weight(context, url: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """KB transferred loading ``url`` with an empty cache, then again from another page."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.clearBrowserCache")
    sizes: list[float] = []
    cdp.on("Network.loadingFinished", lambda e: sizes.append(e["encodedDataLength"]))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    first = sum(sizes) / 1024
    page.goto("about:blank")
    sizes.clear()
    page.goto(url)
    page.wait_for_load_state("networkidle")
    cached = sum(sizes) / 1024
    page.close()
    return first, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="dev8/fullstack:latest")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    with dev8_server() as (server, user), sync_playwright() as p:
        set_web_password(user)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        log_in(page, server, user, "/")
        dashboard, script, warm = [], [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine state
            dashboard.append(via_dashboard(page, server, args.image))
            took, url = via_script(page, server, user, args.image)
            script.append(took)
            page.goto("about:blank")
            warm.append(open_running(page, url))
        report(f"click Create → VS Code workbench ({args.image}, median of {args.runs})", [
            ("through the dashboard", median(dashboard), "s"),
            ("script: REST create + events + open URL", median(script), "s"),
            ("ratio dashboard / script", median(dashboard) / median(script), "x"),
            ("for scale: workbench of a running environment", median(warm), "s")])
        held, reloaded = [], []
        browser_client = user.script()
        for _ in range(args.runs):
            held.append(vscode_page_after_ready(server, user, args.image, browser_client, None))
            reloaded.append(vscode_page_after_ready(server, user, args.image, browser_client, 1.0))
        report(f"ready → VS Code page answered (median of {args.runs})", [
            ("the proxy waits for code-server", median(held), "s"),
            ("a Starting page reloading every second", median(reloaded), "s"),
            ("ratio", median(held) / median(reloaded), "x")])
        rows = []
        for path in PAGES:
            first, cached = page_weight(context, server.url + path)
            rows += [(f"{path} first load", first, "KB"), (f"{path} cached", cached, "KB")]
        report("dashboard page weight (transferred)", rows)
        browser.close()


if __name__ == "__main__":
    main()
