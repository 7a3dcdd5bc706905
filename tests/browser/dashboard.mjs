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

// With nothing selected, the table spans the window: its right edge inside it, no column
// behind a scroll bar (of the board or of the page), every heading in view; each row's reason
// in it once (a service's own STATUS= text is part of its reason while it runs: not again).
async function checkFullWidth(page) {
  const m = await page.evaluate(() => {
    const board = document.getElementById("board");
    const table = board.querySelector("table");
    const page = document.scrollingElement;
    const reasons = [...document.querySelectorAll("#rows tr[data-name]:not([hidden])")].map((tr) => {
      const s = st.services.find((x) => x.name === tr.dataset.name);
      const text = tr.innerText;
      const times = (t) => (t ? text.split(t).length - 1 : 1);
      return { name: s.name, reason: times(s.reason), status: times(s.status_text) };
    });
    return {
      selected: !document.getElementById("detail").hidden,
      width: window.innerWidth,
      right: table.getBoundingClientRect().right,
      board: [board.scrollWidth, board.clientWidth],
      page: [page.scrollWidth, page.clientWidth],
      headings: [...table.querySelectorAll("th")].filter((th) => th.getBoundingClientRect().right > window.innerWidth).map((th) => th.textContent),
      reasons,
    };
  });
  const fail = (what) => { throw new Error(`${what}: ${JSON.stringify(m)}`); };
  if (m.selected) fail("a service is selected");
  if (m.right > m.width) fail("the table ends past the window");
  if (m.board[0] > m.board[1]) fail("the board scrolls sideways");
  if (m.page[0] > m.page[1]) fail("the page scrolls sideways");
  if (m.headings.length) fail(`columns out of view: ${m.headings.join(", ")}`);
  const twice = m.reasons.filter((r) => r.reason !== 1 || r.status !== 1);
  if (twice.length) fail(`a reason or status not shown once: ${JSON.stringify(twice)}`);
  return m;
}

