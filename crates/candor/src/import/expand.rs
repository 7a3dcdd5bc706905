//! supervisord's `%(name)s` expansions (Python %-formatting against a program's names):
//! `%(program_name)s`, `%(process_name)s`, `%(group_name)s`, `%(host_node_name)s`,
//! `%(here)s`, `%(numprocs)d`, `%(ENV_X)s` and `%(process_num)02d`, which becomes Candor's
//! `{instance}` for a replicated service (zero-padded by hand where every instance's number
//! has the same width).

/// What `%(process_num)…` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessNum {
    /// One process: its number.
    One(u64),
    /// Instances 1..=n (`{instance}`).
    Instances(u64),
}

/// The names a program's values may use.
#[derive(Clone, Debug)]
pub struct Names {
    pub program: String,
    /// `process_name` as written (itself expanded when used).
    pub process_name: String,
    pub group: String,
    pub here: String,
    pub host: String,
    pub numprocs: u64,
    pub num: ProcessNum,
}

/// An expanded value, and the problems met (each a warning's text).
pub struct Expanded {
    pub text: String,
    pub problems: Vec<String>,
    /// `%(ENV_X)s` names taken from the environment `candor import` ran in.
    pub from_env: Vec<String>,
}

impl Names {
    pub fn expand(&self, text: &str) -> Expanded {
        let mut out = Expanded {
            text: String::with_capacity(text.len()),
            problems: Vec::new(),
            from_env: Vec::new(),
        };
        self.expand_into(text, &mut out, 0);
        out
    }

    fn expand_into(&self, text: &str, out: &mut Expanded, depth: u8) {
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            out.text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(r) = after.strip_prefix('%') {
                out.text.push('%');
                rest = r;
                continue;
            }
            let Some(spec) = parse_spec(after) else {
                out.text.push('%');
                rest = after;
                continue;
            };
            rest = &after[spec.len..];
            self.one(&spec, out, depth);
        }
        out.text.push_str(rest);
    }

    fn one(&self, spec: &Spec<'_>, out: &mut Expanded, depth: u8) {
        let number = |n: u64| pad(&n.to_string(), spec);
        match spec.name {
            "program_name" => out.text.push_str(&pad(&self.program, spec)),
            "group_name" => out.text.push_str(&pad(&self.group, spec)),
            "host_node_name" => out.text.push_str(&pad(&self.host, spec)),
            "here" => out.text.push_str(&pad(&self.here, spec)),
            "numprocs" => out.text.push_str(&number(self.numprocs)),
            "process_name" if depth == 0 => self.expand_into(&self.process_name, out, 1),
            "process_num" => match self.num {
                ProcessNum::One(n) => out.text.push_str(&number(n)),
                ProcessNum::Instances(n) => {
                    // Instances 1..=9 are one digit each: padding them is a fixed prefix.
                    let width = spec.width.unwrap_or(0);
                    if width > 1 && n > 9 {
                        out.problems.push(format!(
                            "`%{}` pads the process number to {width} digits; `{{instance}}` is not padded, and instances 1..{n} differ in width: names or ports made from it differ from supervisord's",
                            spec.text
                        ));
                    } else if width > 1 {
                        let fill = if spec.zero { "0" } else { " " };
                        out.text.push_str(&fill.repeat(width - 1));
                    }
                    out.text.push_str(candor_spec::replicas::INSTANCE);
                }
            },
            name if name.starts_with("ENV_") => {
                let var = &name[4..];
                match std::env::var(var) {
                    Ok(v) => {
                        out.text.push_str(&pad(&v, spec));
                        out.from_env.push(var.to_string());
                    }
                    Err(_) => out.problems.push(format!(
                        "`%{}`: {var} is not set where `candor import` ran, so it was left empty; set it and import again, or edit the value",
                        spec.text
                    )),
                }
            }
            _ => {
                out.problems.push(format!(
                    "`%{}` is not an expansion supervisord knows for a program; kept as written",
                    spec.text
                ));
                out.text.push('%');
                out.text.push_str(spec.text);
            }
        }
    }
}

