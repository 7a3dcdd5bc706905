// The dashboard's front door in a real browser (Debian's chromium, driven by playwright-core),
// against a daemon the Rust test (tests/frontdoor.rs) started with two services:
//   target  what a page on another port of 127.0.0.1 tries to stop (and the daemon to shut down)
//   button  stopped and started again from the dashboard's own buttons
// The browser is logged in to the dashboard (its cookie is set) when the other page posts a
// text/plain form and a no-cors fetch with credentials: each must reach the daemon and be
// refused. usage: node frontdoor.mjs URL_WITH_TOKEN
import { chromium } from "playwright-core";
import { createServer } from "node:http";

const [url] = process.argv.slice(2);
const dash = new URL(url).origin;
const T = 30_000;
const step = (what) => console.log(`ok: ${what}`);

// The other page: served by this script on another port of 127.0.0.1.
const attack = `<!doctype html><title>not the dashboard</title>
<iframe name="f1"></iframe><iframe name="f2"></iframe>
<form id="stop" method="POST" enctype="text/plain" action="${dash}/v1/services/target/stop" target="f1">
<input name='{"a":"' value='b"}'></form>
<form id="shutdown" method="POST" enctype="text/plain" action="${dash}/v1/shutdown" target="f2">
<input name='{"a":"' value='b"}'></form>
<script>
window.results = [];
const loaded = (name) => new Promise((ok) => document.querySelector(\`iframe[name=\${name}]\`).addEventListener("load", ok, { once: true }));
(async () => {
  const f1 = loaded("f1"), f2 = loaded("f2");
  document.getElementById("stop").submit();
  document.getElementById("shutdown").submit();
  await Promise.all([f1, f2]);
  for (const path of ["/v1/services/target/stop", "/v1/shutdown"]) {
    try {
      await fetch("${dash}" + path, { method: "POST", mode: "no-cors", credentials: "include", body: "{}",
        headers: { "Content-Type": "text/plain" } });
      window.results.push(path + ": sent");
    } catch (e) {
      window.results.push(path + ": " + e);
    }
  }
  window.done = true;
})();
</script>`;
const server = createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(attack);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const other = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  const row = (name) => page.locator(`tr[data-name="${name}"]`);
  await row("target").locator(".state", { hasText: "running" }).waitFor({ timeout: T });
  const cookies = await ctx.cookies(dash);
  if (!cookies.some((c) => c.name === "candor_token")) throw new Error("no login cookie after the login URL");
  step("logged in to the dashboard (the cookie is set)");

  // The other page, in the same browser: every request it makes to the dashboard is seen.
  const evil = await ctx.newPage();
  const answers = [];
  evil.on("response", (r) => {
    if (r.url().startsWith(dash)) answers.push(`${r.request().method()} ${new URL(r.url()).pathname} -> ${r.status()}`);
  });
  await evil.goto(`${other}/`);
  await evil.waitForFunction(() => window.done === true, null, { timeout: T });
  // What the forms got back (the frames are the dashboard's; the browser shows them to us).
  for (const name of ["f1", "f2"]) {
    const text = await evil.frame({ name }).content();
    if (!/needs the token in a header|Sec-Fetch-Site|only the dashboard's own page/.test(text)) {
      throw new Error(`the form posted into ${name} was not refused by the front door: ${text}`);
    }
  }
  step("the other page's text/plain form posts were refused (stop, shutdown)");
  const fetched = await evil.evaluate(() => window.results);
  await evil.waitForTimeout(500);
  const posts = answers.filter((a) => a.startsWith("POST "));
  if (posts.length < 4) throw new Error(`the daemon did not answer all four posts: ${posts.join("; ")} (${fetched.join("; ")})`);
  if (!posts.every((a) => / -> 40[13]$/.test(a))) throw new Error(`a post was not refused: ${posts.join("; ")}`);
  step(`the other page's form posts and no-cors fetches were refused: ${posts.join("; ")}`);
  await evil.close();

  // The dashboard itself still acts: stop `button` from the page, then start it.
  await page.reload();
  await row("button").locator(".state", { hasText: "running" }).waitFor({ timeout: T });
  await row("button").click();
  await page.locator("#d-name", { hasText: "button" }).waitFor({ timeout: T });
  page.once("dialog", (d) => d.accept());
  await page.locator('button[data-action="stop"]').click();
  await row("button").locator(".state", { hasText: "stopped" }).waitFor({ timeout: T });
  step("stop from the page");
  page.once("dialog", (d) => d.accept());
  await page.locator('button[data-action="start"]').click();
  await row("button").locator(".state", { hasText: "running" }).waitFor({ timeout: T });
  step("start from the page");
  if (errors.length) throw new Error(`script errors on the page: ${errors.join("; ")}`);
  await ctx.close();
} finally {
  await browser.close();
  server.close();
}
