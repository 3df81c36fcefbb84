//! What the bundle tests (`bundle_safety.rs`, `bundle_hostile.rs`) share:
//! `gantry render` into a folder, and the two outcomes they assert.

use std::path::Path;
use std::process::Output;

use crate::gantry;

/// `gantry render MANIFEST --out OUT EXTRA…`, captured.
pub fn render(manifest: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "render",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gantry(&args)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_ok(output: &Output) {
    assert!(output.status.success(), "{}", stderr(output));
}

/// Exit 2 with one line on stderr that contains every one of `needles`.
pub fn assert_refused(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
    let text = stderr(output);
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}