/// `(name)` with its flags, width and conversion, after a `%`.
struct Spec<'a> {
    name: &'a str,
    zero: bool,
    left: bool,
    width: Option<usize>,
    /// How many bytes after the `%` it took.
    len: usize,
    /// The whole `(…)…` after the `%`, for messages.
    text: &'a str,
}

fn parse_spec(after: &str) -> Option<Spec<'_>> {
    let inner = after.strip_prefix('(')?;
    let close = inner.find(')')?;
    let name = &inner[..close];
    let tail = &inner[close + 1..];
    let flags = tail.len() - tail.trim_start_matches(['-', '0', ' ', '+', '#']).len();
    let rest = &tail[flags..];
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let conv = rest[digits..].chars().next()?;
    if !matches!(conv, 's' | 'd' | 'i' | 'r') {
        return None;
    }
    let len = 1 + close + 1 + flags + digits + 1;
    Some(Spec {
        name,
        zero: tail[..flags].contains('0'),
        left: tail[..flags].contains('-'),
        width: rest[..digits].parse().ok(),
        len,
        text: &after[..len],
    })
}

/// `value` padded to the spec's width (zeros for numbers, spaces otherwise).
fn pad(value: &str, spec: &Spec<'_>) -> String {
    let width = spec.width.unwrap_or(0);
    let len = value.chars().count();
    if len >= width {
        return value.to_string();
    }
    let fill = width - len;
    if spec.left {
        format!("{value}{}", " ".repeat(fill))
    } else if spec.zero && value.chars().all(|c| c.is_ascii_digit()) {
        format!("{}{value}", "0".repeat(fill))
    } else {
        format!("{}{value}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(num: ProcessNum) -> Names {
        Names {
            program: "web".into(),
            process_name: "%(program_name)s_%(process_num)02d".into(),
            group: "site".into(),
            here: "/etc/supervisor".into(),
            host: "box".into(),
            numprocs: 4,
            num,
        }
    }

    #[test]
    fn names_numbers_and_percent_signs() {
        let n = names(ProcessNum::One(0));
        let e = n.expand("%(here)s/%(program_name)s-%(group_name)s@%(host_node_name)s %(numprocs)d %%d %(process_name)s 100%");
        assert_eq!(e.text, "/etc/supervisor/web-site@box 4 %d web_00 100%");
        assert!(e.problems.is_empty());
        assert_eq!(
            n.expand("%(process_num)3d|%(program_name)-5s|").text,
            "  0|web  |"
        );
    }

    #[test]
    fn the_process_number_of_a_replicated_program_is_the_instance() {
        let n = names(ProcessNum::Instances(4));
        assert_eq!(
            n.expand("--port=80%(process_num)02d").text,
            "--port=800{instance}"
        );
        assert_eq!(n.expand("%(process_name)s.log").text, "web_0{instance}.log");
        assert_eq!(n.expand("%(process_num)d").text, "{instance}");
        let wide = names(ProcessNum::Instances(12)).expand("%(process_num)02d");
        assert_eq!(wide.text, "{instance}");
        assert!(
            wide.problems[0].contains("instances 1..12 differ in width"),
            "{:?}",
            wide.problems
        );
    }

    #[test]
    fn environment_variables_and_unknown_names() {
        let n = names(ProcessNum::One(1));
        let e = n.expand("%(ENV_PATH)s:%(ENV_CANDOR_SURELY_UNSET_X)s:%(nope)s");
        assert_eq!(
            e.text,
            format!("{}::%(nope)s", std::env::var("PATH").unwrap())
        );
        assert_eq!(e.from_env, ["PATH"]);
        assert_eq!(e.problems.len(), 2);
        assert!(e.problems[0]
            .starts_with("`%(ENV_CANDOR_SURELY_UNSET_X)s`: CANDOR_SURELY_UNSET_X is not set"));
        assert!(e.problems[1].starts_with("`%(nope)s` is not an expansion"));
    }
}
