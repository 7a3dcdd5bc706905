//! Replicated services: `replicas = N` runs instances `NAME@1` … `NAME@N`, each parsed from the
//! service's section with `{instance}` replaced by its index, and `update` says how a change
//! replaces their runs (rolling, overlap or stop-first).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{ServiceName, ServiceSpec, SpecErrors};

/// The most instances one service may have.
pub const MAX_REPLICAS: u32 = 256;
/// Replaced by an instance's index in a replicated service's strings.
pub const INSTANCE: &str = "{instance}";

/// How a change of config (or a restart) replaces the runs of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One instance at a time: a new run (on a spare instance first) is started, ready and
    /// stays ready `min_ready`, then an old one is stopped and started anew.
    Rolling,
    /// One instance behind a socket Candor holds: the new run starts while the old one still
    /// serves on the same listener; the old one is stopped once the new one is ready.
    Overlap,
    /// Stop, then start (every instance at once).
    StopFirst,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Rolling, Strategy::Overlap, Strategy::StopFirst];
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Overlap => "overlap",
            Strategy::StopFirst => "stop-first",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// `update = { strategy, max_surge, max_unavailable, min_ready, timeout }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateSpec {
    pub strategy: Strategy,
    /// New runs started beyond `replicas` during a rollout (spare instances).
    pub max_surge: u32,
    /// Instances that may be down at once during a rollout.
    pub max_unavailable: u32,
    /// A new run must stay ready this long before the next old one is stopped (Nomad's
    /// `min_healthy_time`).
    pub min_ready: Duration,
    /// A rollout not finished by then halts.
    pub timeout: Duration,
}

impl UpdateSpec {
    /// The default for a service with this many instances: rolling for more than one,
    /// stop-first for one.
    pub fn default_for(replicas: u32) -> Self {
        Self {
            strategy: if replicas > 1 {
                Strategy::Rolling
            } else {
                Strategy::StopFirst
            },
            max_surge: 1,
            max_unavailable: 0,
            min_ready: Duration::from_secs(5),
            timeout: Duration::from_secs(300),
        }
    }
}

impl Default for UpdateSpec {
    fn default() -> Self {
        Self::default_for(1)
    }
}

/// Which instance of which replicated service a spec is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceOf {
    pub group: ServiceName,
    pub index: u32,
}

/// What it takes to parse another instance of a replicated service: the text of the file its
/// section is in. Two templates always compare equal: what an instance is made of is compared
/// through the specs themselves.
#[derive(Clone)]
pub struct Template {
    /// The file as named in messages, and as read (absolute).
    pub(crate) shown: PathBuf,
    /// The main file's directory, which relative paths are resolved against.
    pub(crate) base: PathBuf,
    pub(crate) text: Arc<str>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({})", self.shown.display())
    }
}

impl PartialEq for Template {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ServiceName {
    /// `group@index`.
    pub fn instance(group: &ServiceName, index: u32) -> ServiceName {
        ServiceName(format!("{group}@{index}").into())
    }
    /// For an instance name, its group and index.
    pub fn split_instance(&self) -> Option<(&str, u32)> {
        let (group, index) = self.0.split_once('@')?;
        Some((group, index.parse().ok()?))
    }
    /// The range of names the instances of `self` sort in (`api@0` up to, not including,
    /// `api@:`): with a `BTreeMap`, a group's instances without looking at the others.
    pub fn instance_range(&self) -> std::ops::Range<ServiceName> {
        ServiceName(format!("{self}@0").into())..ServiceName(format!("{self}@:").into())
    }
}

/// The service a (possibly replicated) name belongs to: `api@2` → `api`, `web` → `web`.
pub fn group_of(service: &str) -> &str {
    service.split_once('@').map_or(service, |(group, _)| group)
}

/// Whether an entry's `services` list takes `service`: it names it or its group (a
/// replicated service's name covers its instances), or the list is empty (every service).
pub fn names_cover(names: &[String], service: &str) -> bool {
    names.is_empty() || {
        let group = group_of(service);
        names.iter().any(|n| n == service || n == group)
    }
}

/// `text` with `{instance}` replaced by `index`.
pub(crate) fn substitute(text: &str, index: u32) -> String {
    text.replace(INSTANCE, &index.to_string())
}

impl ServiceSpec {
    /// Instance `index` of this replicated service: its section parsed again with
    /// `{instance}` replaced, named `NAME@index`. Reads env files and the user database, as
    /// loading does. `None` for a service that is not replicated.
    pub fn instance(&self, index: u32) -> Option<Result<ServiceSpec, SpecErrors>> {
        let template = self.template.as_ref()?;
        Some(crate::parse::instance(template, &self.name, index))
    }
    /// The instances `1..=upto` (or the errors of the first that fails).
    pub fn instances(&self, upto: u32) -> Result<Vec<Arc<ServiceSpec>>, SpecErrors> {
        (1..=upto)
            .filter_map(|i| self.instance(i))
            .map(|r| r.map(Arc::new))
            .collect()
    }
    /// Replicated: runs as instances `NAME@1`… (set `replicas`, or a rolling or overlap
    /// `update` strategy).
    pub fn is_group(&self) -> bool {
        self.replicas.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_str, ProbeCheck};
    use std::path::Path;

