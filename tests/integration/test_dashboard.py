"""The dashboard's environments list: a page whose script drives the REST API with the
session cookie, guarded by a CSRF token; and the same in real Chromium."""
from __future__ import annotations

import re

import httpx

from tests.support import Dev8Server, User, log_in, set_web_password, shot, unique, wait_until, web_login


def test_cookie_sessions_need_the_csrf_token_for_changes(server: Dev8Server, alice: User, bob: User):
    set_web_password(alice)
    name = unique("d")
    alice.cli("create", name)
    anon = httpx.get(server.url + "/", headers={"accept": "text/html"})
    assert anon.status_code == 303 and anon.headers["location"] == "/login?next=%2F"
    web = web_login(server, alice.email)
    home = web.get("/")
    assert home.status_code == 200 and "frame-ancestors 'none'" in home.headers["content-security-policy"]
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', home.text).group(1)  # type: ignore[union-attr]
    assert [e["name"] for e in web.get("/api/v1/environments").json()] == [name]  # reading needs no token
    # a forged cross-site POST carries the cookie but cannot know the token
    for headers in ({}, {"x-csrf-token": "0" * 64}, {"x-csrf-token": ""}):
        r = web.post(f"/api/v1/environments/{name}/stop", headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"], r.text
    assert alice.http().get(f"/environments/{name}").json()["desired_state"] == "running"  # nothing changed
    # bob's token does not fit alice's session, nor the other way round
    set_web_password(bob)
    bob_web = web_login(server, bob.email)
    bob_csrf = re.search(r'content="([0-9a-f]{64})"', bob_web.get("/").text).group(1)  # type: ignore[union-attr]
    assert web.post(f"/api/v1/environments/{name}/stop", headers={"x-csrf-token": bob_csrf}).status_code == 403
    ok = web.post(f"/api/v1/environments/{name}/stop", headers={"x-csrf-token": csrf})
    assert ok.status_code == 202 and ok.json()["desired_state"] == "stopped"
    # another user's environment: 404 through the cookie too
    assert bob_web.post(f"/api/v1/environments/{name}/start", headers={"x-csrf-token": bob_csrf}).status_code == 404
    assert bob_web.get(f"/api/v1/environments/{name}/logs").status_code == 404
    # the environment page's logs: what its services printed
    assert any("Server listening on" in line for line in web.get(f"/api/v1/environments/{name}/logs").json()["lines"])
    # the CLI's bearer tokens need no CSRF token
    assert alice.http().post(f"/environments/{name}/start").status_code == 202


def test_environments_list_updates_live_and_drives_the_lifecycle(page, server: Dev8Server, alice: User):  # type: ignore[no-untyped-def]
    set_web_password(alice)
    name = unique("l")
    alice.cli("create", name, "--repo", "https://example.invalid/org/app.git")
    assert alice.http().get(f"/environments/{name}").json()["last_used_at"] is None
    assert alice.ssh(name, "true").returncode == 0  # using it over SSH counts as use
    assert alice.http().get(f"/environments/{name}").json()["last_used_at"] is not None
    log_in(page, server, alice, "/")
    row = f"tr[data-env='{name}']"
    page.wait_for_selector(f"{row}[data-state='running']", timeout=30_000)
    assert page.inner_text(f"{row} td.repo") == "https://example.invalid/org/app.git"
    assert page.inner_text(f"{row} td[data-label='Last used']") != "—"
    shot(page, "dashboard-list")
    page.click(f"{row} button:text('Stop')")
    page.wait_for_selector(f"{row}[data-state='stopped']", timeout=60_000)
    # a change made elsewhere (the CLI) shows up without a reload, and the redraw leaves the
    # keyboard focus where it was
    page.focus(f"{row} button:text('Delete')")
    alice.cli("start", name)
    page.wait_for_selector(f"{row}[data-state='running']", timeout=60_000)
    assert page.evaluate("document.activeElement.dataset.key") == f"{name}/delete"
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "dashboard-list-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.click(f"{row} button:text('Delete')")
    dialog = page.locator("dialog#confirm-delete")
    assert dialog.is_visible() and f"Delete {name}?" in dialog.inner_text()
    shot(page, "dashboard-delete-confirm")
    page.click("dialog#confirm-delete button[value=delete]")
    page.wait_for_selector(row, state="detached", timeout=60_000)
    wait_until(lambda: name not in alice.cli("list").stdout, timeout=60, what="environment deleted")
    assert page.console_errors == []
