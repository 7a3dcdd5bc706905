//! `candor export kubernetes -c FILE [--out FILE] [--image [NAME=]IMAGE]...`: Kubernetes
//! manifests, YAML documents separated by `---`, on stdout or in FILE.
//!
//! One **Deployment per service** (`replicas: 1`), not one Pod holding every service: a
//! Candor service is one unit that starts, stops, restarts and fails on its own, and so is a
//! Deployment — it gets its own rollout, its own restarts and its own scale, where a Pod of
//! many containers lives and is rescheduled as one, and a bad rollout of one service would
//! take all of them along. A oneshot (`type = "oneshot"`), or a service with
//! `restart = "never"`, runs to completion: it becomes a **Job** (`restartPolicy: Never`,
//! `backoffLimit` from `retries` under `restart = "on-failure"`, else 0; `timeout` →
//! the pod's `activeDeadlineSeconds`, which like Candor's bounds each run, not all of them),
//! since a Deployment's pods are always restarted. A scheduled oneshot becomes a **CronJob**
//! (`schedule`, `timeZone`; `overlap` → `concurrencyPolicy`: skip → Forbid, kill-previous →
//! Replace, queue → Forbid with a warning; `catch_up = "none"` → `startingDeadlineSeconds:
//! 60`, "once" → the CronJob's own catch-up, which starts the latest missed fire); `every`
//! only when it divides an hour or a day (on the clock's minutes, with a warning), else a
//! Job and a warning. `condition` has no equivalent (a warning). Manifests come in start order (a service after what it waits for), but
//! Kubernetes starts them all at once: `after` has no equivalent (a warning; no
//! initContainer is made up).
//!
//! Mapped: `command` → `command` (an argv, no shell; a `$` that Kubernetes would expand is
//! escaped), `workdir` → `workingDir`, `env` → `env` (sorted), `probe` → `livenessProbe`
//! (`http` → `httpGet`, `tcp` → `tcpSocket`, `exec` → `exec`; `every`, `timeout`,
//! `failures`, `start_delay` → `periodSeconds`, `timeoutSeconds`, `failureThreshold`,
//! `initialDelaySeconds`), `ready = "probe"` → a `readinessProbe` with the same check (and
//! `successes` → `successThreshold`), with `ready_timeout` also a `startupProbe` that allows
//! that long, `on_unhealthy = "alert"` → the readinessProbe alone (no restart),
//! `stop.timeout` → `terminationGracePeriodSeconds`, `user`/`group`/`groups` → the pod's
//! `securityContext` (uids and gids), `env_file` → `envFrom` Secrets made from the files
//! (their values are not copied into the manifest), `limits.memory_max`/`cpu_max` →
//! `resources.limits`. The daemon's environment (`inherit_env = true`) becomes the image's.
//! Names become DNS-1123 labels. Candor runs
//! a command where Kubernetes runs an image: `--image IMAGE` names the image of every
//! service, `--image NAME=IMAGE` one service's; without one a service gets
//! `registry.invalid/replace-me/<name>:latest`, which no registry serves (`.invalid` never
//! resolves, so nothing is pulled from a name someone else could register), and a warning.
//! Everything else is a `warning: <service>: <key> ...` line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use candor_spec::{
    format_bytes, format_duration, Account, BackoffSpec, CgroupLimits, HttpTarget, LimitsSpec,
    LogsSpec, OnUnhealthy, ProbeCheck, ProbeSpec, ReadySpec, RestartPolicy, ScheduleSpec,
    ServiceKind, ServiceName, ServiceSpec, Spec, StopSignal, StopSpec,
};

use super::yaml::{self, Map, Node};
use super::Warnings;

/// Where a service without `--image` points: a registry that cannot exist.
pub const PLACEHOLDER: &str = "registry.invalid/replace-me";
/// `app.kubernetes.io/managed-by` of every object.
pub const MANAGED_BY: &str = "candor-export";
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The image of each service, from `--image IMAGE` (every service) and `--image NAME=IMAGE`.
#[derive(Debug, Default)]
pub struct Images {
    all: Option<String>,
    one: BTreeMap<String, String>,
}

impl Images {
    /// An image reference never holds `=`, so `NAME=IMAGE` is unambiguous.
    pub fn parse(args: &[String], spec: &Spec) -> Result<Self, String> {
        let mut images = Images::default();
        for a in args {
            match a.split_once('=') {
                Some((name, image)) => {
                    if !spec.services.keys().any(|s| s.as_str() == name) {
                        return Err(format!("--image {a}: there is no service `{name}`"));
                    }
                    if image.is_empty() {
                        return Err(format!("--image {a}: the image is missing"));
                    }
                    if images.one.insert(name.into(), image.into()).is_some() {
                        return Err(format!("--image: `{name}` is given twice"));
                    }
                }
                None if a.is_empty() => return Err("--image: the image is missing".into()),
                None => {
                    if let Some(before) = images.all.replace(a.clone()) {
                        return Err(format!(
                            "--image {before} and --image {a}: one image for every service, or NAME=IMAGE for one"
                        ));
                    }
                }
            }
        }
        Ok(images)
    }

