#!/usr/bin/env python3
"""Survive: the daemon is killed with kill -9 and started again with the same arguments, many
times over, while 10 services print a numbered line every 10 ms (`candor-zoo log-flood
--lines-per-sec 100`, half of them with an exec probe every 1 s) and 1 service crash-loops
(exits with code 1 after 200 ms, restart = "on-failure", backoff 50-200 ms). Each round: kill -9
the daemon, wait a random 0-300 ms, start it again, and poll its API until the board is
truthful: every printer `running` with the pid it had at the first start and its restart count
unchanged. Then it counts each printer's processes, by its cgroup's cgroup.procs (with cgroups)
and by its tag in every /proc/*/cmdline: exactly 1 each, else a twin. At the end: the printers'
restarts (goal 0; the crash-looper's are by design and shown apart), their log lines (numbers
missing between the first and last seen, duplicates), and the daemon's fds and RSS after the
first start against after the last round (goal: flat). The rounds are spaced 0.2-1.5 s apart at
random, so the kill lands anywhere in a probe period or a crash-loop cycle.

Then, if this build has `candor upgrade`: a daemon with 100 services each printing 10 numbered
lines a second, `candor upgrade` timed over a few runs (min/median/max); after each run every
service must keep its pid and restarts == 0, and at the end no numbered line may be missing.

usage: bench/survive.py [--rounds 100] [--quick] [--seed N] [--upgrade-services 100] [--upgrade-runs 5]
       CANDOR_BIN=/other/target/release bench/survive.py ...   (another build's binaries)
"""
import argparse, datetime, http.client, json, os, random, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

from common import BIN, api, build, cgroup_dir, pct, remove_cgroups, rss, tagged, wall

PRINTERS = 10
PROBED = 5  # the first PROBED printers have an exec probe
UPGRADE_RATE = 10  # lines/s of each of the upgrade part's services
PROBE_EVERY = 1.0  # s: the goal for the time to a truthful board
TRUTH_LIMIT = 30.0  # s: a round whose board is not truthful by then is reported as such
LINE = re.compile(r"^flood line (\d+) lorem ipsum dolor sit amet$")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def steady_fds(pid):
    """The daemon's fds without the passing ones (a probe's pipes, an API connection): the
    fewest of 10 samples 100 ms apart."""
    seen = []
    for _ in range(10):
        seen.append(fds(pid))
        time.sleep(0.1)
    return min(seen)


def cgroup_procs(root, name):
    try:
        return [int(x) for x in open(f"{root}/{name}/cgroup.procs").read().split()]
    except OSError:
        return None


