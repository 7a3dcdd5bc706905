//! Sampling fds and memory: for every running service, summed over every process of its
//! cgroup (or process group), plus the daemon itself (on demand, `sample_self`). Services
//! are sampled each in its own slot of the period (from its name), not all in one burst. Each /proc file is opened, read and
//! closed within the sample; nothing under /proc is held open between samples.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use candor_core::budget::Sample;
use tokio::sync::{mpsc, watch};

use crate::board::Board;
use crate::monitor::Internal;

/// Open fds of a process: on Linux ≥ 6.2 the size of /proc/PID/fd is the count; older kernels
/// report 0 there, so count the entries then.
pub fn fd_count(pid: u32) -> Option<u64> {
    let dir = format!("/proc/{pid}/fd");
    let size = std::fs::metadata(&dir).ok()?.len();
    if size > 0 {
        return Some(size);
    }
    Some(std::fs::read_dir(&dir).ok()?.count() as u64)
}

/// Resident set size in bytes (/proc/PID/statm, second field, in pages).
pub fn rss(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// The soft RLIMIT_NOFILE of a process, from /proc/PID/limits.
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// pid -> process group, from one pass over /proc (only where there are no cgroups).
fn process_groups() -> HashMap<u32, Vec<u32>> {
    let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(pgid) = candor_keeper::pgid(pid) {
            groups.entry(pgid).or_default().push(pid);
        }
    }
    groups
}

/// Sum a set of processes into one sample; `fd_limit` is the main process's soft limit.
pub fn sample(pids: &[u32], fd_limit: u64) -> Sample {
    let (mut fds, mut rss_sum) = (0, 0);
    for &pid in pids {
        fds += fd_count(pid).unwrap_or(0);
        rss_sum += rss(pid).unwrap_or(0);
    }
    Sample {
        at: candor_keeper::clock::mono(),
        fds,
        fd_limit,
        rss: rss_sum,
    }
}

/// Main pid -> (soft fd limit, round it was read). /proc/PID/limits is costly to generate and
/// rarely changes: it is re-read once a minute, or for a new main pid.
struct LimitCache {
    limits: HashMap<u32, (u64, u64)>,
    round: u64,
    every: u64,
}

impl LimitCache {
    fn get(&mut self, pid: u32) -> u64 {
        match self.limits.get(&pid) {
            Some(&(limit, at)) if self.round - at < self.every => limit,
            _ => {
                let limit = nofile_limit(pid).unwrap_or(0);
                self.limits.insert(pid, (limit, self.round));
                limit
            }
        }
    }
    /// A new round: forget pids that are no longer main processes (bounded by the services).
    fn next_round(&mut self, live: &std::collections::HashSet<u32>) {
        self.limits.retain(|pid, _| live.contains(pid));
        self.round += 1;
    }
}

/// The daemon's own numbers, for the API and for its accept loop.
#[derive(Debug, Default, Clone, Copy)]
pub struct SelfSample {
    pub fds: u64,
    pub fd_limit: u64,
    pub rss: u64,
}

pub fn sample_self() -> SelfSample {
    let me = std::process::id();
    SelfSample {
        fds: fd_count(me).unwrap_or(0),
        fd_limit: nofile_limit(me).unwrap_or(0),
        rss: rss(me).unwrap_or(0),
    }
}

/// A round of samples is spread over slots this long (at most [`MAX_SLOTS`] of them).
pub const SAMPLE_SLOT: Duration = Duration::from_millis(100);
/// The most slots a round is cut into.
pub const MAX_SLOTS: u32 = 50;

/// How many slots a round of `every` has: one per [`SAMPLE_SLOT`], 1 to [`MAX_SLOTS`].
fn slots(every: Duration) -> u32 {
    (every.as_nanos() / SAMPLE_SLOT.as_nanos()).clamp(1, u128::from(MAX_SLOTS)) as u32
}

/// The slot of a round in which a service is sampled: stable, from its name, so each service
/// is sampled once every `every` and a thousand of them are spread over the round.
fn slot_of(service: &str, slots: u32) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    service.hash(&mut h);
    (h.finish() % u64::from(slots.max(1))) as u32
}

