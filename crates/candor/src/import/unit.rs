//! The syntax of a systemd unit file: `[Section]`s of `Key=Value` lines (`#`/`;` comments, a
//! trailing `\` continuing a line), `%` specifiers, and the command lines of `Exec*=`: their
//! prefixes (`-`, `@`, `+`, `!`, `!!`, `:`), words split and unescaped as systemd does, and
//! `${VAR}` / `$VAR` references to the environment.

/// One `Key=Value` with the section it is in and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// The assignments of `text` in order, and the lines that are none (line, why).
pub fn parse(text: &str) -> (Vec<Line>, Vec<(usize, String)>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut section = String::new();
    let mut pending: Option<(String, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (mut joined, first) = match pending.take() {
            Some((so_far, first)) => (so_far, first),
            None => (String::new(), i + 1),
        };
        let trimmed = raw.trim();
        if joined.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        if let Some(cont) = trimmed.strip_suffix('\\') {
            joined.push_str(cont);
            joined.push(' ');
            pending = Some((joined, first));
            continue;
        }
        joined.push_str(trimmed);
        let whole = joined.trim();
        if whole.is_empty() {
            continue;
        }
        if let Some(name) = whole.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        match whole.split_once('=') {
            Some((k, v)) => out.push(Line {
                section: section.clone(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
                line: first,
            }),
            None => bad.push((first, "is not `Key=Value`; skipped".to_string())),
        }
    }
    (out, bad)
}

/// What `%x` specifiers stand for in this unit.
pub struct Specifiers {
    /// The unit's file name (`api.service`).
    pub unit: String,
    pub host: String,
    /// `User=`, if any (for `%u` and `%h`).
    pub user: Option<String>,
}

impl Specifiers {
    /// `text` with its specifiers replaced; unknown ones kept, each named in the second value.
    pub fn expand(&self, text: &str) -> (String, Vec<String>) {
        let mut out = String::with_capacity(text.len());
        let mut unknown = Vec::new();
        let mut chars = text.chars();
        let prefix = self
            .unit
            .rsplit_once('.')
            .map_or(self.unit.as_str(), |(p, _)| p);
        let (prefix_name, instance) = prefix.split_once('@').unwrap_or((prefix, ""));
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('n') => out.push_str(&self.unit),
                Some('N') => out.push_str(prefix),
                Some('p') | Some('P') => out.push_str(prefix_name),
                Some('i') | Some('I') => out.push_str(instance),
                Some('H') | Some('l') => out.push_str(&self.host),
                Some('t') => out.push_str("/run"),
                Some('S') => out.push_str("/var/lib"),
                Some('C') => out.push_str("/var/cache"),
                Some('L') => out.push_str("/var/log"),
                Some('E') => out.push_str("/etc"),
                Some('T') => out.push_str("/tmp"),
                Some('V') => out.push_str("/var/tmp"),
                Some('u') => out.push_str(self.user.as_deref().unwrap_or("root")),
                Some('h') => out.push_str(&home(self.user.as_deref())),
                Some(other) => {
                    unknown.push(format!("%{other}"));
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        (out, unknown)
    }
}

fn home(user: Option<&str>) -> String {
    let Some(user) = user.filter(|u| *u != "root") else {
        return "/root".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    (passwd.lines())
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[0] == user)
        .map_or_else(|| format!("/home/{user}"), |f| f[5].to_string())
}

/// A piece of one word of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `${NAME}`: the value, as part of this word.
    Braced(String),
    /// `$NAME` as a word of its own: the value split at whitespace into words.
    Bare(String),
}

/// An `Exec*=` line: its prefixes and its words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecLine {
    /// `-`: a failing exit is not a failure.
    pub ignore_failure: bool,
    /// `@`: the second word is argv[0].
    pub argv0: bool,
    /// `+`, `!`, `!!`: run with more privileges than `User=` gives.
    pub privileged: bool,
    pub words: Vec<Vec<Part>>,
}

/// An `Exec*=` value: prefixes, then words split as systemd does (quotes, C escapes, `$$`
/// for `$`, `${VAR}` and `$VAR` unless the `:` prefix turns them off).
pub fn exec_line(value: &str) -> Result<ExecLine, String> {
    let mut rest = value.trim_start();
    let mut line = ExecLine {
        ignore_failure: false,
        argv0: false,
        privileged: false,
        words: Vec::new(),
    };
    let mut substitute = true;
    while let Some(c) = rest.chars().next() {
        match c {
            '-' => line.ignore_failure = true,
            '@' => line.argv0 = true,
            '+' | '!' => line.privileged = true,
            ':' => substitute = false,
            _ => break,
        }
        rest = &rest[1..];
    }
    for raw in words(rest)? {
        line.words.push(if substitute {
            parts(&raw)
        } else {
            vec![Part::Text(raw.replace("$$", "$"))]
        });
    }
    if line.words.is_empty() {
        return Err("names no program".into());
    }
    Ok(line)
}

