"""Browser test of the forensic console (docs/CONSOLE.md), driven by Playwright on Debian's
Chromium. Run by crates/cli/tests/console_browser.rs against a real `blackbox serve` holding a
planted incident; exits non-zero, saying why, at the first failed check.

    console_test.py URL READ_TOKEN ADMIN_TOKEN OTHER_TENANT_TOKEN ARTIFACTS_DIR AXE_JS

Screenshots of every view are written to ARTIFACTS_DIR (kept by CI as artefacts).
"""
import csv
import io
import json
import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

URL, READ, ADMIN, OTHER, OUT, AXE = sys.argv[1:7]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
os.makedirs(OUT, exist_ok=True)
TIMEOUT = 15_000


def shot(page, name):
    page.screenshot(path=os.path.join(OUT, f"{name}.png"), full_page=True)
    # A part a view leaves out must not be written as the text "null" or "undefined".
    text = page.inner_text("body")
    stray = [w for w in ("null", "undefined") if re.search(rf"(^|\n){w}(\n|$)", text)]
    assert not stray, f"{name}: the view shows {stray}"


def sign_in(page, token):
    page.goto(URL + "/ui")
    page.fill("#token", token)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#nav")).to_be_visible(timeout=TIMEOUT)


def axe_check(browser, token, views):
    """No serious or critical axe-core violation on any view (a context that lets the test
    inject axe; the console's own policy forbids injected scripts)."""
    ctx = browser.new_context(bypass_csp=True)
    page = ctx.new_page()
    sign_in(page, token)
    for view, ready in views:
        page.goto(URL + "/ui#" + view)
        try:
            page.wait_for_selector(ready, timeout=TIMEOUT)
        except Exception as e:
            raise AssertionError(f"axe: {view} never showed {ready}: {page.inner_text('body')[:600]}") from e
        page.add_script_tag(path=AXE)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"axe on {view}: " + json.dumps(
            [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]} for v in bad])
    ctx.close()


PAGE = []


def main():
    with sync_playwright() as p:
        try:
            run(p)
        except BaseException:
            # What the page showed when a check failed, for the test's report.
            for page in PAGE:
                try:
                    print("page " + page.url + ":\n" + page.inner_text("body")[:3000], file=sys.stderr)
                    shot(page, "failure")
                except Exception as e:  # the page may be gone
                    print(f"(page unreadable: {e})", file=sys.stderr)
            raise


