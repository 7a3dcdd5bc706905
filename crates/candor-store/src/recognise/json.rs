//! A JSON object line, walked one level deep without building anything: each top-level key
//! with its value as written. Nested objects and arrays are skipped by counting brackets
//! (strings inside them respected), not checked further.

use super::Raw;

/// Call `f` with each top-level key (as written, escapes and all) and value of the JSON object
/// that `line` holds (surrounding whitespace allowed). `false` if it is not one.
pub(crate) fn entries<'a>(line: &'a [u8], mut f: impl FnMut(&'a [u8], Raw<'a>)) -> bool {
    let mut s = Scan { b: line, i: 0 };
    s.ws();
    if !s.eat(b'{') {
        return false;
    }
    s.ws();
    if !s.eat(b'}') {
        loop {
            let Some(key) = s.string() else {
                return false;
            };
            s.ws();
            if !s.eat(b':') {
                return false;
            }
            s.ws();
            let Some(value) = s.value() else {
                return false;
            };
            f(&key[1..key.len() - 1], value);
            s.ws();
            if s.eat(b',') {
                s.ws();
                continue;
            }
            if s.eat(b'}') {
                break;
            }
            return false;
        }
    }
    s.ws();
    s.i == line.len()
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.b.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    /// A string at `i`, quotes included; `i` after it.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            let k = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            self.i += k;
            if self.b[self.i] == b'\\' {
                self.i += 2;
                if self.i > self.b.len() {
                    return None;
                }
                continue;
            }
            self.i += 1;
            return Some(&self.b[start..self.i]);
        }
    }

    fn value(&mut self) -> Option<Raw<'a>> {
        let start = self.i;
        match *self.b.get(self.i)? {
            b'"' => self.string().map(Raw::JsonStr),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(Raw::Nested(&self.b[start..self.i]));
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                {
                    self.i += 1;
                }
                let word = &self.b[start..self.i];
                let known = matches!(word, b"true" | b"false" | b"null")
                    || word[0] == b'-'
                    || word[0].is_ascii_digit();
                known.then_some(Raw::Bare(word))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(line: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let ok = entries(line.as_bytes(), |k, v| {
            let v = match v {
                Raw::JsonStr(s) | Raw::Bare(s) | Raw::Nested(s) | Raw::Quoted(s) => s,
                Raw::Missing => b"",
            };
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        });
        ok.then_some(out)
    }

    #[test]
    fn top_level_entries_are_walked_and_nesting_is_skipped() {
        assert_eq!(
            keys(r#" {"a": 1, "b":"x\"}y", "c": {"d": [1, "]"]}, "e": null} "#).unwrap(),
            [
                ("a", "1"),
                ("b", r#""x\"}y""#),
                ("c", r#"{"d": [1, "]"]}"#),
                ("e", "null")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(keys("{}").unwrap(), []);
    }

    #[test]
    fn what_is_not_one_object_is_refused() {
        for bad in [
            "",
            "[1]",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1} x"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":{"b":1}"#,
            r#"{"a":bogus}"#,
            r#"{a:1}"#,
            r#"{"a":"\"#,
        ] {
            assert!(keys(bad).is_none(), "{bad}");
        }
    }
}