class Supervisor:
    """`candor daemon -c <work>/candor.toml --socket <work>/s.sock`, started again with the
    same arguments after every kill -9. Each start's output is appended to daemon.log."""

    def __init__(self, work, config):
        self.work, self.sock = work, f"{work}/s.sock"
        open(f"{work}/candor.toml", "w").write(config)
        self.args = [f"{BIN}/candor", "daemon", "-c", f"{work}/candor.toml", "--socket", self.sock]
        self.proc = None

    def start(self):
        log = open(f"{self.work}/daemon.log", "a")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)
        log.close()
        return self.proc.pid

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def cli(self, *args, timeout=120):
        return subprocess.run([f"{BIN}/candor", "--socket", self.sock, *args],
                              capture_output=True, text=True, timeout=timeout)

    def board(self, timeout=5.0):
        return {s["name"]: s for s in api(self.sock, "/v1/services", timeout)}

    def wait_all_running(self, names, limit=120):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                b = self.board()
                if all(b.get(n, {}).get("state") == "running" for n in names):
                    return b
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"not all of {len(names)} services running after {limit} s")

    def shutdown(self):
        """`candor shutdown` (stops every service, removes the run records); kill -9 if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.cli("shutdown", timeout=120)
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill9()


def kill_tagged(tag):
    """SIGKILL each process of ours still alive after the end (by pid, found by our tag)."""
    left = [p for pids in tagged(tag).values() for p in pids]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def soak_config(work, tag):
    zoo = f"{BIN}/candor-zoo"
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for i in range(PRINTERS):
        probe = f'probe = {{ exec = ["true"], every = "{PROBE_EVERY:g}s" }}\n' if i < PROBED else ""
        cfg.append(f'[service.p{i}]\ncommand = ["{zoo}", "log-flood", "--lines-per-sec", "100", '
                   f'"--soak", "{tag}-p{i}"]\n{probe}')
    cfg.append(f'[service.crasher]\ncommand = ["{zoo}", "crash-loop", "--after", "200ms", "--code", "1", '
               f'"--soak", "{tag}-crasher"]\nrestart = "on-failure"\n'
               f'backoff = {{ initial = "50ms", max = "200ms" }}\n')
    return "\n".join(cfg)


def check_lines(entries):
    """Numbered lines of one printer: (first, last, kept, missing ranges, duplicates, other)."""
    seen, dups, other, at = {}, 0, [], {}
    for e in entries:
        m = LINE.match(e["line"]) if e["stream"] == "stdout" else None
        if not m:
            other.append(e)
            continue
        n = int(m.group(1))
        if n in seen:
            dups += 1
        seen[n] = seen.get(n, 0) + 1
        at.setdefault(n, e["at"])
    if not seen:
        return None
    nums = sorted(seen)
    gaps = [(a + 1, b - 1) for a, b in zip(nums, nums[1:]) if b - a > 1]
    return {"first": nums[0], "last": nums[-1], "kept": len(nums), "gaps": gaps, "dups": dups,
            "other": other, "at": at}


def soak(rounds, seed, verbose):
    rnd = random.Random(seed)
    work = tempfile.mkdtemp(prefix="candor-survive.")
    tag = f"soak{os.getpid()}x{rnd.randrange(10**6)}"
    printers = [f"p{i}" for i in range(PRINTERS)]
    names = printers + ["crasher"]
    sup = Supervisor(work, soak_config(work, tag))
    root, problems, keep = None, [], False
    t_begin = time.time()
    try:
        sup.start()
        b = sup.wait_all_running(printers)
        info = api(sup.sock, "/v1/daemon")
        root = cgroup_dir(info)
        ref = {n: (b[n]["pid"], b[n]["restarts"]) for n in printers}
        time.sleep(2)
        fd0, rss0 = steady_fds(sup.proc.pid), rss(sup.proc.pid)
        print(f"# containment: {info['containment']} ({info['containment_detail']}); tag {tag}; seed {seed}")
        truth, answer, downs, twins_seen, per_round = [], [], [], [], []
        kills = []  # (round, wall time of the kill)
        untrue = {}  # (state, reason, pid) shown before the board was truthful -> [(round, printers, s after start)]
        crasher_restarts_prev = b["crasher"]["restarts"]
        for r in range(1, rounds + 1):
            time.sleep(rnd.uniform(0.2, 1.5))
            kills.append((r, time.time()))
            sup.kill9()
            down = rnd.uniform(0, 0.3)
            downs.append(down)
            time.sleep(down)
            t0 = time.monotonic()
            pid = sup.start()
            t_answer, t_truth, last, shown, seen_at = None, None, None, {}, {}
            while time.monotonic() - t0 < TRUTH_LIMIT:
                if sup.proc.poll() is not None:
                    break
                try:
                    last = sup.board(timeout=2)
                except Exception:
                    time.sleep(0.005)
                    continue
                if t_answer is None:
                    t_answer = time.monotonic() - t0
                ok = True
                for n in printers:
                    s = last.get(n)
                    if s is None or s["state"] != "running" or (s["pid"], s["restarts"]) != ref[n]:
                        ok = False
                        if s is not None:
                            pid_said = "same pid" if s["pid"] == ref[n][0] else f"pid {s['pid']}"
                            k = (s["state"], s["reason"][:90], pid_said)
                            shown.setdefault(k, set()).add(n)
                            seen_at[k] = time.monotonic() - t0
                if ok:
                    t_truth = time.monotonic() - t0
                    break
                time.sleep(0.005)
            # States shown on the way other than `starting` while re-checking (a lie if any).
            odd = {k: v for k, v in shown.items()
                   if not (k[0] == "starting" and "re-checking" in k[1])}
            # Twins: each printer's processes, by cgroup and by its tag anywhere on the machine.
            by_tag = tagged(tag)
            twins = []
            for n in names:
                procs_cg = cgroup_procs(root, n) if root else None
                procs_tag = by_tag.get(f"{tag}-{n}", [])
                lo = 1 if n in printers else 0  # a printer runs always, the crash-looper at most once
                counts = [len(procs_tag)] + ([len(procs_cg)] if procs_cg is not None else [])
                if any(not lo <= c <= 1 for c in counts):
                    twins.append((n, procs_cg, procs_tag))
            twins_seen.append(len(twins))
            rec = {"round": r, "down": down, "answer": t_answer, "truth": t_truth,
                   "fds": fds(pid) if sup.proc.poll() is None else None,
                   "rss": rss(pid) if sup.proc.poll() is None else None}
            per_round.append(rec)
            if t_answer is not None:
                answer.append(t_answer)
            if t_truth is not None:
                truth.append(t_truth)
            cr = (last or {}).get("crasher", {}).get("restarts")
            notes = []
            if sup.proc.poll() is not None:
                notes.append(f"daemon exited with {sup.proc.returncode} (see {work}/daemon.log)")
            if t_truth is None:
                bad = {n: (last[n]["state"], last[n]["pid"], last[n]["restarts"], last[n]["reason"])
                       for n in printers if last and n in last
                       and (last[n]["state"] != "running" or (last[n]["pid"], last[n]["restarts"]) != ref[n])}
                notes.append(f"board not truthful within {TRUTH_LIMIT:g} s; printers off (state, pid, restarts, reason; "
                             f"expected pid/restarts {ref}): {bad}")
                # Measure the next rounds against what runs now.
                if last:
                    ref = {n: (last[n]["pid"], last[n]["restarts"]) for n in printers if n in last}
            for k, v in odd.items():
                # Not a twin or a restart, but the board said something untrue for a moment.
                untrue.setdefault(k, []).append((r, len(v), seen_at[k]))
            if verbose and odd:
                notes.append("shown on the way: " + "; ".join(f"{len(v)} printers {k[0]}: {k[1]} ({k[2]})"
                                                              for k, v in odd.items()))
            if twins:
                notes.append("twins (service, cgroup.procs, tagged pids): " + str(twins))
            if cr is not None and cr < crasher_restarts_prev:
                notes.append(f"crasher restarts went back from {crasher_restarts_prev} to {cr}")
            if cr is not None:
                crasher_restarts_prev = cr
            serious = [x for x in notes if not x.startswith("shown on the way")]
            if serious:
                problems.append((f"round {r}", serious))
            if notes:
                print(f"round {r:3}: " + " | ".join(notes), flush=True)
            if verbose and t_truth is not None:
                print(f"round {r:3}: down {down * 1e3:4.0f} ms  answers {t_answer * 1e3:6.1f} ms  "
                      f"truthful {t_truth * 1e3:6.1f} ms  fds {rec['fds']}  rss {rec['rss'] / 2**20:.1f} MiB", flush=True)
        time.sleep(2)  # let the readers drain what is in the pipes
        fd1, rss1 = steady_fds(sup.proc.pid), rss(sup.proc.pid)
        end = sup.board()
        info1 = api(sup.sock, "/v1/daemon")
        events = api(sup.sock, "/v1/events?n=100000")
        # Log lines, through the CLI as a user would fetch them.
        lines = {}
        for n in printers:
            out = sup.cli("logs", n, "--since", "1h", "-n", "100000", "--json")
            lines[n] = check_lines(json.loads(out.stdout) if out.returncode == 0 else [])
        elapsed = time.time() - t_begin

        # ---- report
        restarts = sum(end[n]["restarts"] for n in printers)
        changed = [n for n in printers if (end[n]["pid"], end[n]["restarts"]) != ref[n] or end[n]["state"] != "running"]
        print(f"rounds {rounds} in {elapsed:.0f} s (kill -9, down {min(downs) * 1e3:.0f}-{max(downs) * 1e3:.0f} ms at random, "
              f"start with the same arguments); {PRINTERS} printers at 100 lines/s ({PROBED} with an exec probe every "
              f"{PROBE_EVERY:g}s), 1 crash-looper")
        print(f"service restarts (printers, goal 0): {restarts}; printers not on their first pid at the end: {len(changed)}"
              + (f" {changed}" if changed else ""))
        ended_down = sum(1 for e in events if e["service"] == "crasher" and "while the supervisor was down" in e["reason"])
        print(f"crash-looper: restarts {end['crasher']['restarts']} (by design), runs of it that ended while no daemon ran: "
              f"{ended_down}, shown as \"{'ended while the supervisor was down; exit status unknown'}\"")
        print(f"twins (goal 0): {sum(twins_seen)} (rounds with a service not at exactly 1 process: "
              f"{sum(1 for t in twins_seen if t)}; by cgroup.procs{' and' if root else ' n/a,'} by tag in /proc/*/cmdline)")
        tot_missing = tot_dups = tot_kept = tot_other = 0
        lost = []  # (round, lines, s from storing the line before the gap to that round's kill)
        for n in printers:
            L = lines[n]
            if L is None:
                print(f"  {n}: no numbered lines")
                problems.append(("logs", [f"{n}: no numbered lines"]))
                continue
            missing = sum(b - a + 1 for a, b in L["gaps"]) + L["first"]
            tot_missing += missing
            tot_dups += L["dups"]
            tot_kept += L["kept"]
            tot_other += len(L["other"])
            if missing or L["dups"] or L["other"] or verbose:
                print(f"  {n}: lines {L['first']}..{L['last']}, kept {L['kept']}, missing {missing}, duplicates {L['dups']}, "
                      f"other lines {len(L['other'])}")
            if L["first"]:
                print(f"    missing at the start: 0..{L['first'] - 1}")
            for i, (a, b) in enumerate(L["gaps"]):
                before, after = L["at"].get(a - 1), L["at"].get(b + 1)
                near = [(k, t) for k, t in kills if after and t <= wall(after)]
                if near and before:
                    lost.append((near[-1][0], b - a + 1, near[-1][1] - wall(before)))
                if i >= 10:
                    continue
                rr = (f"round {near[-1][0]}'s kill -9 at "
                      f"{datetime.datetime.fromtimestamp(near[-1][1], datetime.timezone.utc).strftime('%H:%M:%S.%f')[:-3]}Z"
                      if near else "no kill")
                print(f"    missing {a}..{b} ({b - a + 1} lines): the line before stored at {before}, the line after at {after}; "
                      f"between them: {rr}")
            for e in L["other"][:5]:
                print(f"    other line: {e['stream']} {e['at']} {e['line'][:100]!r}")
            if missing or L["dups"]:
                problems.append(("logs", [f"{n}: missing {missing}, duplicates {L['dups']}"]))
        print(f"missing numbered lines (goal 0): {tot_missing}; duplicates: {tot_dups}; lines kept {tot_kept}"
              f" ({tot_kept / max(1, PRINTERS) / elapsed:.0f}/s per printer); other lines: {tot_other}")
        if lost:
            hit = sorted(set(x[0] for x in lost))
            print(f"  lost in {len(hit)} of {rounds} rounds ({', '.join(map(str, hit))}), {len(lost)} gaps of "
                  f"{min(x[1] for x in lost)}-{max(x[1] for x in lost)} lines; the line before each gap was stored "
                  f"{min(x[2] for x in lost) * 1e3:.1f}-{max(x[2] for x in lost) * 1e3:.1f} ms before the kill -9 "
                  f"(a printer writes every 10 ms)")
        print(f"time to a truthful board, from the new daemon's start (goal <= {PROBE_EVERY:g} s, one probe period): "
              f"p50 {statistics.median(truth) * 1e3:.0f} ms  p95 {pct(truth, 95) * 1e3:.0f} ms  max {max(truth) * 1e3:.0f} ms"
              f"  (n={len(truth)} of {rounds})" if truth else "time to a truthful board: never")
        if answer:
            print(f"  of which until the API answers: p50 {statistics.median(answer) * 1e3:.0f} ms  max {max(answer) * 1e3:.0f} ms")
        tr = [p["truth"] for p in per_round if p["truth"] is not None]
        an = [p["answer"] for p in per_round if p["answer"] is not None]
        if len(tr) >= 20 and len(an) >= 20:
            print(f"  trend: truthful board mean {statistics.mean(tr[:10]) * 1e3:.0f} ms over the first 10 rounds, "
                  f"{statistics.mean(tr[-10:]) * 1e3:.0f} ms over the last 10; API answers {statistics.mean(an[:10]) * 1e3:.0f} "
                  f"-> {statistics.mean(an[-10:]) * 1e3:.0f} ms")
        lies = {k: v for k, v in untrue.items() if k[0] != "starting" or "re-checking" not in k[1]}
        print(f"printer states shown between the first answer and the truthful board, other than \"starting: re-checking "
              f"after supervisor restart\" (goal: none): {'none' if not lies else ''}")
        for k, v in sorted(lies.items(), key=lambda kv: -len(kv[1])):
            print(f"  {k[0]}: \"{k[1]}\" ({k[2]}): in {len(v)} of {rounds} rounds, for up to {max(x[1] for x in v)} printers, last seen "
                  f"{max(x[2] for x in v) * 1e3:.0f} ms after the daemon's start "
                  f"(rounds {', '.join(str(x[0]) for x in v[:12])}{', ...' if len(v) > 12 else ''})")
        if lies:
            problems.append(("board", [f"untrue states shown after a restart: {sorted(set(k[0] + ': ' + k[1] for k in lies))}"]))
        fr = [p["fds"] for p in per_round if p["fds"] is not None]
        rr_ = [p["rss"] for p in per_round if p["rss"] is not None]
        print(f"daemon fds: {fd0} after the first start, {fd1} after the last round (per round at truthful board: "
              f"{min(fr)}-{max(fr)})")
        print(f"daemon RSS: {rss0 / 2**20:.1f} MiB after the first start, {rss1 / 2**20:.1f} MiB after the last round "
              f"(per round at truthful board: {min(rr_) / 2**20:.1f}-{max(rr_) / 2**20:.1f} MiB; mean of the first 10 rounds "
              f"{statistics.mean(rr_[:10]) / 2**20:.1f}, of the last 10 {statistics.mean(rr_[-10:]) / 2**20:.1f})")
        st = info1.get("store", {})
        print(f"store: candor.db {st.get('file_bytes', 0) / 2**20:.1f} MiB + WAL {st.get('wal_bytes', 0) / 2**20:.1f} MiB; "
              f"dropped lines {st.get('dropped_lines')}, trimmed {st.get('trimmed_lines')}; "
              f"printers' logs.dropped {sum(end[n]['logs']['dropped'] for n in printers)}, "
              f"folded {sum(end[n]['logs'].get('folded', 0) for n in printers)}")
        keep = bool(problems)
        return problems
    finally:
        sup.shutdown()
        left = kill_tagged(tag)
        if left:
            print(f"after shutdown: {left} tagged processes still alive, killed")
        remove_cgroups(root)
        if keep:
            print(f"# work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def upgrade_bench(n, runs):
    probe = subprocess.run([f"{BIN}/candor", "upgrade", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("upgrade: not available in this build")
        return []
    work = tempfile.mkdtemp(prefix="candor-survive-upgrade.")
    tag = f"upg{os.getpid()}x{random.randrange(10**6)}"
    cfg = [f'[daemon]\nstate_dir = "{work}/state"\n']
    for i in range(n):
        cfg.append(f'[service.s{i}]\ncommand = ["{BIN}/candor-zoo", "log-flood", "--lines-per-sec", "{UPGRADE_RATE}", '
                   f'"--soak", "{tag}-s{i}"]\n')
    sup = Supervisor(work, "\n".join(cfg))
    names = [f"s{i}" for i in range(n)]
    problems, root = [], None
    try:
        pid = sup.start()
        b = sup.wait_all_running(names)
        root = cgroup_dir(api(sup.sock, "/v1/daemon"))
        ref = {s: b[s]["pid"] for s in names}
        time.sleep(2)
        fd0, rss0 = steady_fds(pid), rss(pid)
        took, truth = [], []
        for k in range(1, runs + 1):
            t0 = time.monotonic()
            out = sup.cli("upgrade", timeout=300)
            dt = time.monotonic() - t0
            said = (out.stdout + out.stderr).strip().replace("\n", " / ")
            if out.returncode != 0:
                problems.append((f"upgrade {k}", [f"exit {out.returncode}: {said}"]))
                print(f"upgrade run {k}: exit {out.returncode} after {dt:.2f} s: {said}")
                continue
            took.append(dt)
            t_truth, last = None, None
            while time.monotonic() - t0 < 60:
                try:
                    last = sup.board()
                except Exception:
                    time.sleep(0.01)
                    continue
                if all(last[s]["state"] == "running" and last[s]["pid"] == ref[s] and last[s]["restarts"] == 0 for s in names):
                    t_truth = time.monotonic() - t0
                    break
                time.sleep(0.01)
            by_tag = tagged(tag)
            twins = [s for s in names if len(by_tag.get(f"{tag}-{s}", [])) != 1]
            kept = sum(1 for s in names if last and last[s]["pid"] == ref[s])
            zero = sum(1 for s in names if last and last[s]["restarts"] == 0)
            if t_truth is not None:
                truth.append(t_truth)
            print(f"upgrade run {k}: {dt * 1e3:.0f} ms, board truthful after {t_truth * 1e3 if t_truth else float('nan'):.0f} ms; "
                  f"pids kept {kept}/{n}, restarts 0: {zero}/{n}, not at exactly 1 process: {len(twins)}; daemon pid {'same' if sup.proc.poll() is None else 'gone'}; "
                  f"said: {said[:160]}", flush=True)
            if kept != n or zero != n or t_truth is None or twins:
                problems.append((f"upgrade {k}", [f"pids kept {kept}/{n}, restarts 0: {zero}/{n}"]))
            time.sleep(1)
        time.sleep(1)
        if sup.proc.poll() is None:
            fd1, rss1 = steady_fds(pid), rss(pid)
            print(f"upgrade daemon fds {fd0} -> {fd1}, RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB over {runs} upgrades")
        # Every service's numbered lines across the upgrades.
        missing = dups = kept = 0
        for s_ in names:
            out = sup.cli("logs", s_, "--since", "1h", "-n", "100000", "--json")
            L = check_lines(json.loads(out.stdout) if out.returncode == 0 else [])
            if L is None:
                problems.append(("upgrade logs", [f"{s_}: no numbered lines"]))
                continue
            m = sum(b - a + 1 for a, b in L["gaps"]) + L["first"]
            missing, dups, kept = missing + m, dups + L["dups"], kept + L["kept"]
            if m or L["dups"]:
                print(f"  {s_}: lines {L['first']}..{L['last']}, missing {m} ({L['gaps'][:5]}), duplicates {L['dups']}")
        print(f"upgrade: numbered lines of the {n} services ({UPGRADE_RATE}/s each) across the upgrades: kept {kept}, "
              f"missing {missing}, duplicates {dups}")
        if missing or dups:
            problems.append(("upgrade logs", [f"missing {missing}, duplicates {dups}"]))
        if took:
            print(f"`candor upgrade` at {n} services: min {min(took) * 1e3:.0f} ms  median {statistics.median(took) * 1e3:.0f} ms  "
                  f"max {max(took) * 1e3:.0f} ms (n={len(took)}); board truthful after: median "
                  f"{statistics.median(truth) * 1e3 if truth else float('nan'):.0f} ms")
        return problems
    finally:
        sup.shutdown()
        left = kill_tagged(tag)
        if left:
            print(f"after shutdown: {left} upgrade-bench processes still alive, killed")
        remove_cgroups(root)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="10 rounds, upgrade at 20 services x 2")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--upgrade-services", type=int, default=100)
    ap.add_argument("--upgrade-runs", type=int, default=5)
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per round")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.upgrade_services, a.upgrade_runs = 10, 20, 2
    seed = a.seed if a.seed is not None else random.randrange(10**6)
    if "CANDOR_BIN" not in os.environ:
        build()
    print(f"# bench/survive.py --rounds {a.rounds} --seed {seed} --upgrade-services {a.upgrade_services} "
          f"--upgrade-runs {a.upgrade_runs}; binaries {BIN}; {os.cpu_count()} cores, kernel {os.uname().release}")
    problems = soak(a.rounds, seed, a.verbose)
    problems += upgrade_bench(a.upgrade_services, a.upgrade_runs)
    if problems:
        print(f"# problems ({len(problems)}):")
        for where, what in problems:
            print(f"#   {where}: {'; '.join(what)[:300]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