// Every replicated service on the page's board (`st.services`, from the daemon or faked):
// its row, then the row of its rollout (instance by instance, each one's generation marked
// old or new, and why it halted said once) while one is under way or halted, then its
// instances, by index, indented; its toggle hides and shows them. Returns how many groups
// it checked (0 on a board without any).
async function checkGroups(page) {
  const groups = await page.evaluate(() => st.services.filter((s) => s.replicas).map((s) => s.name));
  for (const name of groups) {
    const g = await page.evaluate((name) => {
      const s = st.services.find((x) => x.name === name);
      const index = (n) => { const m = /@(\d+)$/.exec(n); return m ? Number(m[1]) : Infinity; };
      const rows = [...document.querySelectorAll("#rows tr")];
      const at = rows.findIndex((tr) => tr.dataset.name === name);
      const after = rows.slice(at + 1);
      const rollout = after[0] && after[0].dataset.rolloutOf === name ? after.shift() : null;
      const shown = [];
      while (after.length && after[0].dataset.group === name) shown.push(after.shift());
      const pad = (tr) => parseFloat(getComputedStyle(tr.cells[0]).paddingLeft);
      return {
        found: at >= 0 && rows[at].classList.contains("group"),
        state: rows[at] && rows[at].querySelector(".state").textContent,
        wantState: s.state,
        reason: s.reason,
        instances: shown.map((tr) => tr.dataset.name),
        want: st.services.filter((x) => x.group === name && x.name !== name).map((x) => x.name).sort((a, b) => index(a) - index(b)),
        indented: shown.every((tr) => pad(tr) > pad(rows[at])),
        rollout: s.replicas.rollout,
        rolloutText: rollout ? rollout.innerText : null,
        chips: rollout ? [...rollout.querySelectorAll(".inst")].map((c) => [c.dataset.instance, c.classList.contains("new") ? "new" : "old"]) : [],
        board: document.getElementById("rows").innerText,
      };
    }, name);
    const fail = (what) => { throw new Error(`group ${name}: ${what}: ${JSON.stringify(g)}`); };
    if (!g.found) fail("no group row");
    if (g.state !== g.wantState) fail("its state is not the group's");
    if (JSON.stringify(g.instances) !== JSON.stringify(g.want)) fail("instances not right under it by index");
    if (!g.indented) fail("instances not indented");
    const r = g.rollout;
    if (r && r.state !== "done") {
      if (g.rolloutText == null) fail("no rollout row");
      for (const i of r.instances) {
        const words = `${i.name} g${i.generation} ${i.state}${i.spare ? " (spare)" : ""}`;
        if (!g.rolloutText.includes(words)) fail(`the rollout does not say "${words}"`);
        const age = i.generation === r.to_generation ? "new" : "old";
        if (!g.chips.some(([n, a]) => n === i.name && a === age)) fail(`${i.name} not marked ${age}`);
      }
      if (r.halted && g.board.split(r.halted).length - 1 !== 1) fail("the halted reason not said once");
    } else if (g.rolloutText != null) {
      fail("a rollout row without a rollout");
    }
    if (g.want.length) {
      const toggle = page.locator(`tr[data-name="${name}"] button.toggle`);
      await toggle.click();
      await page.locator(`tr[data-group="${name}"]`).first().waitFor({ state: "hidden", timeout: T });
      await toggle.click();
      await page.locator(`tr[data-group="${name}"]`).first().waitFor({ state: "visible", timeout: T });
    }
  }
  return groups.length;
}

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

  // Nothing selected yet: the table has the whole window.
  const wide = await checkFullWidth(page);
  step(`with nothing selected the table spans the window (${Math.round(wide.right)} of ${wide.width} px, no scroll bar) and each reason is shown once`);
  const liveGroups = await checkGroups(page);
  if (liveGroups) step(`replicated services on the live board (${liveGroups}): each with its instances under it`);

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

  // Replicated services as the API says them (the board with two groups added): `api`,
  // ten instances in a rolling update (listed by name, api@10 before api@2), and `cache`,
  // its rollout halted with a spare; and talker with a STATUS= text its reason includes.
  const like = board.find((s) => s.name === "web");
  const halted = "rollout halted at cache@2: new run exited with code 1 before ready; 1 of 3 updated; `candor rollout undo cache` returns to the old config";
  const rollout = (service, state, updated, total, instances, why) => ({
    service, state, strategy: "rolling", from_generation: 1, to_generation: 2, why, updated, total,
    started: "2026-12-07T14:01:00Z", halted: state === "halted" ? halted : null,
    instances: instances.map(([name, generation, st, spare]) => ({ name, generation, state: st, spare: !!spare })),
  });
  const apiAt = Array.from({ length: 10 }, (_, i) => [`api@${i + 1}`, i === 0 || i === 1 ? 2 : 1, i === 1 ? "starting" : "running"]);
  const cacheAt = [["cache@1", 2, "running"], ["cache@2", 2, "failed"], ["cache@3", 1, "running"], ["cache@4", 1, "running", true]];
  const group = (name, state, reason, instances, r) => {
    const wanted = instances.filter(([, , , spare]) => !spare).length;
    return {
    ...like, name, state, reason, pid: null, uptime_s: null, fds: null, rss_bytes: null, probes: [],
    replicas: { wanted, configured: wanted, running: instances.filter(([, , st]) => st === "running").length, instances: instances.map(([n]) => n), strategy: "rolling", generation: 2, rollout: r },
    };
  };
  const member = ([name, , state], i) => ({
    ...like, name, state, group: name.split("@")[0], pid: state === "running" ? 4000 + i : null,
    reason: state === "running" ? `running as pid ${4000 + i}, ready via started` : "new run exited with code 1 before ready",
  });
  const talkerOwn = "serving 3 req/s";
  const grouped = [
    group("api", "starting", "rolling update: 1 of 10 updated (api@2 starting)", apiAt, rollout("api", "rolling", 1, 10, apiAt, "env.VERSION changed")),
    ...apiAt.map(member).sort((a, b) => (a.name < b.name ? -1 : 1)),
    group("cache", "degraded", halted, cacheAt, rollout("cache", "halted", 1, 3, cacheAt, "env.VERSION changed")),
    ...cacheAt.map(member),
    ...board.map((s) => s.name === "talker" ? { ...s, reason: `${s.reason}; status: ${talkerOwn}`, status_text: talkerOwn } : s),
  ];
  const groupsPage = await ctx.newPage();
  groupsPage.on("pageerror", (e) => errors.push(String(e)));
  await groupsPage.route(/\/v1\/services\?follow=true$/, (r) =>
    r.fulfill({ status: 200, contentType: "text/event-stream", body: `data: ${JSON.stringify(grouped)}\n\n` }));
  await groupsPage.goto(`${base}/`);
  await groupsPage.locator('tr[data-name="cache@4"]').waitFor({ timeout: T });
  await checkFullWidth(groupsPage);
  const checked = await checkGroups(groupsPage);
  if (checked !== 2 + liveGroups) throw new Error(`checked ${checked} groups, not ${2 + liveGroups}`);
  // The halted group selected: its rollout instance by instance in the detail pane.
  await groupsPage.locator('tr[data-name="cache"]').click();
  await groupsPage.locator("#d-rollout .inst", { hasText: "cache@4 g1 running (spare)" }).waitFor({ timeout: T });
  const facts = await groupsPage.locator("#d-facts").innerText();
  if (!facts.includes("3 wanted, 3 running") || !facts.includes("halted (rolling), generation 1 → 2, 1 of 3 updated")) throw new Error(`cache's facts: ${facts}`);
  const detail = await groupsPage.locator("#detail").innerText();
  if (detail.split(halted).length - 1 !== 1) throw new Error(`the halted reason not once in the detail pane: ${detail}`);
  if (shots) await groupsPage.screenshot({ path: join(shots, "dashboard-groups.png") });
  await groupsPage.close();
  step("replicated services: instances under their group by index, a rolling update instance by instance, a halted one with its reason once");

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
