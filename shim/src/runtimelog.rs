//! Reading the OCI runtime's JSON log (`runc --log FILE --log-format json`) to explain a failed
//! `create` to the daemon.
//!
//! runc writes one JSON object per line, e.g.
//! `{"level":"error","msg":"runc create failed: ...","time":"2026-..."}`. The monitor reports
//! the `msg` of the last line whose `level` is `error` as `error <msg>` on the sync pipe. The
//! tiny parser here reads flat objects only as far as needed: string values are decoded (all
//! JSON escapes, including `\uXXXX` surrogate pairs), other values are skipped.

/// The `msg` of the last `"level":"error"` line of `log`, if any.
pub fn last_error(log: &[u8]) -> Option<String> {
    log.split(|&b| b == b'\n').rev().find_map(|line| {
        let fields = parse_object(line)?;
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_deref())
        };
        if get("level") != Some("error") {
            return None;
        }
        get("msg").filter(|m| !m.is_empty()).map(str::to_owned)
    })
}

/// The fields of one JSON object: key and, for string values, the decoded string. `None` if
/// the line is not a well-formed object.
pub fn parse_object(line: &[u8]) -> Option<Vec<(String, Option<String>)>> {
    let mut c = Cursor { s: line, i: 0 };
    c.ws();
    c.eat(b'{')?;
    let mut fields = Vec::new();
    c.ws();
    if c.peek() == Some(b'}') {
        c.i += 1;
    } else {
        loop {
            c.ws();
            let key = c.string()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            let val = if c.peek() == Some(b'"') {
                Some(c.string()?)
            } else {
                c.skip_value(0)?;
                None
            };
            fields.push((key, val));
            c.ws();
            match c.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == c.s.len()).then_some(fields)
}

/// A position in the text being parsed.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// A string literal, decoded. Invalid UTF-8 and lone surrogates become U+FFFD.
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }

    /// The rest of a `\u` escape (after `\u`), joining a surrogate pair when one follows.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Some(char::from_u32(c).unwrap_or('\u{FFFD}'));
            }
            self.i = save; // not a low surrogate: decode it on its own next time
        }
        Some(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// Skips any value (number, literal, array, object); nesting is bounded.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek()? {
                        c if c == close => {
                            self.i += 1;
                            return Some(());
                        }
                        b',' | b':' => self.i += 1,
                        _ => self.skip_value(depth + 1)?,
                    }
                }
            }
            _ => {
                let start = self.i;
                let literal = |b: u8| b.is_ascii_alphanumeric() || b"+-.".contains(&b);
                while self.peek().is_some_and(literal) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(json: &str) -> Option<String> {
        let line = format!("{{\"k\":{json}}}");
        parse_object(line.as_bytes())?.pop()?.1
    }

    #[test]
    fn unescapes_strings() {
        assert_eq!(s(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(
            s(r#""q\" b\\ s\/ \b\f\n\r\t""#).as_deref(),
            Some("q\" b\\ s/ \u{8}\u{c}\n\r\t")
        );
        assert_eq!(s(r#""caf\u00e9 \u2713""#).as_deref(), Some("café ✓"));
        assert_eq!(s(r#""\ud83d\ude00""#).as_deref(), Some("😀"));
        // A lone high surrogate decodes to U+FFFD and does not eat the next escape.
        assert_eq!(s(r#""\ud83d\n""#).as_deref(), Some("\u{FFFD}\n"));
        assert_eq!(s(r#""raw ünïcode""#).as_deref(), Some("raw ünïcode"));
        assert_eq!(s(r#""bad \x""#), None);
        assert_eq!(s(r#""\u12""#), None);
        assert_eq!(s(r#""unterminated"#), None);
    }

    #[test]
    fn skips_other_values() {
        let f =
            parse_object(br#"{"a":1.5e3,"b":[1,{"x":"]"},null],"c":{"d":true},"e":-2,"msg":"m"}"#)
                .unwrap();
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "e", "msg"]);
        assert_eq!(f[4].1.as_deref(), Some("m"));
        assert!(parse_object(b"{}").unwrap().is_empty());
        assert!(parse_object(b"not json").is_none());
        assert!(parse_object(br#"{"a":1} trailing"#).is_none());
        assert!(parse_object(br#"{"a" 1}"#).is_none());
    }

    #[test]
    fn finds_last_error() {
        let log = br#"{"level":"warning","msg":"w","time":"t"}
{"level":"error","msg":"first","time":"t"}
{"level":"info","msg":"i","time":"t"}
{"level":"error","msg":"runc create failed: exec: \"/nope\": stat /nope: no such file","time":"t"}
{"level":"info","msg":"after","time":"t"}
garbage line
"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some("runc create failed: exec: \"/nope\": stat /nope: no such file")
        );
        assert_eq!(last_error(br#"{"level":"info","msg":"x"}"#), None);
        assert_eq!(last_error(b""), None);
        // Spaces around tokens are fine too.
        assert_eq!(
            last_error(br#"{ "msg" : "spaced" , "level" : "error" }"#).as_deref(),
            Some("spaced")
        );
    }
}
