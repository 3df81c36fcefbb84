//! A bound on how deep YAML may nest flow collections (`[` and `{`) before it
//! is parsed. The YAML scanner's work per token grows with the flow depth, so
//! 500 KB of `[[[[…` took minutes; a TenantControlPlane or a bundle file
//! needs a few levels.

/// The deepest flow nesting gantry parses. Kubernetes objects written in flow
/// style rarely pass 10 levels; JSON output of `kubectl` stays under 20.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Why `text` is refused before parsing, if it is: flow collections nested
/// deeper than [`MAX_FLOW_DEPTH`]. Quoted scalars and comments are skipped;
/// a bracket in a plain or block scalar counts, which only errs on the side of
/// refusing text that nests brackets 64 deep.
pub fn flow_nesting_problem(text: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        match c {
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(format!(
                        "nests [ and {{ more than {MAX_FLOW_DEPTH} deep; gantry does not parse that"
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '\'' if opens_scalar(previous) => {
                // 'it''s': a doubled quote is part of the scalar.
                while let Some(q) = chars.next() {
                    if q == '\'' && chars.peek() != Some(&'\'') {
                        break;
                    }
                    if q == '\'' {
                        chars.next();
                    }
                }
            }
            '"' if opens_scalar(previous) => {
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '#' if previous.is_whitespace() => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
        previous = c;
    }
    None
}

/// Whether a quote after `previous` starts a quoted scalar (in `it's`, it
/// is part of a plain one and hides nothing).
fn opens_scalar(previous: char) -> bool {
    previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':' | '-' | '?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_and_ordinary_yaml_is_not() {
        let deep = format!("spec: {}{}", "[".repeat(65), "]".repeat(65));
        assert!(flow_nesting_problem(&deep).is_some());
        let deep_maps = format!("spec: {}1{}", "{a: ".repeat(65), "}".repeat(65));
        assert!(flow_nesting_problem(&deep_maps).is_some());
        let fine = format!("spec: {}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(flow_nesting_problem(&fine), None);
        let quoted = format!(
            "a: '{}''s'\nb: \"{}\\\"\"\nc: 1 # {}\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        assert_eq!(flow_nesting_problem(&quoted), None);
        let hidden = format!("a: it's {}'\n", "[".repeat(65));
        assert!(
            flow_nesting_problem(&hidden).is_some(),
            "a quote inside a plain scalar hid the nesting"
        );
        let example = include_str!("../../examples/tenant-a.yaml");
        assert_eq!(flow_nesting_problem(example), None);
    }
}
