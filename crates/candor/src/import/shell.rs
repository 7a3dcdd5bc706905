//! A shell-string command (a Procfile line, supervisord's `command`, PM2's `script`) made
//! into the argv Candor runs: split as a POSIX shell splits words when the string has only
//! words, quotes and escapes; run through `sh -c` when it needs a shell (pipes, lists,
//! redirections, expansions, globs, `VAR=x` prefixes, builtins), with the reason said.

/// A command as Candor's `command` array, and why it runs through `sh -c` when it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    /// For a comment above the service: "uses a pipe: run through sh -c".
    pub why_shell: Option<String>,
}

impl Command {
    fn through_sh(text: &str, why: &str) -> Self {
        Self {
            argv: vec!["sh".into(), "-c".into(), text.to_string()],
            why_shell: Some(format!("{why}: run through sh -c")),
        }
    }
}

/// Builtins that mean nothing outside a shell (a `cd` in front of the real program, an
/// `export`, a `source`): a command that starts with one needs the shell.
const BUILTINS: &[&str] = &[
    ".", "alias", "cd", "eval", "export", "set", "source", "trap", "ulimit", "umask", "unset",
    "wait", "if", "for", "while", "case", "until", "{", "!",
];

/// `text` as argv. A leading `exec` is dropped (Candor runs the program itself); anything a
/// shell would do beyond splitting words keeps the whole string for `sh -c`.
pub fn split(text: &str) -> Command {
    let text = text.trim();
    if let Some(why) = needs_shell(text) {
        return Command::through_sh(text, why);
    }
    let Some(mut words) = shlex::split(text) else {
        return Command::through_sh(text, "has a quote that is not closed");
    };
    if words.first().is_some_and(|w| w == "exec") && words.len() > 1 {
        words.remove(0);
    }
    if words.is_empty() {
        return Command::through_sh(text, "is empty");
    }
    if BUILTINS.contains(&words[0].as_str()) {
        return Command::through_sh(
            text,
            &format!("starts with the shell builtin `{}`", words[0]),
        );
    }
    Command {
        argv: words,
        why_shell: None,
    }
}