    fn load(text: &str) -> Result<crate::Spec, String> {
        parse_str(Path::new("/srv/candor.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_of_services_covers_them_and_their_instances() {
        let list = vec!["api".to_string(), "db".to_string()];
        assert!(names_cover(&list, "api") && names_cover(&list, "api@3"));
        assert!(names_cover(&list, "db"));
        assert!(!names_cover(&list, "apiary") && !names_cover(&list, "web"));
        assert!(names_cover(&[], "anything"));
        assert_eq!((group_of("api@2"), group_of("web")), ("api", "web"));
    }

    #[test]
    fn each_instance_gets_its_index_in_command_env_workdir_sockets_and_probe_port() {
        let spec = load(
            r#"
[service.api]
command = ["/bin/app", "--port", "80{instance}"]
env = { SLOT = "s{instance}" }
workdir = "/srv/api-{instance}"
sockets = ["/run/api-{instance}.sock"]
probe = { tcp = "127.0.0.1:80{instance}" }
replicas = 3
"#,
        )
        .unwrap();
        let api = &spec.services[&ServiceName::new("api").unwrap()];
        assert_eq!(api.replicas, Some(3));
        assert_eq!(api.update.strategy, Strategy::Rolling);
        let two = api.instance(2).unwrap().unwrap();
        assert_eq!(two.name.as_str(), "api@2");
        assert_eq!(two.command, ["/bin/app", "--port", "802"]);
        assert_eq!(two.env["SLOT"], "s2");
        assert_eq!(two.workdir.as_deref(), Some(Path::new("/srv/api-2")));
        assert_eq!(two.sockets, [Path::new("/run/api-2.sock")]);
        let Some(ProbeCheck::Tcp { port, .. }) = two.probe.as_ref().map(|p| &p.check) else {
            panic!("tcp probe");
        };
        assert_eq!(*port, 802);
        assert_eq!(
            two.instance,
            Some(InstanceOf {
                group: api.name.clone(),
                index: 2
            })
        );
        // The group's own spec is instance 1's, under the group's name.
        assert_eq!(api.command, ["/bin/app", "--port", "801"]);
        assert!(api.instance.is_none());
    }

    #[test]
    fn bad_replica_configs_are_named_with_the_fix() {
        let cases = [
            (
                "[service.a]\ncommand = [\"/bin/x\", \"{instance}\"]\n",
                "replaced only in a replicated service; add `replicas = 1`",
            ),
            (
                "[service.\"a@2\"]\ncommand = [\"/bin/x\"]\n",
                "`@` names an instance of a replicated service",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nreplicas = 2\nupdate = { strategy = \"overlap\" }\n",
                "\"overlap\" is for one instance, and replicas = 2",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nupdate = { strategy = \"overlap\" }\n",
                "needs a socket Candor holds",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nreplicas = 2\nupdate = { max_surge = 0 }\n",
                "could never replace a run",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nreplicas = 2\nsockets = [{ listen = \"127.0.0.1:80{instance}\", activate = true }]\n",
                "one listener shared by every instance",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nreplicas = 2\nprobe = { tcp = \"127.0.0.1:6553{instance}\" }\nupdate = { max_surge = 4 }\n",
                "(instance 6, `{instance}` = 6)",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nreplicas = 0\n",
                "replicas must be a whole number from 1 to 256",
            ),
            (
                "[service.a]\ncommand = [\"/bin/x\"]\nupdate = { strategy = \"blue-green\" }\n",
                "update.strategy",
            ),
        ];
        for (text, want) in cases {
            let err = load(text).unwrap_err();
            assert!(err.contains(want), "{text}\n→ {err}");
        }
    }

    #[test]
    fn overlap_makes_one_instance_and_stop_first_is_the_default_for_one() {
        let spec = load(
            "[service.a]\ncommand = [\"/bin/x\"]\nsockets = [{ listen = \"127.0.0.1:8080\", activate = true }]\nupdate = { strategy = \"overlap\", min_ready = \"1s\" }\n[service.b]\ncommand = [\"/bin/x\"]\n[service.c]\ncommand = [\"/bin/x\"]\nreplicas = 1\nafter = [\"a\"]\n",
        )
        .unwrap();
        let get = |n: &str| &spec.services[&ServiceName::new(n).unwrap()];
        assert_eq!(get("a").replicas, Some(1));
        assert_eq!(get("a").update.strategy, Strategy::Overlap);
        assert_eq!(get("a").update.min_ready, Duration::from_secs(1));
        assert_eq!(get("b").replicas, None);
        assert_eq!(get("b").update.strategy, Strategy::StopFirst);
        assert_eq!(get("c").update.strategy, Strategy::StopFirst);
    }

    #[test]
    fn instance_names_parse_and_sort_inside_their_group_range() {
        let api = ServiceName::new("api").unwrap();
        let two = ServiceName::new("api@2").unwrap();
        assert_eq!(two.split_instance(), Some(("api", 2)));
        assert!(api.instance_range().contains(&two));
        assert!(api
            .instance_range()
            .contains(&ServiceName::instance(&api, 100)));
        assert!(!api
            .instance_range()
            .contains(&ServiceName::new("api-x").unwrap()));
        for bad in ["api@", "api@0", "api@01", "api@x", "@1", "api@12345"] {
            assert!(ServiceName::new(bad).is_err(), "{bad}");
        }
    }
}