/// The words of `text`: whitespace-separated, `"…"` and `'…'` quoted, C escapes undone.
pub fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => word.push_str(&unescape(&mut chars)?),
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("a quote is not closed".into());
        }
        out.push(word);
    }
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let c = chars.next().ok_or("ends with a lone backslash")?;
    let simple = match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        'x' => {
            let hex: String = (0..2).filter_map(|_| chars.next()).collect();
            let n = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad escape \\x{hex}"))?;
            return Ok(char::from_u32(n).map(String::from).unwrap_or_default());
        }
        c @ '0'..='7' => {
            let mut oct = String::from(c);
            for _ in 0..2 {
                if let Some(d) = chars.next_if(|d| ('0'..='7').contains(d)) {
                    oct.push(d);
                }
            }
            let n = u32::from_str_radix(&oct, 8).map_err(|_| format!("bad escape \\{oct}"))?;
            return Ok(char::from_u32(n).map(String::from).unwrap_or_default());
        }
        c => c,
    };
    Ok(simple.to_string())
}

/// A word's `$$`, `${NAME}` and (the whole word) `$NAME`.
fn parts(word: &str) -> Vec<Part> {
    if let Some(name) = word.strip_prefix('$').filter(|n| is_name(n)) {
        return vec![Part::Bare(name.to_string())];
    }
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            text.push('$');
            rest = r;
        } else if let Some((name, r)) = after
            .strip_prefix('{')
            .and_then(|a| a.split_once('}'))
            .filter(|(n, _)| is_name(n))
        {
            if !text.is_empty() {
                out.push(Part::Text(std::mem::take(&mut text)));
            }
            out.push(Part::Braced(name.to_string()));
            rest = r;
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() || out.is_empty() {
        out.push(Part::Text(text));
    }
    out
}

fn is_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_sections_comments_and_continuations() {
        let (lines, bad) = parse(
            "# c\n[Unit]\nDescription = My app\n[Service]\nExecStart=/bin/app \\\n  --flag\n; x\nnonsense\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].key, "Description");
        assert_eq!(lines[0].value, "My app");
        assert_eq!(lines[1].section, "Service");
        assert_eq!(lines[1].value, "/bin/app  --flag");
        assert_eq!(lines[1].line, 5);
        assert_eq!(bad, [(8, "is not `Key=Value`; skipped".to_string())]);
    }

    #[test]
    fn exec_lines_split_as_systemd_does() {
        let l =
            exec_line(r#"-@/usr/bin/app app "a b" 'c d' e\x41\tf "q\"uote" $$HOME 100%"#).unwrap();
        assert!(l.ignore_failure && l.argv0 && !l.privileged);
        let texts: Vec<String> = (l.words.iter())
            .map(|w| match &w[..] {
                [Part::Text(t)] => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                "/usr/bin/app",
                "app",
                "a b",
                "c d",
                "eA\tf",
                "q\"uote",
                "$HOME",
                "100%"
            ]
        );
        let v = exec_line("/bin/app --port=${PORT} $OPTS x$Y").unwrap();
        assert_eq!(
            v.words[1],
            [Part::Text("--port=".into()), Part::Braced("PORT".into())]
        );
        assert_eq!(v.words[2], [Part::Bare("OPTS".into())]);
        assert_eq!(v.words[3], [Part::Text("x$Y".into())]);
        let raw = exec_line(":/bin/echo ${X}").unwrap();
        assert_eq!(raw.words[1], [Part::Text("${X}".into())]);
        assert!(exec_line("/bin/echo \"open").is_err());
    }

    #[test]
    fn specifiers() {
        let s = Specifiers {
            unit: "web@blue.service".into(),
            host: "box".into(),
            user: None,
        };
        let (text, unknown) = s.expand("%n %N %p %i %H %t/%p.sock 100%% %Z");
        assert_eq!(
            text,
            "web@blue.service web@blue web blue box /run/web.sock 100% %Z"
        );
        assert_eq!(unknown, ["%Z"]);
    }
}