/// Every `every`: sample each running service and send it to the brain. The round is cut
/// into slots of [`SAMPLE_SLOT`]; each service is sampled in its own slot (from its name), so
/// the /proc reads of many services are spread over the period, not one burst.
pub async fn run(
    every: Duration,
    cgroup_root: Option<PathBuf>,
    board: watch::Receiver<Arc<Board>>,
    tx: mpsc::Sender<Internal>,
) {
    let rounds_a_minute = (60.0 / every.as_secs_f64()).ceil().max(1.0) as u64;
    let cache = Arc::new(std::sync::Mutex::new(LimitCache {
        limits: HashMap::new(),
        round: 0,
        every: rounds_a_minute,
    }));
    let slots = slots(every);
    // Process groups (without cgroups): one pass over /proc a round, at its first slot.
    let groups = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut tick = tokio::time::interval(every / slots);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slot = 0;
    // Who is sampled in which slot: planned once a round from the board (a hash of each
    // name), not looked at again for every slot; a service that starts mid-round waits for
    // the next one.
    let mut plan: Vec<Vec<candor_spec::ServiceName>> = Vec::new();
    loop {
        tick.tick().await;
        let this = slot;
        slot = (slot + 1) % slots;
        let new_round = this == 0;
        let mut mains = std::collections::HashSet::new();
        let running: Vec<(String, u64, u32)> = {
            let board = board.borrow();
            let serving = |s: &crate::board::Board, name: &candor_spec::ServiceName| {
                let run = s.services.get(name)?.live().filter(|r| r.is_serving())?;
                Some((run.id, run.pid()?))
            };
            if new_round || plan.is_empty() {
                plan = vec![Vec::new(); slots as usize];
                for name in board.services.keys() {
                    if let Some((_, pid)) = serving(&board, name) {
                        mains.insert(pid);
                        plan[slot_of(name.as_str(), slots) as usize].push(name.clone());
                    }
                }
            }
            plan.get(this as usize)
                .into_iter()
                .flatten()
                .filter_map(|name| {
                    let (run_id, pid) = serving(&board, name)?;
                    Some((name.to_string(), run_id, pid))
                })
                .collect()
        };
        if running.is_empty() && !new_round {
            continue;
        }
        let root = cgroup_root.clone();
        let (cache, groups) = (cache.clone(), groups.clone());
        let samples = tokio::task::spawn_blocking(move || {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut groups = groups.lock().unwrap_or_else(|e| e.into_inner());
            if new_round {
                cache.next_round(&mains);
                if root.is_none() {
                    *groups = process_groups();
                }
            }
            running
                .into_iter()
                .map(|(name, run_id, pid)| {
                    let pids = match &root {
                        Some(r) => candor_keeper::cgroup_procs(&r.join(&name)),
                        None => groups.get(&pid).cloned().unwrap_or_else(|| vec![pid]),
                    };
                    let limit = cache.get(pid);
                    (name, run_id, sample(&pids, limit))
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(samples) = samples else { continue };
        if samples.is_empty() {
            continue;
        }
        // One message a slot: the brain settles once for all of them.
        if tx.send(Internal::Samples(samples)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_spread_over_the_slots_of_a_round_and_keep_theirs() {
        let every = Duration::from_secs(5);
        let n = slots(every);
        assert_eq!(n, MAX_SLOTS);
        let mut per_slot = vec![0; n as usize];
        for i in 0..1000 {
            let name = format!("svc-{i}");
            let s = slot_of(&name, n);
            assert_eq!(s, slot_of(&name, n), "stable");
            per_slot[s as usize] += 1;
        }
        // 1000 services over 50 slots: 20 each on average, none a burst.
        let (min, max) = (per_slot.iter().min(), per_slot.iter().max());
        assert!(min >= Some(&5) && max <= Some(&40), "{per_slot:?}");
        // Short periods: fewer slots, never none; long ones: at most MAX_SLOTS.
        assert_eq!(slots(Duration::from_millis(200)), 2);
        assert_eq!(slots(Duration::from_millis(20)), 1);
        assert_eq!(slots(Duration::from_secs(3600)), MAX_SLOTS);
    }
}