    fn of(&self, service: &str) -> Option<&str> {
        self.one
            .get(service)
            .or(self.all.as_ref())
            .map(String::as_str)
    }
}

/// A service's name as a DNS-1123 label: lowercase letters, digits and `-`, starting and
/// ending with a letter or digit, at most 63 characters.
pub fn dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(63)];
    match cut.trim_end_matches('-') {
        "" => "service".into(),
        s => s.into(),
    }
}

/// Every service's object name: its DNS-1123 label, with `-2`, `-3`... for a second service
/// whose name becomes the same one (`a_b` and `a.b`).
fn object_names(spec: &Spec) -> BTreeMap<ServiceName, String> {
    let mut taken = BTreeSet::new();
    let mut names = BTreeMap::new();
    for name in spec.services.keys() {
        let base = dns_label(name.as_str());
        let mut label = base.clone();
        let mut n = 2;
        while !taken.insert(label.clone()) {
            let suffix = format!("-{n}");
            let keep = base.len().min(63 - suffix.len());
            label = format!("{}{suffix}", base[..keep].trim_end_matches('-'));
            n += 1;
        }
        names.insert(name.clone(), label);
    }
    names
}

/// Kubernetes expands `$(VAR)` in `command` and env values and reads `$$` as `$`: a `$`
/// before `$` or `(` is doubled, so the program gets the very string Candor would give it.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && matches!(chars.peek(), Some('$' | '(')) {
            out.push('$');
        }
    }
    out
}

/// Whole seconds, rounded up, at least `min`; a warning when that is not `d`.
fn whole_secs(w: &mut Warnings, key: &str, d: Duration, min: u64) -> u64 {
    let s = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(min);
    if Duration::from_secs(s) != d {
        w.warn(
            key,
            format!(
                "({}) exported as {s}s: Kubernetes counts whole seconds{}",
                format_duration(d),
                if min > 0 { ", at least 1" } else { "" }
            ),
        );
    }
    s
}

/// The probe's host, unless it is this machine: the kubelet probes the pod's own IP.
fn probe_host(w: &mut Warnings, key: &str, host: &str) -> Option<String> {
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        return None;
    }
    if host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback()) {
        w.warn(
            key,
            format!("({host}) not exported: the kubelet probes the pod's IP, so the service must listen on it (e.g. 0.0.0.0), not on loopback only"),
        );
        return None;
    }
    Some(host.to_string())
}

/// The check of a probe as Kubernetes names it (`httpGet`, `tcpSocket`, `exec`), or a
/// warning and nothing.
fn probe_action(w: &mut Warnings, check: &ProbeCheck) -> Option<(&'static str, Node)> {
    match check {
        ProbeCheck::Http {
            target: HttpTarget::Tcp { host, port },
            path,
            expect_status,
            expect_body,
        } => {
            let mut m = Map::new()
                .with("path", Node::str(path))
                .with("port", Node::int(*port));
            if let Some(h) = probe_host(w, "probe.http.host", host) {
                m.set("host", Node::str(h));
            }
            if let Some(s) = expect_status {
                w.warn(
                    "probe.http.expect_status",
                    format!("({s}) has no Kubernetes equivalent: an httpGet probe passes on any status from 200 to 399"),
                );
            }
            if expect_body.is_some() {
                w.warn(
                    "probe.http.expect_body",
                    "has no Kubernetes equivalent: an httpGet probe looks at the status only (an exec probe inside the image can read the body)",
                );
            }
            Some(("httpGet", m.node()))
        }
        ProbeCheck::Http {
            target: HttpTarget::Unix(socket),
            ..
        } => {
            w.warn(
                "probe.http.socket",
                format!("({}) has no Kubernetes equivalent: the kubelet probes TCP ports, not Unix sockets; no probe exported", socket.display()),
            );
            None
        }
        ProbeCheck::Tcp { host, port } => {
            let mut m = Map::new().with("port", Node::int(*port));
            if let Some(h) = probe_host(w, "probe.tcp", host) {
                m.set("host", Node::str(h));
            }
            Some(("tcpSocket", m.node()))
        }
        ProbeCheck::Uds { socket, .. } => {
            w.warn(
                "probe.uds",
                format!("({}) has no Kubernetes equivalent: the kubelet probes TCP ports, not Unix sockets; no probe exported", socket.display()),
            );
            None
        }
        ProbeCheck::Exec { argv } => {
            Some(("exec", Map::new().with("command", Node::strs(argv)).node()))
        }
    }
}

