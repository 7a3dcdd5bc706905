// Candor's dashboard: everything comes from the daemon's API, pushed as server-sent events
// (the board, the events, a service's log lines); nothing is polled.
"use strict";
const $ = (id) => document.getElementById(id);
const HISTORY = 120; // board updates kept per service for the sparklines
const st = { services: [], hist: {}, events: [], selected: null, logs: null, daemonAt: 0, collapsed: new Set(), jobs: [], jobsAt: 0, job: null };
// The login token, rendered into the page by the daemon (the cookie is HttpOnly), and its
// role: the page offers only what the role may do (the API decides either way).
const TOKEN = document.querySelector('meta[name="candor-token"]')?.content || "";
const ROLE = document.querySelector('meta[name="candor-role"]')?.content || "";

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function dur(s) {
  if (s == null) return "-";
  s = Math.floor(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
}
function bytes(n) {
  if (n == null) return "-";
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + "G";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + "M";
  return Math.floor(n / 1024) + "K";
}
function say(text, bad) {
  const m = $("message");
  m.textContent = text;
  m.className = bad ? "error" : "";
}
function probeText(s) {
  const p = s.probes && s.probes[0];
  if (!p) return "-";
  return `${p.kind} ${p.ok ? "ok" : "FAILED"} ${p.latency_ms} ms`;
}

// "14:02:11 UTC" of an API timestamp (RFC 3339, UTC).
function clock(at) {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(at || "") ? `${at.slice(11, 19)} UTC` : String(at ?? "");
}
// What a service's restart is held by, in a few words, or "".
function heldText(s) {
  return s.restart_held ? `restart held: ${s.restart_held}` : "";
}

// One banner per shared cause (target, how many services, since when, how many held) and one
// for restarts held by the restart budget: counted from the board, like the table beside it.
function causes(list) {
  const by = new Map();
  for (const s of list) {
    const c = s.shared_cause;
    if (!c) continue;
    const e = by.get(c.target) || { n: 0, since: c.since, held: 0 };
    e.n += 1;
    if (c.since < e.since) e.since = c.since;
    if (s.restart_held === "shared cause") e.held += 1;
    by.set(c.target, e);
  }
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const out = [...by.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([target, e]) => {
    const held = e.held === 0 ? "" : e.held === e.n
      ? `; ${e.n === 1 ? "its restart is" : "their restarts are"} held until it recovers`
      : `; restarts of ${e.held} of them held until it recovers`;
    return `shared cause: ${plural(e.n, "service", "services")} failing probes of ${target} since ${clock(e.since)}${held}`;
  });
  const budget = list.filter((s) => s.restart_held === "restart budget").length;
  if (budget) out.push(`restart budget: spent; ${plural(budget, "service", "services")} unhealthy, ${budget === 1 ? "its restart" : "their restarts"} held until the budget allows (see the reason)`);
  return out;
}
function renderCauses() {
  const lines = causes(st.services);
  const el = $("causes");
  el.hidden = lines.length === 0;
  el.innerHTML = lines.map((l) => `<p class="cause">${esc(l)}</p>`).join("");
}

// Replicated services: each group's row, then its instances by index (the daemon lists them
// by name, where api@10 comes before api@2); an instance whose group has no row stands alone.
function instanceIndex(name) {
  const m = /@(\d+)$/.exec(name);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}
function arrange(list) {
  const names = new Set(list.map((s) => s.name));
  const under = new Map();
  const tops = [];
  for (const s of list) {
    if (s.group && s.group !== s.name && names.has(s.group)) {
      if (!under.has(s.group)) under.set(s.group, []);
      under.get(s.group).push(s);
    } else {
      tops.push(s);
    }
  }
  const byIndex = (a, b) => instanceIndex(a.name) - instanceIndex(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return tops.flatMap((s) => [{ s, instance: false }, ...(under.get(s.name) || []).sort(byIndex).map((i) => ({ s: i, instance: true }))]);
}
// A group's rollout, instance by instance (its generation, old or new, and state; a spare
// marked), and why it halted unless the group's reason already says it; "" without one.
function rolloutHtml(s) {
  const r = s.replicas && s.replicas.rollout;
  if (!r || r.state === "done") return "";
  const head = `${r.state === "halted" ? "rollout halted" : "rolling update"} g${r.from_generation} → g${r.to_generation} (${esc(r.why)}), ${r.updated} of ${r.total} updated:`;
  const chips = r.instances.map((i) => {
    const age = i.generation === r.to_generation ? "new" : "old";
    return `<span class="inst ${age}" data-instance="${esc(i.name)}" title="${age} generation">${esc(i.name)} <span class="gen">g${i.generation}</span> <span class="s-${esc(i.state)}">${esc(i.state)}</span>${i.spare ? " (spare)" : ""}</span>`;
  }).join("");
  const halted = r.halted && r.halted !== s.reason ? `<p class="halted">${esc(r.halted)}</p>` : "";
  return `<div class="rollout"><span class="rollout-head">${head}</span> ${chips}${halted}</div>`;
}

// Jobs (oneshots and scheduled services), from GET /v1/jobs: a coarse span ("45s", "12m",
// "5h12m", "2d3h"), a run's length ("850ms", "3.2s", "4m10s"), the next run ("in 5h12m
// (03:00)"; "due now"; "-"), how a run ended ("done 3.2s", "failed exit 1", "skipped").
function span(ms) {
  const s = Math.floor(Math.max(0, ms) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) { const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60); return m ? `${h}h${m}m` : `${h}h`; }
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  return h ? `${d}d${h}h` : `${d}d`;
}
function took(ms) {
  if (ms == null) return "-";
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, "")}s`;
  const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (!h) return r ? `${m}m${r}s` : `${m}m`;
  return m ? `${h}h${m}m` : `${h}h`;
}
function nextRun(j, now) {
  if (j.next_ms == null) return "-";
  const ahead = j.next_ms - now;
  if (ahead <= 0) return "due now";
  const at = new Date(j.next_ms);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const day = ahead >= 86400000 ? `${at.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ` : "";
  return `in ${span(ahead)} (${day}${time})`;
}
function runResult(r, now) {
  if (r.result === "running") return `running for ${span(now - r.started_ms)}`;
  if (r.result === "done") return r.duration_ms == null ? "done" : `done ${took(r.duration_ms)}`;
  if (r.result === "failed") return r.code != null ? `failed exit ${r.code}` : r.duration_ms != null ? `failed after ${took(r.duration_ms)}` : "failed";
  return String(r.result);
}
function lastRun(j, now) {
  const r = j.last || (j.history || [])[0];
  if (!r) return "-";
  if (r.result === "running") return runResult(r, now);
  return `${runResult(r, now)}, ${span(now - (r.ended_ms ?? r.started_ms))} ago`;
}
// The jobs' rows: a run button only for a role that may run one (not read-only).
function jobRowsHtml(jobs, now, canRun, selected) {
  return jobs.map((j) => {
    const c = j.counts || { done: 0, failed: 0, skipped: 0 };
    const run = canRun && j.kind === "oneshot"
      ? `<button type="button" data-run="${esc(j.name)}" title="run ${esc(j.name)} now"${j.state === "running" ? " disabled" : ""}>run</button>`
      : "";
    return `
    <tr tabindex="0" data-job="${esc(j.name)}" class="${j.name === selected ? "selected" : ""}">
      <td>${esc(j.name)}</td>
      <td class="state s-${esc(j.state)}" title="${esc(j.reason)}">${esc(j.state)}</td>
      <td>${esc(j.schedule || "-")}</td>
      <td class="when">${esc(nextRun(j, now))}</td>
      <td class="when">${esc(lastRun(j, now))}</td>
      <td>${c.done} done, ${c.failed} failed, ${c.skipped} skipped</td>
      <td>${run}</td>
    </tr>`;
  }).join("");
}
// A job's history, newest first: why each run ran, when, how long, how it ended, its log ids.
function historyRowsHtml(job, now) {
  return (job.history || []).map((r) => `
    <tr>
      <td>${r.run || "-"}</td>
      <td>${esc(r.trigger)}</td>
      <td class="when" title="${esc(new Date(r.started_ms).toISOString())}">${esc(new Date(r.started_ms).toLocaleString())}</td>
      <td>${esc(took(r.duration_ms))}</td>
      <td class="s-${esc(r.result)}">${esc(runResult(r, now))}</td>
      <td>${esc(r.reason)}</td>
      <td>${r.log_ids ? `${r.log_ids[0]}..${r.log_ids[1]}` : "-"}</td>
    </tr>`).join("");
}
function renderJobs() {
  const now = Date.now();
  $("jobs").hidden = st.jobs.length === 0;
  $("job-rows").innerHTML = jobRowsHtml(st.jobs, now, ROLE !== "read-only", st.job);
  const j = st.jobs.find((x) => x.name === st.job);
  $("job-history").hidden = !j;
  if (!j) return;
  $("jh-name").textContent = `${j.name}: ${j.reason} — its last ${(j.history || []).length} runs, newest first`;
  $("jh-rows").innerHTML = historyRowsHtml(j, now);
}
// The jobs, read again at most once a second while the board moves (`force`: now).
async function loadJobs(force) {
  const now = Date.now();
  if (!force && now - st.jobsAt < 1000) return;
  st.jobsAt = now;
  try {
    const r = await fetch("/v1/jobs");
    st.jobs = r.ok ? (await r.json()).jobs || [] : [];
  } catch (e) {
    st.jobs = [];
  }
  renderJobs();
}

// The board, pushed on every change.
function onBoard(list) {
  st.services = list;
  for (const s of list) {
    const h = (st.hist[s.name] ||= { fds: [], rss: [] });
    if (s.fds) { h.fds.push(s.fds.count); if (h.fds.length > HISTORY) h.fds.shift(); }
    if (s.rss_bytes != null) { h.rss.push(s.rss_bytes); if (h.rss.length > HISTORY) h.rss.shift(); }
  }
  renderCauses();
  renderRows();
  renderDetail();
  daemonPanel();
  loadJobs(false);
}

function renderRows() {
  const rows = $("rows");
  const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.name;
  rows.innerHTML = arrange(st.services).map(({ s, instance }) => {
    const group = !!s.replicas;
    const open = !st.collapsed.has(s.name);
    const toggle = group
      ? `<button type="button" class="toggle" aria-expanded="${open}" aria-label="${open ? "hide" : "show"} the instances of ${esc(s.name)}">${open ? "▾" : "▸"}</button>`
      : "";
    const kind = group ? " group" : instance ? " instance" : "";
    const hidden = instance && st.collapsed.has(s.group) ? " hidden" : "";
    // The reason says the service's own status already while it runs (`; status: …`).
    const own = s.status_text && !(s.reason || "").includes(s.status_text) ? `<br><small>${esc(s.status_text)}</small>` : "";
    const rollout = group ? rolloutHtml(s) : "";
    return `
    <tr tabindex="0" data-name="${esc(s.name)}"${instance ? ` data-group="${esc(s.group)}"` : ""}${hidden} class="${s.name === st.selected ? "selected" : ""}${s.restart_held ? " held" : ""}${kind}">
      <td>${toggle}${esc(s.name)}</td>
      <td class="state s-${esc(s.state)}">${esc(s.state)}</td>
      <td class="reason">${s.restart_held ? `<span class="held-mark">${esc(heldText(s))}</span> ` : ""}${esc(s.reason)}${own}</td>
      <td title="${esc(s.since)}">${esc((s.since || "").slice(11, 19))}</td>
      <td>${s.pid ?? "-"}</td>
      <td>${dur(s.uptime_s)}</td>
      <td>${s.restarts}</td>
      <td class="${s.probes && s.probes[0] && !s.probes[0].ok ? "bad" : ""}">${esc(probeText(s))}</td>
      <td>${s.fds ? `${s.fds.count}/${s.fds.limit}` : "-"}</td>
      <td>${bytes(s.rss_bytes)}</td>
    </tr>${rollout ? `
    <tr class="rollout-row" data-rollout-of="${esc(s.name)}"><td></td><td colspan="9">${rollout}</td></tr>` : ""}`;
  }).join("");
  if (focused) {
    const again = rows.querySelector(`tr[data-name="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// The service row above or below `tr` that is shown (rollout lines and collapsed instances
// are passed over).
function nextRow(tr, down) {
  let at = down ? tr.nextElementSibling : tr.previousElementSibling;
  while (at && (!at.dataset.name || at.hidden)) at = down ? at.nextElementSibling : at.previousElementSibling;
  return at;
}

function spark(svg, values, max) {
  if (!values.length) { svg.innerHTML = ""; return; }
  const top = Math.max(max || 0, ...values, 1);
  const n = values.length;
  const pts = values.map((v, i) => `${n === 1 ? 240 : (i * 240) / (n - 1)},${48 - (v / top) * 46 - 1}`).join(" ");
  svg.innerHTML = `<polyline points="${pts}"></polyline>`;
}

function renderDetail() {
  const s = st.services.find((x) => x.name === st.selected);
  $("detail").hidden = !s;
  document.querySelector("main").classList.toggle("with-detail", !!s);
  if (!s) return;
  $("d-name").innerHTML = `${esc(s.name)} <span class="state s-${esc(s.state)}">${esc(s.state)}</span>`;
  $("d-reason").textContent = s.reason;
  $("d-rollout").innerHTML = s.replicas ? rolloutHtml(s) : "";
  const p = s.probes && s.probes[0];
  const facts = s.replicas ? groupFacts(s) : [
    ["since", s.since], ["pid", s.pid ?? "-"], ["uptime", dur(s.uptime_s)], ["restarts", `${s.restarts} (runs ${s.runs})`],
    ["ready", s.ready ? `via ${s.ready.via} at ${s.ready.at}` : "-"],
    ["last exit", s.last_exit ? `${s.last_exit.description} at ${s.last_exit.at}` : "-"],
    ["probe", p ? `${p.kind} ${p.ok ? "ok" : "FAILED"} (${p.detail}) in ${p.latency_ms} ms at ${p.at}` : "-"],
    ["sockets", (s.sockets || []).map((k) => `${k.path}: ${!k.exists ? "MISSING" : k.accepts ? "accepts" : "REFUSES"}`).join("; ") || "-"],
    ["logs", `${s.logs.lines} lines, ${s.logs.dropped} dropped, ${s.logs.folded || 0} folded`],
  ];
  if (s.shared_cause) {
    const c = s.shared_cause;
    facts.push(["shared cause", `probes of ${c.target} fail for ${c.services} services since ${c.since}`]);
  }
  if (s.restart_held) facts.push(["restart", `held (${s.restart_held})`]);
  $("d-facts").innerHTML = facts.map(([k, v]) => `<dt>${k}</dt><dd>${esc(v)}</dd>`).join("");
  const h = st.hist[s.name] || { fds: [], rss: [] };
  if (s.fds) {
    const trend = s.fds.per_hour == null ? "" : ` · ${s.fds.per_hour > 0 ? "+" : ""}${s.fds.per_hour}/h`;
    const eta = s.fds.eta_s == null ? "" : ` · at the limit in ${dur(s.fds.eta_s)}`;
    $("d-fds-cap").textContent = `fds ${s.fds.count} of ${s.fds.limit} (${s.fds.pct} %)${trend}${eta}`;
  } else {
    $("d-fds-cap").textContent = "fds: no sample";
  }
  spark($("d-fds"), h.fds, s.fds ? s.fds.limit : 0);
  $("d-fds").setAttribute("aria-label", $("d-fds-cap").textContent);
  $("d-rss-cap").textContent = `rss ${bytes(s.rss_bytes)}`;
  spark($("d-rss"), h.rss, 0);
  $("d-events").innerHTML = st.events.filter((e) => e.service === s.name).slice(-50).reverse()
    .map((e) => `<li><time>${esc(e.at)}</time> <span class="state s-${esc(e.state)}">${esc(e.state)}</span> ${esc(e.reason)}</li>`).join("");
}

// A replicated service's own facts: its instances, how it updates, its rollout.
function groupFacts(s) {
  const r = s.replicas;
  const facts = [
    ["since", s.since],
    ["replicas", `${r.wanted} wanted${r.wanted !== r.configured ? ` (scaled; ${r.configured} in the config)` : ""}, ${r.running} running`],
    ["update", `${r.strategy}, generation ${r.generation}`],
    ["instances", r.instances.join(", ") || "-"],
  ];
  const o = r.rollout;
  if (o) facts.push(["rollout", `${o.state} (${o.strategy}), generation ${o.from_generation} → ${o.to_generation}, ${o.updated} of ${o.total} updated, started ${o.started}; ${o.why}`]);
  return facts;
}

function select(name) {
  if (st.selected === name) return;
  st.selected = name;
  renderRows();
  renderDetail();
  followLogs();
}

// The selected service's log lines: its tail, then each new one.
function followLogs() {
  if (st.logs) st.logs.close();
  st.logs = null;
  const pre = $("d-logs");
  pre.innerHTML = "";
  if (!st.selected) return;
  const q = new URLSearchParams({ n: "200" });
  if ($("follow").checked) q.set("follow", "true");
  if ($("grep").value) q.set("grep", $("grep").value);
  if ($("stream").value) q.set("stream", $("stream").value);
  if ($("level").value) q.set("level", $("level").value);
  const url = `/v1/services/${encodeURIComponent(st.selected)}/logs?${q}`;
  const add = (l) => {
    const line = document.createElement("span");
    // Coloured by the line's level (a JSON or logfmt line's own, else its stream's); Candor's
    // own lines apart.
    line.className = l.stream === "candor" ? "candor" : `lvl-${l.level || (l.stream === "stderr" ? "warn" : "info")}`;
    line.textContent = `${(l.at || "").slice(11, 23)} ${(l.level || "").padEnd(6)} ${l.line}\n`;
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(line);
    while (pre.childNodes.length > 1000) pre.removeChild(pre.firstChild);
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  if (!$("follow").checked) {
    fetch(url).then((r) => r.json().then((b) => (r.ok ? b.forEach(add) : say(b.error, true))));
    return;
  }
  st.logs = new EventSource(url);
  st.logs.onmessage = (m) => add(JSON.parse(m.data));
}

async function act(path, what) {
  if (!confirm(`${what}?`)) return false;
  say(`${what}…`);
  try {
    // The cookie alone changes nothing: a change carries the token in a header, which only
    // this page (served with the token in it) can set.
    const r = await fetch(path, { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` } });
    const b = await r.json().catch(() => ({}));
    if (r.ok) say(`${what}: ${b.message || "done"}`);
    else say(`${what}: ${b.error || r.status}`, true);
    return r.ok;
  } catch (e) {
    say(`${what}: ${e}`, true);
    return false;
  }
}

async function daemonPanel() {
  const now = Date.now();
  if (now - st.daemonAt < 2000) return;
  st.daemonAt = now;
  try {
    const d = await (await fetch("/v1/daemon")).json();
    const r = d.resources || {};
    const store = d.store ? ` · logs ${bytes(d.store.log_bytes)} of ${bytes(d.store.log_cap_bytes)} on disk, store dropped ${d.store.dropped_lines}` : "";
    const drops = st.services.reduce((n, s) => n + (s.logs.dropped || 0), 0);
    $("daemon").textContent = `pid ${d.pid} · ${d.version} · containment: ${d.containment_detail || d.containment} · fds ${r.fds}/${r.fd_limit} · rss ${bytes(r.rss_bytes)}${store} · service lines dropped ${drops} · faults ${(d.faults && d.faults.count) || 0}`;
  } catch (e) {
    $("daemon").textContent = `daemon: ${e}`;
  }
}

function start() {
  const board = new EventSource("/v1/services?follow=true");
  board.onmessage = (m) => onBoard(JSON.parse(m.data));
  board.onerror = () => say("the daemon's stream broke; reconnecting…", true);
  board.onopen = () => say("");
  const events = new EventSource("/v1/events?follow=true&n=500");
  events.onmessage = (m) => {
    st.events.push(JSON.parse(m.data));
    if (st.events.length > 2000) st.events.splice(0, st.events.length - 2000);
    renderDetail();
  };
  $("rows").addEventListener("click", (e) => {
    const toggle = e.target.closest("button.toggle");
    const tr = e.target.closest("tr");
    if (toggle && tr) {
      const name = tr.dataset.name;
      if (!st.collapsed.delete(name)) st.collapsed.add(name);
      renderRows();
      return;
    }
    if (tr && tr.dataset.name) select(tr.dataset.name);
  });
  $("rows").addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr");
    if (!tr || !tr.dataset.name || e.target.closest("button")) return;
    if (e.key === "Enter" || e.key === " ") { select(tr.dataset.name); e.preventDefault(); }
    const to = e.key === "ArrowDown" ? nextRow(tr, true) : e.key === "ArrowUp" ? nextRow(tr, false) : null;
    if (to) { to.focus(); e.preventDefault(); }
  });
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => {
      const a = b.dataset.action;
      act(`/v1/services/${encodeURIComponent(st.selected)}/${a}`, `${a} ${st.selected}`);
    });
  }
  $("reset-failed").addEventListener("click", () => act("/v1/reset-failed", "reset-failed (restart every failed service)"));
  $("job-rows").addEventListener("click", async (e) => {
    const run = e.target.closest("button[data-run]");
    if (run) {
      const name = run.dataset.run;
      await act(`/v1/services/${encodeURIComponent(name)}/run`, `run ${name}`);
      st.job = name;
      loadJobs(true);
      return;
    }
    const tr = e.target.closest("tr[data-job]");
    if (tr) { st.job = st.job === tr.dataset.job ? null : tr.dataset.job; renderJobs(); }
  });
  $("job-rows").addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr[data-job]");
    if (!tr || e.target.closest("button") || (e.key !== "Enter" && e.key !== " ")) return;
    st.job = st.job === tr.dataset.job ? null : tr.dataset.job;
    renderJobs();
    e.preventDefault();
  });
  let typing;
  $("grep").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(followLogs, 400); });
  $("stream").addEventListener("change", followLogs);
$("level").addEventListener("change", followLogs);
  $("follow").addEventListener("change", followLogs);
}
start();