/// The first thing in `text` only a shell does, outside single quotes (and, but for `$` and
/// backquotes, outside double quotes), as the comment's reason.
fn needs_shell(text: &str) -> Option<&'static str> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut single = false;
    let mut double = false;
    // At the start of a word (where `~`, `#` and `VAR=` count).
    let mut word_start = true;
    // Still in the leading words, where `VAR=x` is an assignment.
    let mut first_word = true;
    let mut word = String::new();
    while i < chars.len() {
        let c = chars[i];
        let at_start = word_start;
        word_start = false;
        if single {
            if c == '\'' {
                single = false;
            }
            i += 1;
            continue;
        }
        match c {
            '\\' => {
                // An escaped character is itself, also in double quotes (for what matters here).
                i += 2;
                word.push('x');
                continue;
            }
            '\'' if !double => single = true,
            '"' => double = !double,
            '$' => {
                return Some(match chars.get(i + 1) {
                    Some('(') => "uses command substitution $(…)",
                    _ => "expands a variable ($…)",
                })
            }
            '`' => return Some("uses command substitution (backquotes)"),
            _ if double => {}
            '|' if chars.get(i + 1) == Some(&'|') => return Some("uses ||"),
            '|' => return Some("uses a pipe"),
            '&' if chars.get(i + 1) == Some(&'&') => return Some("uses &&"),
            '&' => return Some("runs something in the background (&)"),
            ';' => return Some("runs several commands (;)"),
            '>' => return Some("redirects output (>)"),
            '<' => return Some("redirects input (<)"),
            '(' | ')' => return Some("uses a subshell ( )"),
            '*' | '?' | '[' => return Some("uses a glob"),
            '~' if at_start => return Some("uses ~ (the home directory)"),
            '#' if at_start => return Some("has a comment (#)"),
            '\n' => return Some("has several lines"),
            '=' if first_word && is_name(&word) => {
                return Some("sets a variable before the command (VAR=x)")
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    first_word = false;
                }
                word.clear();
                word_start = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        if !matches!(c, '\'' | '"') {
            word.push(c);
        }
        i += 1;
    }
    None
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

    fn argv(text: &str) -> Vec<String> {
        let c = split(text);
        assert_eq!(c.why_shell, None, "{text} should not need a shell");
        c.argv
    }

    fn why(text: &str) -> String {
        let c = split(text);
        assert_eq!(c.argv, ["sh", "-c", text.trim()], "{text}");
        c.why_shell.expect("a reason")
    }

    #[test]
    fn words_quotes_and_escapes_split_as_a_shell_would() {
        assert_eq!(
            argv("bundle exec puma -C config/puma.rb"),
            ["bundle", "exec", "puma", "-C", "config/puma.rb"]
        );
        assert_eq!(
            argv("  python3  -c 'print(\"a b\")' "),
            ["python3", "-c", "print(\"a b\")"]
        );
        assert_eq!(
            argv(r#"echo "it's" a\ b 'x|y' "a;b""#),
            ["echo", "it's", "a b", "x|y", "a;b"]
        );
        assert_eq!(argv("exec gunicorn app:app"), ["gunicorn", "app:app"]);
        assert_eq!(
            argv("node --max-old-space-size=512 server.js"),
            ["node", "--max-old-space-size=512", "server.js"]
        );
        assert_eq!(argv(r"printf '%s\n' a=b"), ["printf", r"%s\n", "a=b"]);
    }

    #[test]
    fn what_needs_a_shell_runs_through_sh_c_with_the_reason() {
        assert_eq!(
            why("tail -f log | grep x"),
            "uses a pipe: run through sh -c"
        );
        assert_eq!(why("cd web && npm start"), "uses &&: run through sh -c");
        assert_eq!(why("a || b"), "uses ||: run through sh -c");
        assert_eq!(why("a; b"), "runs several commands (;): run through sh -c");
        assert_eq!(
            why("app > out.log"),
            "redirects output (>): run through sh -c"
        );
        assert_eq!(why("app < in"), "redirects input (<): run through sh -c");
        assert_eq!(
            why("rails s -p $PORT"),
            "expands a variable ($…): run through sh -c"
        );
        assert_eq!(
            why("echo \"port ${PORT}\""),
            "expands a variable ($…): run through sh -c"
        );
        assert_eq!(
            why("echo $(date)"),
            "uses command substitution $(…): run through sh -c"
        );
        assert_eq!(
            why("echo `date`"),
            "uses command substitution (backquotes): run through sh -c"
        );
        assert_eq!(why("ls *.txt"), "uses a glob: run through sh -c");
        assert_eq!(
            why("~/bin/app"),
            "uses ~ (the home directory): run through sh -c"
        );
        assert_eq!(
            why("RACK_ENV=production rackup"),
            "sets a variable before the command (VAR=x): run through sh -c"
        );
        assert_eq!(
            why("cd web"),
            "starts with the shell builtin `cd`: run through sh -c"
        );
        assert_eq!(
            why("app &"),
            "runs something in the background (&): run through sh -c"
        );
        assert_eq!(
            why("echo 'open"),
            "has a quote that is not closed: run through sh -c"
        );
    }

    #[test]
    fn quoted_or_escaped_specials_are_only_text() {
        assert_eq!(
            argv(r"echo 'a|b' a\|b 'x$y'"),
            ["echo", "a|b", "a|b", "x$y"]
        );
        assert_eq!(argv("echo \"a > b\""), ["echo", "a > b"]);
        // `=` after the command's name is an argument, not an assignment.
        assert_eq!(argv("env A=1 app"), ["env", "A=1", "app"]);
    }
}