/// livenessProbe, readinessProbe and startupProbe of the container, as `ready`,
/// `ready_timeout` and `on_unhealthy` ask.
fn probes(
    w: &mut Warnings,
    container: &mut Map,
    probe: &ProbeSpec,
    ready: &ReadySpec,
    ready_timeout: Option<Duration>,
    on_unhealthy: OnUnhealthy,
) -> bool {
    let Some((kind, action)) = probe_action(w, &probe.check) else {
        return false;
    };
    let liveness = on_unhealthy == OnUnhealthy::Restart;
    let readiness = *ready == ReadySpec::Probe || on_unhealthy == OnUnhealthy::Alert;
    let period = whole_secs(w, "probe.every", probe.every, 1);
    let timeout = whole_secs(w, "probe.timeout", probe.timeout, 1);
    let delay = whole_secs(w, "probe.start_delay", probe.start_delay, 0);
    let make = |failures: u64, successes: u32| {
        let mut m = Map::new().with(kind, action.clone());
        if delay > 0 {
            m.set("initialDelaySeconds", Node::int(delay));
        }
        m.with("periodSeconds", Node::int(period))
            .with("timeoutSeconds", Node::int(timeout))
            .with("failureThreshold", Node::int(failures.max(1)))
            .with("successThreshold", Node::int(successes.max(1)))
            .node()
    };
    // Kubernetes requires successThreshold 1 for liveness and startup probes.
    if liveness {
        container.set("livenessProbe", make(probe.failures.into(), 1));
        if probe.successes != 1 {
            let what = if readiness {
                "applies to the readinessProbe only"
            } else {
                "is not exported"
            };
            w.warn(
                "probe.successes",
                format!(
                    "({}) {what}: Kubernetes requires 1 for a livenessProbe",
                    probe.successes
                ),
            );
        }
    } else {
        w.warn(
            "on_unhealthy",
            "= alert exported as a readinessProbe only: no restart, and a pod failing it is taken out of its Services' endpoints",
        );
    }
    if readiness {
        container.set(
            "readinessProbe",
            make(probe.failures.into(), probe.successes),
        );
    }
    if let Some(t) = ready_timeout.filter(|_| *ready == ReadySpec::Probe && liveness) {
        // Candor waits that long for the first passing probe; the kubelet holds the
        // livenessProbe back until a startupProbe passes, and gives up after
        // failureThreshold × periodSeconds.
        let failures = t.as_millis().div_ceil(u128::from(period) * 1000);
        let failures = u64::try_from(failures).unwrap_or(u64::MAX);
        container.set("startupProbe", make(failures, 1));
        w.warn(
            "ready_timeout",
            format!(
                "({}) exported as a startupProbe of {failures} × {period}s: Kubernetes restarts a container not ready in time, where Candor marks it failed",
                format_duration(t)
            ),
        );
        return true;
    }
    false
}

/// A quantity of bytes: in Gi, Mi or Ki when it is a whole number of them.
fn bytes_quantity(b: u64) -> String {
    match b {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}Gi", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}Mi", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}Ki", b >> 10),
        b => b.to_string(),
    }
}

/// `resources.limits` from the cgroup limits: `memory_max` is the container's memory limit
/// (the same `memory.max`), `cpu_max` its CPU limit in thousandths of a core.
fn resources(w: &mut Warnings, cgroup: &CgroupLimits) -> Option<Node> {
    let CgroupLimits {
        memory_max,
        memory_high,
        pids_max,
        cpu_weight,
        cpu_max,
    } = cgroup;
    let mut limits = Map::new();
    if let Some((quota, period)) = cpu_max {
        let period128 = u128::from(*period).max(1);
        let exact = u128::from(*quota) * 1000;
        let milli = exact.div_ceil(period128);
        if *period != 100_000 || exact % period128 != 0 {
            w.warn(
                "limits.cpu_max",
                format!("({quota}/{period} µs) exported as {milli}m: Kubernetes sets CPU in thousandths of a core over the kubelet's period (100ms by default)"),
            );
        }
        limits.set("cpu", Node::str(format!("{milli}m")));
    }
    if let Some(b) = memory_max {
        limits.set("memory", Node::str(bytes_quantity(*b)));
    }
    if let Some(b) = memory_high {
        w.warn(
            "limits.memory_high",
            format!("({}) has no Kubernetes equivalent: resources.requests.memory reserves memory for scheduling, it does not throttle", format_bytes(*b)),
        );
    }
    if let Some(n) = cpu_weight {
        w.warn(
            "limits.cpu_weight",
            format!("({n}) has no Kubernetes equivalent: the kubelet derives cpu.weight from resources.requests.cpu (in cores; set it by hand)"),
        );
    }
    if let Some(n) = pids_max {
        w.warn(
            "limits.pids_max",
            format!("({n}) has no Kubernetes equivalent per container: the kubelet's podPidsLimit applies to every pod of a node"),
        );
    }
    let limits = limits.node();
    (limits != Map::new().node()).then(|| Map::new().with("limits", limits).node())
}

