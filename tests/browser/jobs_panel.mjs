// The dashboard's jobs panel without a browser: app.js is run in a bare context (stand-ins for
// the DOM, EventSource and fetch), then its jobs functions are given a board's jobs.
// A syntax error in app.js fails here first. usage: node jobs_panel.mjs [APP_JS]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const path = process.argv[2] || fileURLToPath(new URL("../../crates/candor-daemon/web/app.js", import.meta.url));
const source = readFileSync(path, "utf8");
const step = (what) => console.log(`ok: ${what}`);
const fail = (what) => { console.error(`FAILED: ${what}`); process.exit(1); };

function page(role) {
  const elements = new Map();
  const element = () => ({
    hidden: false, innerHTML: "", textContent: "", value: "", checked: false, dataset: {},
    addEventListener() {}, setAttribute() {}, classList: { toggle() {} },
  });
  const document = {
    getElementById: (id) => { if (!elements.has(id)) elements.set(id, element()); return elements.get(id); },
    querySelector: (q) => q.includes("candor-role") ? { content: role } : q.includes("candor-token") ? { content: "T" } : element(),
    querySelectorAll: () => [],
    activeElement: null,
  };
  class EventSource { constructor(url) { this.url = url; } close() {} }
  const context = vm.createContext({ document, EventSource, fetch: async () => ({ ok: false }), confirm: () => false, CSS: { escape: (s) => s }, console, Date, URLSearchParams });
  const app = vm.runInContext(`${source}\n;({ st, jobRowsHtml, historyRowsHtml, renderJobs, nextRun, lastRun, took, span })`, context, { filename: path });
  return { app, el: (id) => document.getElementById(id) };
}

const now = Date.UTC(2026, 11, 7, 14, 2, 0);
const done = { run: 14, trigger: "schedule", started_ms: now - 7_200_000, ended_ms: now - 7_196_800, duration_ms: 3200, result: "done", code: 0, reason: "completed in 3.2s with exit 0", log_ids: [120, 127] };
const skipped = { run: 0, trigger: "candor run", started_ms: now - 9_000_000, result: "skipped", reason: "condition exited 1: test -f /etc/backup/enabled" };
const failed = { run: 7, trigger: "schedule", started_ms: now - 300_000, ended_ms: now - 299_150, duration_ms: 850, result: "failed", code: 1, reason: "exited with code 1 <oops>" };
const jobs = [
  { name: "backup", kind: "oneshot", state: "done", reason: done.reason, schedule: "cron 0 3 * * * (Europe/Berlin)", next_ms: now + (5 * 3600 + 12 * 60) * 1000 + 30_000, last: done, last_success_ms: done.ended_ms, counts: { done: 12, failed: 1, skipped: 1 }, history: [done, skipped] },
  { name: "warm", kind: "oneshot", state: "failed", reason: failed.reason, schedule: "every 15m", next_ms: now - 5, last: failed, counts: { done: 0, failed: 1, skipped: 0 }, history: [failed] },
  { name: "nightly-restart", kind: "simple", state: "running", reason: "running as pid 42", schedule: "cron 0 4 * * * (UTC)", next_ms: now + 50 * 3600 * 1000, counts: { done: 0, failed: 0, skipped: 0 }, history: [] },
];

// The operator's page: every job listed with its state, schedule, next run, last result and
// counts; a run button for each oneshot, none for a scheduled long-running service.
{
  const { app, el } = page("operator");
  const rows = app.jobRowsHtml(jobs, now, true, null);
  for (const j of jobs) if (!rows.includes(`data-job="${j.name}"`)) fail(`no row for ${j.name}: ${rows}`);
  if (!rows.includes("in 5h12m (")) fail(`backup's next run: ${rows}`);
  if (!rows.includes("done 3.2s, 1h59m ago")) fail(`backup's last result: ${rows}`);
  if (!rows.includes("12 done, 1 failed, 1 skipped")) fail(`backup's counts: ${rows}`);
  if (!rows.includes("due now") || !rows.includes("failed exit 1, 4m ago")) fail(`warm: ${rows}`);
  if (!/in 2d2h \(\S+/.test(rows)) fail(`a run two days ahead names its day: ${rows}`);
  if (!rows.includes('data-run="backup"') || !rows.includes('data-run="warm"')) fail(`run buttons: ${rows}`);
  if (rows.includes('data-run="nightly-restart"')) fail("a long-running service has no run button");
  step("the jobs panel lists each job with its next run, last result and counts");
  if (app.jobRowsHtml(jobs, now, false, null).includes("data-run")) fail("a read-only page has no run button");
  step("no run button for a read-only token");
  // The page as app.js renders it: the panel shows once there are jobs, the history of the
  // selected one newest first, escaped.
  app.st.jobs = jobs;
  app.st.job = "warm";
  app.renderJobs();
  if (el("jobs").hidden || el("job-history").hidden) fail("the panel and the history are shown");
  if (!el("jh-rows").innerHTML.includes("exited with code 1 &lt;oops&gt;")) fail(`history escaped: ${el("jh-rows").innerHTML}`);
  const h = app.historyRowsHtml(jobs[0], now);
  if (h.indexOf("schedule") > h.indexOf("candor run")) fail(`newest first: ${h}`);
  if (!h.includes("120..127") || !h.includes("<td>-</td>")) fail(`log ids, and none for a skipped start: ${h}`);
  step("a selected job's history, newest first, with its log ids");
  app.st.jobs = [];
  app.renderJobs();
  if (!el("jobs").hidden) fail("no jobs, no panel");
  step("no jobs, no panel");
}
{
  const { app, el } = page("read-only");
  app.st.jobs = jobs;
  app.renderJobs();
  const rows = el("job-rows").innerHTML;
  if (!rows.includes('data-job="backup"') || rows.includes("data-run")) fail(`the read-only page: ${rows}`);
  step("the read-only page lists the jobs without run buttons");
}
if (page("operator").app.took(850) !== "850ms" || page("operator").app.span(45_000) !== "45s") fail("durations");
