"""Browser test of the forensic console (docs/CONSOLE.md), driven by Playwright on Debian's
Chromium. Run by crates/cli/tests/console_browser.rs against a real `blackbox serve` holding a
planted incident; exits non-zero, saying why, at the first failed check.

    console_test.py URL READ_TOKEN ADMIN_TOKEN OTHER_TENANT_TOKEN ARTIFACTS_DIR AXE_JS

Screenshots of every view are written to ARTIFACTS_DIR (kept by CI as artefacts).
"""
import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

URL, READ, ADMIN, OTHER, OUT, AXE = sys.argv[1:7]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
os.makedirs(OUT, exist_ok=True)
TIMEOUT = 15_000


def shot(page, name):
    page.screenshot(path=os.path.join(OUT, f"{name}.png"), full_page=True)


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
        page.wait_for_selector(ready, timeout=TIMEOUT)
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

        # Scope: what else the agent did around it, in the timeline.
        page.click("a:has-text('What else did this agent do')")
        expect(page.locator("tbody tr").first).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("tbody")).to_contain_text("tool_call")
        expect(page.locator("tbody")).to_contain_text("block")
        shot(page, "05-timeline")

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

        # Another tenant's token sees nothing of acme.
        page.click("#signout")
        sign_in(page, OTHER)
        for view in ("#/overview", "#/timeline", "#/alerts", "#/agents"):
            page.goto(URL + "/ui" + view)
            page.wait_for_timeout(500)
            text = page.inner_text("body")
            assert "acme" not in text and "agent-7" not in text, f"{view} shows acme: {text[:400]}"
        forbidden = page.evaluate("""async (t) => (await fetch('/v1/entries?tenant_id=acme',
            {headers: {Authorization: 'Bearer ' + t}})).status""", OTHER)
        assert forbidden == 403, forbidden

        assert not [e for e in errors if "401" not in e and "403" not in e], f"console errors: {errors}"
        ctx.close()

        axe_check(browser, ADMIN, [("/overview", "section.card"), ("/alerts", "table"),
                                   ("/timeline", "tbody tr"), ("/agents", "table")])
        browser.close()
        print("console browser test: ok")


if __name__ == "__main__":
    main()