/// The pod's `securityContext` from `user`, `group` and `groups`. Kubernetes takes numbers;
/// a name was looked up on this machine when the config was read, and the image's user
/// database may say otherwise: its number is exported (rather than nothing, which would run
/// the service as the image's user, often root), with a warning.
fn security_context(
    w: &mut Warnings,
    user: Option<&Account>,
    group: Option<&(String, u32)>,
    groups: &[(String, u32)],
) -> Option<Node> {
    let numeric = |s: &str| s.parse::<u32>().is_ok();
    let mut sc = Map::new();
    if let Some(u) = user {
        if !numeric(&u.name) {
            w.warn(
                "user",
                format!("({}) exported as runAsUser {}, its uid on this machine: check that the image agrees", u.name, u.uid),
            );
        }
        sc.set("runAsUser", Node::int(u.uid));
    }
    match (group, user) {
        (Some((name, gid)), _) => {
            if !numeric(name) {
                w.warn(
                    "group",
                    format!("({name}) exported as runAsGroup {gid}, its gid on this machine: check that the image agrees"),
                );
            }
            sc.set("runAsGroup", Node::int(*gid));
        }
        (None, Some(u)) => sc.set("runAsGroup", Node::int(u.gid)),
        (None, None) => {}
    }
    // Candor gives the user's groups from the database plus `groups`.
    let primary = group.map(|g| g.1).or(user.map(|u| u.gid));
    let mut supplementary: Vec<u32> = user.map(|u| u.groups.clone()).unwrap_or_default();
    supplementary.extend(groups.iter().map(|g| g.1));
    supplementary.retain(|g| Some(*g) != primary);
    supplementary.sort_unstable();
    supplementary.dedup();
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g.0.as_str())
        .filter(|n| !numeric(n))
        .collect();
    if !names.is_empty() {
        w.warn(
            "groups",
            format!("({}) exported as supplementalGroups by their gids on this machine: check that the image agrees", names.join(", ")),
        );
    }
    if !supplementary.is_empty() {
        sc.set(
            "supplementalGroups",
            Node::List(supplementary.into_iter().map(Node::int).collect()),
        );
    }
    let sc = sc.node();
    (sc != Map::new().node()).then_some(sc)
}

