// The dashboard in a real browser (Debian's chromium, driven by playwright-core), against a
// daemon the Rust test (tests/web.rs) started with these services:
//   web     candor-zoo healthy                      -> restarted from the page
//   dying   candor-zoo handler-dead behind a probe  -> turns unhealthy while the page is open
//   talker  a numbered line every 200 ms            -> its log tail follows
// usage: node dashboard.mjs URL_WITH_TOKEN [SCREENSHOT_DIR]
import { chromium } from "playwright-core";
import { join } from "node:path";

const [url, shots] = process.argv.slice(2);
const base = new URL(url).origin;
const T = 30_000;
const step = (what) => console.log(`ok: ${what}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  // playwright-core gives each launch a fresh profile dir of its own (--user-data-dir).
});
try {
  // Without the token: refused.
  const stranger = await browser.newContext();
  const refused = await stranger.request.get(`${base}/`);
  if (refused.status() !== 401) throw new Error(`without the token the page answered ${refused.status()}`);
  if (!(await refused.text()).includes("candor web")) throw new Error("the refusal does not say how to get in");
  await stranger.close();
  step("a request without the token is refused (401)");

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  if (new URL(page.url()).search.includes("token")) throw new Error(`the token stayed in the address bar: ${page.url()}`);
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations += 1; });
  const row = (name) => page.locator(`tr[data-name="${name}"]`);
  await row("web").locator(".state", { hasText: "running" }).waitFor({ timeout: T });
  step("the board shows web running");

  // A handler that dies while the page is open: unhealthy, with its reason, no reload.
  await row("dying").locator(".state", { hasText: "unhealthy" }).waitFor({ timeout: T });
  const reason = await row("dying").locator("td.reason").innerText();
  if (!reason.includes("connection closed before response")) throw new Error(`dying's reason: ${reason}`);
  if (navigations !== 0) throw new Error(`the page reloaded ${navigations} times`);
  step(`dying turned unhealthy live: "${reason.split("\n")[0]}"`);

  // Restart web from the page (confirmed), and see its new pid.
  const pidCell = row("web").locator("td").nth(4);
  const oldPid = (await pidCell.innerText()).trim();
  await row("web").click();
  await page.locator("#d-name", { hasText: "web" }).waitFor({ timeout: T });
  page.once("dialog", (d) => d.accept());
  await page.locator('button[data-action="restart"]').click();
  await page.waitForFunction(
    ([old]) => {
      const tr = document.querySelector('tr[data-name="web"]');
      const pid = tr && tr.querySelectorAll("td")[4].textContent.trim();
      return tr && pid !== old && pid !== "-" && tr.querySelector(".state").textContent === "running";
    },
    [oldPid],
    { timeout: T },
  );
  const newPid = (await pidCell.innerText()).trim();
  step(`restart from the page: pid ${oldPid} -> ${newPid}`);

  // Keyboard: focus talker's row, Enter selects it; its log lines follow as they are written.
  await row("talker").focus();
  await page.keyboard.press("Enter");
  await page.locator("#d-name", { hasText: "talker" }).waitFor({ timeout: T });
  const lastNumber = async () => {
    const text = await page.locator("#d-logs").innerText();
    const nums = [...text.matchAll(/line (\d+)/g)].map((m) => Number(m[1]));
    return nums.length ? Math.max(...nums) : -1;
  };
  await page.waitForFunction(() => /line \d+/.test(document.getElementById("d-logs").textContent), null, { timeout: T });
  const first = await lastNumber();
  await page.waitForFunction(
    ([n]) => [...document.getElementById("d-logs").textContent.matchAll(/line (\d+)/g)].some((m) => Number(m[1]) >= n + 3),
    [first],
    { timeout: T },
  );
  step(`talker's log follows: line ${first} then line ${await lastNumber()} without a reload`);
  // grep narrows the tail.
  await page.fill("#grep", "line 1$");
  await page.waitForFunction(() => {
    const t = document.getElementById("d-logs").textContent.trim();
    return t && t.split("\n").every((l) => / line 1$/.test(l));
  }, null, { timeout: T });
  step("grep narrows the log tail");
  await page.fill("#grep", "");

  // No shared cause on this board: no banner.
  if (await page.locator("#causes").isVisible()) throw new Error(`a banner without a shared cause: ${await page.locator("#causes").innerText()}`);

  // Shared causes and held restarts as the API says them: this board with a cause added to
  // two services (one held), pushed to a page of its own, shows one banner for the target and
  // marks only the held service.
  const board = await (await ctx.request.get(`${base}/v1/services`)).json();
  const cause = (since) => ({ target: "127.0.0.1:8000", services: 2, since });
  const faked = board.map((s) => s.name === "dying"
    ? { ...s, shared_cause: cause("2026-12-07T14:02:11Z"), restart_held: "shared cause" }
    : s.name === "web" ? { ...s, shared_cause: cause("2026-12-07T14:02:30Z") } : s);
  const shared = await ctx.newPage();
  shared.on("pageerror", (e) => errors.push(String(e)));
  await shared.route(/\/v1\/services\?follow=true$/, (r) =>
    r.fulfill({ status: 200, contentType: "text/event-stream", body: `data: ${JSON.stringify(faked)}\n\n` }));
  await shared.goto(`${base}/`);
  const banner = "shared cause: 2 services failing probes of 127.0.0.1:8000 since 14:02:11 UTC; restarts of 1 of them held until it recovers";
  await shared.locator("#causes p", { hasText: banner }).waitFor({ timeout: T });
  if ((await shared.locator("#causes p").count()) !== 1) throw new Error(`one banner per target: ${await shared.locator("#causes").innerText()}`);
  await shared.locator('tr[data-name="dying"].held .held-mark', { hasText: "restart held: shared cause" }).waitFor({ timeout: T });
  if (await shared.locator('tr[data-name="web"] .held-mark').count()) throw new Error("web is marked held, but only its cause is shared");
  if (shots) await shared.screenshot({ path: join(shots, "dashboard-shared-cause.png") });
  await shared.close();
  step("a shared cause shows as one banner per target and the held service is marked");

  if (errors.length) throw new Error(`script errors on the page: ${errors.join("; ")}`);
  if (shots) {
    await row("dying").click();
    await page.waitForTimeout(1500);
    await page.screenshot({ path: join(shots, "dashboard.png") });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(shots, "dashboard-phone.png"), fullPage: false });
    step(`screenshots in ${shots}`);
  }
  await ctx.close();
} finally {
  await browser.close();
}
