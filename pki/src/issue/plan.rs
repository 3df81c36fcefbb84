//! The bundle under construction: the files decided so far, the decision
//! for each item, and the leaves still to sign.

use std::collections::BTreeMap;

use super::{Action, Decision, FileSet, PkiFile};
use crate::catalog::{Authority, CLUSTER_INFO, ServerUrl};
use crate::cert::LeafSubject;

/// Where a signed leaf goes.
pub(super) enum Output {
    Pair {
        crt: String,
        key: String,
    },
    Kubeconfig {
        file: &'static str,
        server: ServerUrl,
    },
}

impl Output {
    pub(super) fn label(&self) -> &str {
        match self {
            Output::Pair { crt, .. } => crt,
            Output::Kubeconfig { file, .. } => file,
        }
    }
}

pub(super) struct PendingLeaf {
    pub(super) subject: LeafSubject,
    pub(super) issuer: Authority,
    pub(super) output: Output,
}

/// The bundle under construction and the decisions taken so far.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) files: BTreeMap<String, PkiFile>,
    pub(super) decisions: Vec<Decision>,
    pub(super) keys_needed: usize,
}

impl Plan {
    pub(super) fn decide(&mut self, item: &str, action: Action) {
        self.decisions.push(Decision {
            item: item.into(),
            action,
        });
    }

    pub(super) fn put(&mut self, path: &str, contents: Vec<u8>, secret: bool) {
        self.files.insert(path.into(), PkiFile { contents, secret });
    }

    pub(super) fn keep_file(&mut self, path: &str, existing: &FileSet, secret: bool) {
        self.put(path, existing[path].clone(), secret);
    }

    /// Keeps files byte for byte. Files ending in `.key` or `.conf` are secret.
    pub(super) fn keep(&mut self, item: &str, existing: &FileSet, paths: &[&str]) {
        self.decide(item, Action::Kept);
        for path in paths {
            let secret =
                path.ends_with(".key") || (path.ends_with(".conf") && *path != CLUSTER_INFO);
            self.keep_file(path, existing, secret);
        }
    }

    pub(super) fn create_ca(&mut self, item: &str) {
        self.decide(item, Action::Created);
        self.keys_needed += 1;
    }

    pub(super) fn leaf(
        &mut self,
        item: String,
        action: Action,
        subject: LeafSubject,
        issuer: Authority,
        output: Output,
    ) -> PendingLeaf {
        self.decide(&item, action);
        self.keys_needed += 1;
        PendingLeaf {
            subject,
            issuer,
            output,
        }
    }
}