/// One service's object (a Deployment, or a Job for `restart = "never"`) and its warnings.
fn object(svc: &ServiceSpec, name: &str, image: Option<&str>) -> (Node, Vec<String>) {
    // Every field, by name: a field added to the spec does not compile here until it is
    // mapped or warned about.
    let ServiceSpec {
        name: service,
        command,
        workdir,
        env,
        env_files,
        env_from_files: _,
        inherit_env,
        user,
        group,
        groups,
        umask,
        after,
        restart,
        backoff,
        stop,
        ready,
        ready_timeout,
        watchdog,
        probe,
        on_unhealthy,
        // Candor's own pacing of health restarts; the kubelet has none to map it to.
        restart_budget: _,
        sockets: _,
        activated,
        limits,
        logs,
        main,
        reload_signal,
        reload,
        defined_at: _,
        replicas,
        update,
        // How instances are parsed: the Deployment's pods are alike.
        instance: _,
        template: _,
        replica_specs: _,
        kind,
        condition,
        timeout,
        retries,
        schedule,
    } = svc;
    let LimitsSpec {
        nofile,
        fd_warn: _,
        fd_restart: _,
        memory_warn: _,
        memory_restart,
        cgroup,
    } = limits;
    let StopSpec {
        signal,
        timeout: stop_timeout,
    } = stop;
    let mut w = Warnings::new(service.as_str());
    if name != service.as_str() {
        w.warn(
            "name",
            format!("exported as \"{name}\": Kubernetes names are DNS-1123 labels (a-z, 0-9 and `-`, at most 63)"),
        );
    }
    let image = match image {
        Some(i) => i.to_string(),
        None => {
            let placeholder = format!("{PLACEHOLDER}/{name}:latest");
            w.warn(
                "image",
                format!("not given: Candor runs a command, Kubernetes an image; exported as {placeholder}, to replace (--image {service}=IMAGE, or --image IMAGE for every service)"),
            );
            placeholder
        }
    };
    if !after.is_empty() {
        let deps: Vec<&str> = after.iter().map(ServiceName::as_str).collect();
        w.warn(
            "after",
            format!("({}) has no Kubernetes equivalent: every object starts at once, so {service} must wait for them itself (or be given an initContainer that does)", deps.join(", ")),
        );
    }
    let oneshot = *kind == ServiceKind::Oneshot;
    if let Some(c) = condition {
        w.warn(
            "condition",
            format!("({}) has no Kubernetes equivalent: run it first in the container's command (exit 0 goes on), or as an initContainer (which fails the pod where Candor skips the start)", c.join(" ")),
        );
    }
    if let (Some(n), false) = (retries, oneshot) {
        w.warn(
            "retries",
            format!("({n}) has no Kubernetes equivalent for a Deployment: the kubelet restarts its pods without end"),
        );
    }
    if let (Some(s), false) = (schedule, oneshot) {
        w.warn(
            "schedule",
            format!("({}, a scheduled restart) has no Kubernetes equivalent: a CronJob that runs `kubectl rollout restart deployment/{name}` is the nearest", super::calendar::words(&s.when)),
        );
    }
    if *restart == RestartPolicy::OnFailure && !oneshot {
        w.warn(
            "restart",
            "= on-failure exported as a Deployment, whose pods are restarted after any exit, 0 too",
        );
    }
    if *backoff != BackoffSpec::default() {
        w.warn(
            "backoff",
            format!(
                "({} doubling to {}, reset after {}) has no Kubernetes equivalent: the kubelet's crash-loop backoff is fixed (10s doubling to 5m)",
                format_duration(backoff.initial),
                format_duration(backoff.max),
                format_duration(backoff.reset_after)
            ),
        );
    }
    if *signal != StopSignal::Term {
        w.warn(
            "stop.signal",
            format!("({}) has no Kubernetes equivalent: the kubelet stops a container with its image's STOPSIGNAL (SIGTERM unless the image sets another)", signal.name()),
        );
    }
    let grace = whole_secs(&mut w, "stop.timeout", *stop_timeout, 0);

    let mut c = Map::new()
        .with("name", Node::str(name))
        .with("image", Node::str(image))
        .with(
            "command",
            Node::List(command.iter().map(|a| Node::str(literal(a))).collect()),
        );
    if let Some(wd) = workdir {
        c.set("workingDir", Node::str(wd.to_string_lossy()));
    }
    if !env.is_empty() {
        let list = env
            .iter()
            .map(|(k, v)| {
                Map::new()
                    .with("name", Node::str(k))
                    .with("value", Node::str(literal(v)))
                    .node()
            })
            .collect();
        c.set("env", Node::List(list));
    }

    // Values from env files stay out of the manifest (they are often secrets): each file is
    // a Secret to make from it, later ones winning as in Candor, `env` over all of them. An
    // optional file (`-FILE`) is an optional Secret, whether or not it exists now.
    if !env_files.is_empty() {
        let mut from = Vec::new();
        for (i, file) in env_files.iter().enumerate() {
            let secret = match i {
                0 => format!("{name}-env"),
                i => format!("{name}-env-{}", i + 1),
            };
            let (optional, file) = (file.optional, &file.path);
            w.warn(
                "env_file",
                format!(
                    "({}) exported as envFrom the {}Secret \"{secret}\", which these manifests do not make: kubectl create secret generic {secret} --from-env-file={} (kubectl keeps quotes as part of a value)",
                    file.display(),
                    if optional { "optional " } else { "" },
                    file.display()
                ),
            );
            let mut r = Map::new().with("name", Node::str(secret));
            if optional {
                r.set("optional", Node::Bool(true));
            }
            from.push(Map::new().with("secretRef", r.node()).node());
        }
        c.set("envFrom", Node::List(from));
    }
    if !inherit_env {
        w.warn(
            "inherit_env",
            "= false has no Kubernetes equivalent: a container starts from its image's environment",
        );
    }
    if let Some(r) = resources(&mut w, cgroup) {
        c.set("resources", r);
    }
    if let Some(m) = umask {
        w.warn(
            "umask",
            format!("({m:04o}) has no Kubernetes equivalent: set it in the image's entrypoint"),
        );
    }
    if matches!(
        ready,
        ReadySpec::Notify | ReadySpec::File(_) | ReadySpec::Fd(_)
    ) {
        w.warn(
            "ready",
            format!("= {} has no Kubernetes equivalent: the pod counts as ready once started (a readinessProbe is the way to say more)", ready.as_str()),
        );
    }
    let startup = match probe {
        Some(p) => probes(&mut w, &mut c, p, ready, *ready_timeout, *on_unhealthy),
        None => false,
    };
    if let (Some(t), false) = (ready_timeout, startup) {
        w.warn(
            "ready_timeout",
            format!("({}) has no Kubernetes equivalent without ready = \"probe\" and a probe the kubelet can run", format_duration(*t)),
        );
    }
    if let Some(wd) = watchdog {
        w.warn(
            "watchdog",
            format!("({}) has no Kubernetes equivalent: nothing reads sd_notify's WATCHDOG=1 (a livenessProbe is the nearest)", format_duration(*wd)),
        );
    }
    w.candor_only(svc, "Kubernetes");
    for l in activated {
        w.warn(
            "sockets",
            format!("{} (activate = true) has no Kubernetes equivalent: the service must open its own listener (and a Service expose it)", l.addr.describe()),
        );
    }
    if let Some(n) = nofile {
        w.warn(
            "limits.nofile",
            format!(
                "({n}) has no Kubernetes equivalent: a container gets its runtime's RLIMIT_NOFILE"
            ),
        );
    }
    if let Some(b) = memory_restart {
        w.warn(
            "limits.memory_restart",
            format!("({}) has no Kubernetes equivalent: resources.limits.memory kills the container instead of restarting it (set it by hand if that will do)", format_bytes(*b)),
        );
    }
    if *logs != LogsSpec::default() {
        w.warn(
            "logs",
            format!(
                "(rate {}, burst {}, max_bytes {}) has no Kubernetes equivalent: the kubelet keeps container logs by size (containerLogMaxSize), with no rate limit",
                logs.rate,
                logs.burst,
                format_bytes(logs.max_bytes)
            ),
        );
    }
    if *main {
        w.warn(
            "main",
            "has no Kubernetes equivalent: each object lives on its own, the end of one ends no other",
        );
    }
    if reload.is_some() || *reload_signal != StopSignal::Hup {
        w.warn(
            "reload",
            "has no Kubernetes equivalent: signal the process through kubectl exec, or roll the Deployment",
        );
    }

    let labels = || {
        Map::new()
            .with(NAME_LABEL, Node::str(name))
            .with("app.kubernetes.io/managed-by", Node::str(MANAGED_BY))
            .node()
    };
    let job = *restart == RestartPolicy::Never || oneshot;
    let mut pod = Map::new().with("terminationGracePeriodSeconds", Node::int(grace));
    if let Some(t) = timeout {
        // The pod's deadline: each run's, as Candor's (the Job's own would bound them all).
        let secs = whole_secs(&mut w, "timeout", *t, 1);
        pod.set("activeDeadlineSeconds", Node::int(secs));
    }
    if let Some(sc) = security_context(&mut w, user.as_ref(), group.as_ref(), groups) {
        pod.set("securityContext", sc);
    }
    if job {
        pod.set("restartPolicy", Node::str("Never"));
    }
    pod.set("containers", Node::List(vec![c.node()]));
    let template = Map::new()
        .with("metadata", Map::new().with("labels", labels()).node())
        .with("spec", pod.node());
    let metadata = Map::new()
        .with("name", Node::str(name))
        .with("labels", labels())
        .node();
    let object = if job {
        let backoff_limit = match (restart, retries) {
            (RestartPolicy::OnFailure, Some(n)) => u64::from(*n),
            (RestartPolicy::OnFailure, None) => {
                w.warn(
                    "retries",
                    "not given: Candor retries a failed oneshot without end; exported as backoffLimit 6 (Kubernetes' default)",
                );
                6
            }
            _ => 0,
        };
        let job_spec = Map::new()
            .with("backoffLimit", Node::int(backoff_limit))
            .with("template", template.node())
            .node();
        match schedule.as_ref().filter(|_| oneshot) {
            Some(s) => match cron_job(&mut w, s) {
                Some(spec) => Map::new()
                    .with("apiVersion", Node::str("batch/v1"))
                    .with("kind", Node::str("CronJob"))
                    .with("metadata", metadata)
                    .with(
                        "spec",
                        spec.with("jobTemplate", Map::new().with("spec", job_spec).node())
                            .node(),
                    ),
                None => job_object(metadata, job_spec),
            },
            None => job_object(metadata, job_spec),
        }
    } else {
        let selector = Map::new().with(
            "matchLabels",
            Map::new().with(NAME_LABEL, Node::str(name)).node(),
        );
        Map::new()
            .with("apiVersion", Node::str("apps/v1"))
            .with("kind", Node::str("Deployment"))
            .with("metadata", metadata)
            .with("spec", {
                let m = Map::new().with("replicas", Node::int(i64::from(replicas.unwrap_or(1))));
                // A replicated service's update strategy; a plain one keeps the default.
                let m = match replicas {
                    Some(_) => m
                        .with(
                            "minReadySeconds",
                            Node::int(update.min_ready.as_secs() as i64),
                        )
                        .with("strategy", deployment_strategy(update)),
                    None => m,
                };
                m.with("selector", selector.node())
                    .with("template", template.node())
                    .node()
            })
    };
    (object.node(), w.into_lines())
}

