//! `env_file`: KEY=VALUE lines, as systemd's EnvironmentFile= and docker's --env-file read
//! them: blank lines and `#` comments skipped, an optional `export ` before the key, a value
//! in single quotes taken as is, in double quotes with `\"`, `\\`, `\n` and `\$` escapes,
//! unquoted with surrounding blanks trimmed.
//!
//! An error names the line and the key, never what the line holds: a bad line of an env file
//! is as likely as any other to be a secret, and errors are printed, logged and sent over the
//! API.

use std::collections::BTreeMap;

/// The variables of one file's text, or the first bad line (1-based) and why.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((
                i + 1,
                format!(
                    "is not KEY=VALUE (no `=` in its {} characters, not shown: they may be a secret)",
                    line.chars().count()
                ),
            ));
        };
        let key = key.trim_end();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((
                i + 1,
                format!(
                    "`{key}` is not a variable name (letters, digits and _, not first a digit)"
                ),
            ));
        }
        let value = unquote(value.trim()).map_err(|e| (i + 1, format!("{key}: {e}")))?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    if let Some(inner) = v.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_string)
            .ok_or_else(|| "a single quote is not closed".into());
    }
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let rest: String = chars.collect();
                return if rest.trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!(
                        "{} characters after the closing quote (not shown: they may be a secret); quote the whole value",
                        rest.trim().chars().count()
                    ))
                };
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("a double quote is not closed".into()),
            },
            c => out.push(c),
        }
    }
    Err("a double quote is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_forms_people_write_are_read() {
        let vars = parse(
            "# secrets\n\nDB_URL=postgres://db/app\nexport TOKEN = abc123 \nQUOTED=\"a \\\"b\\\" c\"\nRAW='$HOME \\n'\nEMPTY=\nEQ=a=b\n",
        )
        .expect("valid");
        assert_eq!(vars["DB_URL"], "postgres://db/app");
        assert_eq!(vars["TOKEN"], "abc123");
        assert_eq!(vars["QUOTED"], "a \"b\" c");
        assert_eq!(vars["RAW"], "$HOME \\n");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars["EQ"], "a=b");
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().0, 2);
        let (line, why) = parse("A=1\n\n2X=3\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(why.contains("`2X`"), "{why}");
        assert!(parse("A=\"open\n").unwrap_err().1.contains("not closed"));
        assert!(parse("A='open\n").unwrap_err().1.contains("not closed"));
    }

    #[test]
    fn a_bad_line_never_repeats_its_value() {
        for text in [
            "hunter2-secret-value\n",
            "TOKEN=\"hunter2-secret-value\" trailing-secret\n",
            "TOKEN=\"hunter2-secret-value\n",
            "TOKEN='hunter2-secret-value\n",
        ] {
            let (line, why) = parse(text).unwrap_err();
            assert_eq!(line, 1);
            assert!(
                !why.contains("hunter2") && !why.contains("trailing-secret"),
                "{text:?}: {why}"
            );
        }
        let (_, why) = parse("TOKEN=\"x\" junk\n").unwrap_err();
        assert!(why.starts_with("TOKEN: "), "the key is named: {why}");
    }
}
