//! A logfmt line (`level=info msg="a b" n=3`), walked pair by pair without building anything.

use super::Raw;

/// Call `f` with each key and value of the logfmt line `line`; a key alone (`flag`) has
/// `Raw::Missing`. `false` if the line is not logfmt (a key with characters no logger writes
/// in one, an unterminated quote, a quote inside a bare value, nothing at all).
pub(crate) fn entries<'a>(line: &'a [u8], mut f: impl FnMut(&'a [u8], Raw<'a>)) -> bool {
    let mut i = 0;
    let mut any = false;
    loop {
        while line
            .get(i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r'))
        {
            i += 1;
        }
        if i == line.len() {
            return any;
        }
        let start = i;
        while line.get(i).is_some_and(|&c| key_byte(c)) {
            i += 1;
        }
        let key = &line[start..i];
        if key.is_empty() {
            return false;
        }
        any = true;
        match line.get(i) {
            None | Some(b' ' | b'\t' | b'\r') => {
                f(key, Raw::Missing);
                continue;
            }
            Some(b'=') => i += 1,
            Some(_) => return false,
        }
        if line.get(i) == Some(&b'"') {
            let open = i;
            i += 1;
            loop {
                let Some(k) = memchr::memchr2(b'"', b'\\', &line[i..]) else {
                    return false;
                };
                i += k;
                if line[i] == b'\\' {
                    i += 2;
                    if i > line.len() {
                        return false;
                    }
                    continue;
                }
                i += 1;
                break;
            }
            f(key, Raw::Quoted(&line[open..i]));
        } else {
            let start = i;
            while line
                .get(i)
                .is_some_and(|c| !matches!(c, b' ' | b'\t' | b'\r'))
            {
                if line[i] == b'"' {
                    return false;
                }
                i += 1;
            }
            f(key, Raw::Bare(&line[start..i]));
        }
        if line
            .get(i)
            .is_some_and(|c| !matches!(c, b' ' | b'\t' | b'\r'))
        {
            return false;
        }
    }
}

fn key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'/' | b'@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(line: &str) -> Option<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        let ok = entries(line.as_bytes(), |k, v| {
            let v = match v {
                Raw::Bare(s) | Raw::Quoted(s) | Raw::JsonStr(s) | Raw::Nested(s) => {
                    Some(String::from_utf8_lossy(s).into_owned())
                }
                Raw::Missing => None,
            };
            out.push((String::from_utf8_lossy(k).into_owned(), v));
        });
        ok.then_some(out)
    }

    #[test]
    fn pairs_quoted_values_and_lone_keys_are_read() {
        assert_eq!(
            pairs(r#"level=info msg="a \"b\" c" n=3 flag empty= t=a=b"#).unwrap(),
            [
                ("level", Some("info")),
                ("msg", Some(r#""a \"b\" c""#)),
                ("n", Some("3")),
                ("flag", None),
                ("empty", Some("")),
                ("t", Some("a=b")),
            ]
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        );
    }

    #[test]
    fn what_is_not_logfmt_is_refused() {
        for bad in [
            "",
            "   ",
            r#"msg="unterminated"#,
            "error: disk full",
            r#"a=b"c"#,
            r#"msg="x"y"#,
            "=value",
            r#"msg="ends in a backslash\"#,
        ] {
            assert!(pairs(bad).is_none(), "{bad}");
        }
    }
}