/// A Job of `spec`.
fn job_object(metadata: Node, spec: Node) -> Map {
    Map::new()
        .with("apiVersion", Node::str("batch/v1"))
        .with("kind", Node::str("Job"))
        .with("metadata", metadata)
        .with("spec", spec)
}

/// A CronJob's spec (without its `jobTemplate`) from a oneshot's schedule, or None (and a
/// warning) when Kubernetes cannot say it.
fn cron_job(w: &mut Warnings, s: &ScheduleSpec) -> Option<Map> {
    use super::calendar::{every_as_cron, five_fields};
    use candor_spec::{CatchUp, Overlap, When};
    let (cron, zone) = match &s.when {
        When::Cron { expr, timezone } => {
            let Some((five, exact)) = five_fields(expr) else {
                w.warn("schedule", format!("(cron \"{expr}\") has no Kubernetes form; exported as a Job that runs once: make the CronJob by hand"));
                return None;
            };
            if !exact {
                w.warn("schedule", format!("(cron \"{expr}\") exported as \"{five}\": Kubernetes schedules by the minute, without seconds"));
            }
            (five, Some(timezone.as_str()))
        }
        When::Every { every, jitter } => {
            let Some(cron) = every_as_cron(*every) else {
                w.warn("schedule", format!("(every {}) has no Kubernetes equivalent (a CronJob fires on the clock's minutes; the period does not divide an hour or a day): exported as a Job that runs once", format_duration(*every)));
                return None;
            };
            let jitter = if jitter.is_zero() {
                String::new()
            } else {
                format!(", and without its jitter ({})", format_duration(*jitter))
            };
            w.warn("schedule", format!("(every {}) exported as \"{cron}\": on the clock's minutes, not the job's own phase of the period{jitter}", format_duration(*every)));
            (cron, None)
        }
    };
    let policy = match s.overlap {
        Overlap::Skip => "Forbid",
        Overlap::KillPrevious => "Replace",
        Overlap::Queue => {
            w.warn("schedule.overlap", "= queue has no Kubernetes equivalent: exported as concurrencyPolicy Forbid (a fire while a run goes on is skipped, not queued)");
            "Forbid"
        }
    };
    let mut m = Map::new().with("schedule", Node::str(cron));
    if let Some(z) = zone {
        m.set("timeZone", Node::str(z));
    }
    m.set("concurrencyPolicy", Node::str(policy));
    if s.catch_up == CatchUp::None {
        // A fire the controller starts more than a minute late is skipped, not made up.
        m.set("startingDeadlineSeconds", Node::int(60));
    }
    Some(m)
}

