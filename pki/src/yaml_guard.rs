//! A bound on how deep YAML may nest flow collections (`[` and `{`) before it
//! is parsed. The YAML scanner's work per token grows with the flow depth, so
//! 500 KB of `[[[[…` took minutes; a TenantControlPlane or a bundle file
//! needs a few levels.

/// The deepest flow nesting gantry parses. Kubernetes objects written in flow
/// style rarely pass 10 levels; JSON output of `kubectl` stays under 20.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Why `text` is refused before parsing, if it is: `[` and `{` nested deeper
/// than [`MAX_FLOW_DEPTH`]. Every bracket counts, in quoted scalars and
/// comments too: telling them apart would take a YAML scanner, and a quote
/// inside a plain scalar (`it 's`) would hide the nesting from a simple one.
/// Text that opens 64 brackets without closing them is refused, whatever
/// they are.
pub fn flow_nesting_problem(text: &str) -> Option<String> {
    let mut depth = 0usize;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(format!(
                        "nests [ and {{ more than {MAX_FLOW_DEPTH} deep; gantry does not parse that"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Parses YAML after [`flow_nesting_problem`]; the error never quotes the
/// text (it may hold a key), only where parsing failed.
pub fn parse<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_string())?;
    if let Some(problem) = flow_nesting_problem(text) {
        return Err(problem);
    }
    serde_yaml::from_str(text).map_err(|e| match e.location() {
        Some(at) => format!(
            "is not valid YAML (error at line {}, column {})",
            at.line(),
            at.column()
        ),
        None => "is not valid YAML".into(),
    })
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
        let balanced_in_quotes = format!("a: '{}{}'\n", "[".repeat(60), "]".repeat(60));
        assert_eq!(flow_nesting_problem(&balanced_in_quotes), None);
        let hidden = format!("a: it 's\nb: {}{}\n", "[".repeat(65), "]".repeat(65));
        assert!(
            flow_nesting_problem(&hidden).is_some(),
            "a quote inside a plain scalar hid the nesting"
        );
        let example = include_str!("../../examples/tenant-a.yaml");
        assert_eq!(flow_nesting_problem(example), None);
    }
}
