//! `$(VAR)` expansion, as Kubernetes's `third_party/forked/golang/expansion`: `$(NAME)` is
//! replaced by the mapping's value, `$$` is an escaped `$`, an undefined `$(NAME)` and an
//! unterminated `$(` stay as written, and any other `$x` is copied unchanged.

/// Expands `input`, asking `mapping` for each `$(NAME)`; `None` keeps the reference verbatim
/// (Kubernetes's `MappingFuncFor` returns the wrapped name for an unknown variable).
pub fn expand(input: &str, mapping: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A trailing `$` is kept (Go's loop only looks at `$` with a byte after it).
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match mapping(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                // Incomplete reference: Go writes `$(` and resumes after the `(`.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(name: &str) -> Option<String> {
        match name {
            "VAR_A" => Some("A".into()),
            "VAR_B" => Some("B".into()),
            "VAR_C" => Some("C".into()),
            "VAR_REF" => Some("$(VAR_A)".into()),
            "VAR_EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Cases from Kubernetes's expand_test.go.
    #[test]
    fn expands_like_kubernetes() {
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(", "$("),
            ("$", "$"),
            ("$x", "$x"),
            ("$é", "$é"),
            ("$()", "$()"),
            ("$(VAR_A)$", "A$"),
            ("no refs", "no refs"),
            ("", ""),
            ("(VAR_A)", "(VAR_A)"),
            ("$VAR_A", "$VAR_A"),
            ("${VAR_A}", "${VAR_A}"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, map), want, "{input:?}");
        }
    }
}