/// Every service's manifest, in start order: the YAML text and the warnings.
pub fn manifests(spec: &Spec, images: &Images) -> (String, usize, Vec<String>) {
    let names = object_names(spec);
    let mut out = String::new();
    let mut warnings = Vec::new();
    let mut count = 0;
    for service in spec.start_order() {
        let svc = &spec.services[&service];
        let name = &names[&service];
        let (node, w) = object(svc, name, images.of(service.as_str()));
        let comment = format!(
            "{service}: exported by `candor export kubernetes` from {}",
            svc.defined_at
        );
        yaml::document(&[comment], &node, &mut out);
        warnings.extend(w);
        count += 1;
    }
    (out, count, warnings)
}

/// Print the warnings, then the manifests on stdout or into `out`. How many objects.
pub fn write(spec: &Spec, images: &Images, out: Option<&Path>) -> Result<usize, String> {
    let (text, count, warnings) = manifests(spec, images);
    for w in warnings {
        eprintln!("{w}");
    }
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?,
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("stdout: {e}"))?;
        }
    }
    Ok(count)
}

/// `update` as a Deployment's strategy: stop-first is `Recreate`; rolling and overlap are
/// `RollingUpdate` with the same surge and unavailability (overlap: one new pod beside the
/// old, none down).
fn deployment_strategy(update: &candor_spec::UpdateSpec) -> Node {
    if update.strategy == candor_spec::Strategy::StopFirst {
        return Map::new().with("type", Node::str("Recreate")).node();
    }
    let (surge, unavailable) = match update.strategy {
        candor_spec::Strategy::Overlap => (1, 0),
        _ => (update.max_surge, update.max_unavailable),
    };
    Map::new()
        .with("type", Node::str("RollingUpdate"))
        .with(
            "rollingUpdate",
            Map::new()
                .with("maxSurge", Node::int(i64::from(surge)))
                .with("maxUnavailable", Node::int(i64::from(unavailable)))
                .node(),
        )
        .node()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("api"), "api");
        assert_eq!(dns_label("My_Api.v2"), "my-api-v2");
        assert_eq!(dns_label("_x_"), "x");
        assert_eq!(dns_label("___"), "service");
        let long = "a".repeat(62) + "_b";
        assert_eq!(dns_label(&long), "a".repeat(62));
        let label = dns_label(&"Z9".repeat(32));
        assert_eq!(label.len(), 63);
        assert!(label.starts_with('z') && label.ends_with('z'), "{label}");
    }

    #[test]
    fn two_services_with_one_label_get_distinct_names() {
        let mut spec = candor_spec::parse_str(
            Path::new("/x/candor.toml"),
            "[service.a_b]\ncommand = [\"/bin/true\"]\n[service.\"a.b\"]\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let names = object_names(&spec);
        let mut labels: Vec<&String> = names.values().collect();
        labels.sort();
        assert_eq!(labels, ["a-b", "a-b-2"]);
        spec.services.clear();
        assert!(object_names(&spec).is_empty());
    }

    /// Kubernetes' expansion of `$(VAR)` in command and env values
    /// (k8s.io/kubernetes third_party/forked/golang/expansion), every variable defined.
    fn kubernetes_expand(input: &str) -> String {
        let b = input.as_bytes();
        let mut out = Vec::new();
        let mut checkpoint = 0;
        let mut cursor = 0;
        while cursor < b.len() {
            if b[cursor] == b'$' && cursor + 1 < b.len() {
                out.extend_from_slice(&b[checkpoint..cursor]);
                let rest = &b[cursor + 1..];
                let advance = match rest[0] {
                    b'$' => {
                        out.push(b'$');
                        1
                    }
                    b'(' => match rest.iter().position(|&c| c == b')') {
                        Some(i) => {
                            out.extend_from_slice(b"EXPANDED");
                            i + 1
                        }
                        None => {
                            out.extend_from_slice(b"$(");
                            1
                        }
                    },
                    c => {
                        out.extend_from_slice(&[b'$', c]);
                        1
                    }
                };
                cursor += advance;
                checkpoint = cursor + 1;
            }
            cursor += 1;
        }
        out.extend_from_slice(&b[checkpoint.min(b.len())..]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_reach_the_program_as_candor_would_pass_them() {
        assert_eq!(kubernetes_expand("a $(X) b"), "a EXPANDED b");
        for s in [
            "plain",
            "$HOME",
            "$(HOME)",
            "$$(HOME)",
            "$$",
            "$",
            "a$",
            "$(unclosed",
            "x$$$y$(a)$$(b)$",
            "100% $ (",
        ] {
            assert_eq!(kubernetes_expand(&literal(s)), s, "{s} as {}", literal(s));
        }
        assert_eq!(literal("$HOME"), "$HOME");
    }

    #[test]
    fn images_are_for_every_service_or_for_one() {
        let spec = candor_spec::parse_str(
            Path::new("/x/candor.toml"),
            "[service.api]\ncommand = [\"/bin/true\"]\n[service.db]\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let i = Images::parse(&args(&["app:1", "db=postgres:16"]), &spec).unwrap();
        assert_eq!(i.of("api"), Some("app:1"));
        assert_eq!(i.of("db"), Some("postgres:16"));
        let i = Images::parse(&args(&["db=postgres:16"]), &spec).unwrap();
        assert_eq!(i.of("api"), None);
        for bad in [&["a:1", "b:1"][..], &["nope=x:1"], &["db="], &[""]] {
            assert!(Images::parse(&args(bad), &spec).is_err(), "{bad:?}");
        }
    }

    fn export(toml: &str) -> (String, Vec<String>) {
        let spec = candor_spec::parse_str(Path::new("/x/candor.toml"), toml).unwrap();
        let (text, _, warnings) = manifests(&spec, &Images::default());
        (text, warnings)
    }

    #[test]
    fn a_liveness_probe_keeps_success_threshold_one_and_a_ready_timeout_is_a_startup_probe() {
        let (text, warnings) = export(
            r#"
[service.a]
command = ["/bin/a"]
ready = "probe"
ready_timeout = "25s"
probe = { exec = ["/bin/check"], every = "10s", successes = 2 }
"#,
        );
        // The lines of one block: its key's line and the deeper ones after it.
        let section = |key: &str| {
            let lines: Vec<&str> = text.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.trim_start() == key)
                .unwrap_or_else(|| panic!("no {key} in {text}"));
            let depth = |l: &str| l.len() - l.trim_start().len();
            let end = (at + 1..lines.len())
                .find(|&i| depth(lines[i]) <= depth(lines[at]))
                .unwrap_or(lines.len());
            lines[at..end].join("\n") + "\n"
        };
        assert!(section("livenessProbe:").contains("successThreshold: 1\n"));
        assert!(section("readinessProbe:").contains("successThreshold: 2\n"));
        let startup = section("startupProbe:");
        assert!(
            startup.contains("failureThreshold: 3\n            successThreshold: 1\n"),
            "{startup}"
        );
        assert!(warnings.iter().any(
            |w| w.starts_with("warning: a: probe.successes (2) applies to the readinessProbe only")
        ));
        assert!(warnings.iter().any(|w| w
            .starts_with("warning: a: ready_timeout (25s) exported as a startupProbe of 3 × 10s")));
    }

    #[test]
    fn restart_never_is_a_job_and_sub_second_durations_round_up() {
        let (text, warnings) = export(
            r#"
[service.once]
command = ["/bin/once"]
restart = "never"
stop = { timeout = "1500ms" }
probe = { tcp = "10.1.2.3:5432", every = "500ms" }
"#,
        );
        assert!(text.contains("kind: \"Job\"\n"), "{text}");
        assert!(text.contains("  backoffLimit: 0\n"), "{text}");
        assert!(text.contains("restartPolicy: \"Never\"\n"), "{text}");
        assert!(
            text.contains("terminationGracePeriodSeconds: 2\n"),
            "{text}"
        );
        assert!(text.contains("tcpSocket:\n              port: 5432\n              host: \"10.1.2.3\"\n            periodSeconds: 1\n"), "{text}");
        assert_eq!(
            warnings,
            [
                "warning: once: image not given: Candor runs a command, Kubernetes an image; exported as registry.invalid/replace-me/once:latest, to replace (--image once=IMAGE, or --image IMAGE for every service)",
                "warning: once: stop.timeout (1.5s) exported as 2s: Kubernetes counts whole seconds",
                "warning: once: probe.every (500ms) exported as 1s: Kubernetes counts whole seconds, at least 1",
            ]
        );
    }
}