def run(p):
    if True:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        PAGE.append(page)
        urls = []
        page.on("request", lambda r: urls.append(r.url))
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        # Sign in: a wrong token is refused with a clear message.
        page.goto(URL + "/ui")
        expect(page.locator("#signin")).to_be_visible(timeout=TIMEOUT)
        page.fill("#token", "bbx_0000000000000000_" + "A" * 43)
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#signin-error")).to_contain_text("not valid", timeout=TIMEOUT)
        shot(page, "01-sign-in")
        sign_in(page, READ)

        # Overview: the tenant, its alert and the checkpoint.
        card = page.locator("section.card", has_text="acme")
        expect(card).to_be_visible(timeout=TIMEOUT)
        expect(card).to_contain_text("Open alerts")
        expect(card).to_contain_text("1 paused")
        page.click("section.card button:has-text('Verify now')")
        expect(card.locator("p.ok")).to_contain_text("Verified", timeout=TIMEOUT)
        # The witness cosigned the chain: the card, the verification and the witnesses' table.
        expect(card).to_contain_text("Witnessed")
        expect(card).to_contain_text("(quorum 1 of 1): witness.test/console")
        expect(card.locator("p.ok")).to_contain_text("witnessed up to", timeout=TIMEOUT)
        witnesses = page.locator("section[aria-label='Witnesses']")
        expect(witnesses).to_contain_text("Witnesses (quorum 1 of 1)")
        expect(witnesses.locator("tbody tr")).to_have_count(1)
        expect(witnesses.locator("tbody tr")).to_contain_text("witness.test/console")
        expect(witnesses.locator("tbody tr")).to_contain_text("acme:")
        shot(page, "02-overview")

        # Alerts: the planted injection, and no triage for a read token.
        page.click("nav a[href='#/alerts']")
        row = page.locator("tr", has_text="prompt_injection")
        expect(row.first).to_be_visible(timeout=TIMEOUT)
        assert page.locator("button:has-text('Resolve')").count() == 0, "read token sees Resolve"
        shot(page, "03-alerts")

        # From the alert to its entry, and the proof checked in the browser.
        row.first.locator("a:has-text('alert entry')").click()
        expect(page.locator("#proof-verdict")).to_have_text("✓ Verified in your browser", timeout=TIMEOUT)
        expect(page.locator("dl.fields")).to_contain_text("the service itself")
        shot(page, "04-entry")
        entry_hash = page.url
        # The alert names the call that triggered it: that entry is the agent's, refused.
        page.locator("p", has_text="Triggered by").locator("a").first.click()
        expect(page.locator("dl.fields")).to_contain_text("via decide", timeout=TIMEOUT)
        expect(page.locator("#proof-verdict")).to_have_text("✓ Verified in your browser", timeout=TIMEOUT)
        page.goto(entry_hash)
        expect(page.locator("#proof-verdict")).to_be_visible(timeout=TIMEOUT)

        # Incident scope: what else the agent did around it, counted, as CSV and as a slice
        # verified in the browser (then again offline by the Rust test).
        page.click("nav[aria-label='Incident scope'] a:has-text('this agent')")
        expect(page.locator("#scope-total")).to_contain_text("entries", timeout=TIMEOUT)
        tools = page.locator("section.card", has_text="Tools called")
        expect(tools).to_contain_text("send_email")
        expect(tools).to_contain_text("search_kb")
        expect(page.locator("section.card", has_text="Decisions")).to_contain_text("block")
        expect(page.locator("section.card", has_text="Alerts by rule")).to_contain_text("prompt_injection")
        with page.expect_download(timeout=TIMEOUT) as dl:
            page.click("button:has-text('Download CSV')")
        rows = list(csv.reader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
        assert len(rows) > 2 and all("agent-7" in r for r in rows[1:]), rows[:3]
        with page.expect_download(timeout=TIMEOUT) as dl:
            page.click("button:has-text('Verify and download a log slice')")
        expect(page.locator("#slice-verdict")).to_have_text("✓ Slice verified in your browser", timeout=TIMEOUT)
        dl.value.save_as(os.path.join(OUT, "agent-7.slice.json"))
        shot(page, "05-scope")

        # A slice tampered by a test double is refused in the browser.
        def tamper_slice(route):
            resp = route.fetch()
            doc = resp.json()
            doc["entries"][0]["entry"] = doc["entries"][0]["entry"].replace("agent-7", "agent-8", 1)
            route.fulfill(response=resp, body=json.dumps(doc))
        page.route("**/v1/proofs/slice*", tamper_slice)
        with page.expect_download(timeout=TIMEOUT):
            page.click("button:has-text('Verify and download a log slice')")
        expect(page.locator("#slice-verdict")).to_contain_text("Not verified", timeout=TIMEOUT)
        page.unroute("**/v1/proofs/slice*")

        # The timeline: agents as lanes, zoomed to an hour around the incident.
        page.goto(entry_hash)
        expect(page.locator("#proof-verdict")).to_be_visible(timeout=TIMEOUT)
        page.click("a:has-text('every agent, same hour')")
        expect(page.locator("tbody tr").first).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("tbody")).to_contain_text("tool_call")
        expect(page.locator("tbody")).to_contain_text("block")
        expect(page.locator("canvas.lanes")).to_be_visible()
        page.click("button:has-text('1 minute')")
        page.wait_for_function("""() => { const p = new URLSearchParams(location.hash.split('?')[1]);
            return Date.parse(p.get('end')) - Date.parse(p.get('start')) === 60000; }""", timeout=TIMEOUT)
        expect(page.locator("#timeline-status")).to_contain_text("loaded", timeout=TIMEOUT)
        shot(page, "05-timeline")
        # An LLM call linked to the tool call it caused, by trace and span.
        page.goto(URL + "/ui#/timeline?trace_id=4bf92f3577b34da6a3ce929d0e0e4736")
        expect(page.locator("tbody tr")).to_have_count(2, timeout=TIMEOUT)
        expect(page.locator("tbody")).to_contain_text("under #")

        # Measures: a 10,000-entry session's timeline, and the overview.
        page.goto(URL + "/ui#/overview")
        expect(page.locator("section.card").first).to_be_visible(timeout=TIMEOUT)
        page.goto(URL + "/ui#/timeline?session_id=s-big")
        page.wait_for_selector("#timeline-status[data-render-ms]", timeout=30_000)
        status = page.locator("#timeline-status").inner_text()
        assert "10,000 entries loaded" in status, status
        timeline_ms = int(page.get_attribute("#timeline-status", "data-render-ms"))
        t0 = time.perf_counter()
        page.goto(URL + "/ui#/overview")
        page.reload()
        expect(page.locator("section.card").first).to_be_visible(timeout=TIMEOUT)
        overview_ms = round((time.perf_counter() - t0) * 1000)
        with open(os.path.join(OUT, "measures.json"), "w", encoding="utf-8") as f:
            json.dump({"session_timeline_10k_ms": timeline_ms, "overview_reload_ms": overview_ms}, f)
        print(f"measure: session timeline of 10,000 entries {timeline_ms} ms; overview (page reload) {overview_ms} ms")

        # Rules in force and their history.
        page.click("nav a[href='#/rules']")
        expect(page.locator("table").first).to_contain_text("prompt_injection", timeout=TIMEOUT)
        expect(page.locator("#rules-history")).to_contain_text("in force")
        shot(page, "09-rules")

        # Exports with a read token: a report; no bundle (it needs an admin token).
        page.click("nav a[href='#/exports']")
        page.select_option("#x-format", "json")
        page.click("form button:has-text('Generate report')")
        expect(page.locator("#export-status")).to_contain_text("Completeness", timeout=60_000)
        with page.expect_download(timeout=TIMEOUT) as dl:
            page.click("#export-status button:has-text('soc2-report.json')")
        report = json.load(open(dl.value.path(), encoding="utf-8"))
        assert "prompt_injection" in json.dumps(report), "the report's alert register misses the alert"
        assert page.locator("button:has-text('evidence bundle')").count() == 0, "read token sees the bundle"
        shot(page, "10-exports")

        # A tampered proof (served by a test double in place of the service's) fails.
        def tamper(route):
            resp = route.fetch()
            doc = resp.json()
            h = doc["hashes"][0] if doc["hashes"] else None
            if h:
                doc["hashes"][0] = ("B" if h[0] != "B" else "C") + h[1:]
            else:
                doc["entry_hash"] = "sha256:" + "0" * 64
            route.fulfill(response=resp, body=json.dumps(doc))
        page.route("**/v1/proofs/inclusion*", tamper)
        page.goto(entry_hash)
        page.reload()
        expect(page.locator("#proof-verdict")).to_contain_text("Not verified", timeout=TIMEOUT)
        shot(page, "06-entry-tampered")
        page.unroute("**/v1/proofs/inclusion*")

        # Agents: the paused one, no action for a read token.
        page.click("nav a[href='#/agents']")
        expect(page.locator("tbody")).to_contain_text("paused", timeout=TIMEOUT)
        assert page.locator("button:has-text('Resume')").count() == 0, "read token sees Resume"
        shot(page, "07-agents")

        # The token never travels in a URL.
        leaked = [u for u in urls if READ in u or READ.split("_")[-1] in u]
        assert not leaked, f"token in a URL: {leaked}"

        # An admin resolves the alert.
        page.click("#signout")
        sign_in(page, ADMIN)
        page.click("nav a[href='#/alerts']")
        row = page.locator("tr", has_text="prompt_injection").first
        expect(row).to_be_visible(timeout=TIMEOUT)
        row.locator("input").fill("INC-1234")
        row.locator("select").select_option("true_positive")
        row.locator("button:has-text('Resolve')").click()
        expect(page.locator("tr", has_text="prompt_injection").first).to_contain_text("resolved", timeout=TIMEOUT)
        shot(page, "08-alert-resolved")
        # An admin token (no tenant of its own) checks the same proof.
        page.locator("tr", has_text="prompt_injection").first.locator("a:has-text('alert entry')").click()
        expect(page.locator("#proof-verdict")).to_have_text("✓ Verified in your browser", timeout=TIMEOUT)
        # An admin downloads an evidence bundle (the Rust test re-performs it offline).
        page.click("nav a[href='#/exports']")
        with page.expect_download(timeout=60_000) as dl:
            page.click("button:has-text('evidence bundle')")
        expect(page.locator("#bundle-done")).to_be_visible(timeout=TIMEOUT)
        dl.value.save_as(os.path.join(OUT, "bundle.tar"))

        # Another tenant's token sees nothing of acme.
        page.click("#signout")
        sign_in(page, OTHER)
        for view in ("#/overview", "#/timeline", "#/alerts", "#/agents", "#/rules", "#/exports"):
            page.goto(URL + "/ui" + view)
            page.wait_for_timeout(500)
            text = page.inner_text("body")
            assert "acme" not in text and "agent-7" not in text, f"{view} shows acme: {text[:400]}"
        # Asking for acme's agent by name (the page repeats the name asked for) finds nothing.
        page.goto(URL + "/ui#/scope?agent_id=agent-7&window=7d")
        expect(page.locator("#scope-total")).to_contain_text("0 entries", timeout=TIMEOUT)
        assert "acme" not in page.inner_text("body")
        forbidden = page.evaluate("""async (t) => (await fetch('/v1/entries?tenant_id=acme',
            {headers: {Authorization: 'Bearer ' + t}})).status""", OTHER)
        assert forbidden == 403, forbidden

        assert not [e for e in errors if "401" not in e and "403" not in e], f"console errors: {errors}"
        ctx.close()

        axe_check(browser, ADMIN, [("/overview", "section.card"), ("/alerts", "table"),
                                   ("/timeline", "tbody tr"), ("/agents", "table"), ("/rules", "table"),
                                   ("/exports", "#x-standard"), ("/scope?agent_id=agent-7&window=7d", "#scope-total")])
        browser.close()
        print("console browser test: ok")


if __name__ == "__main__":
    main()
