//! Stopping a worker node: every process it started, its cgroups and mounts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::Worker;
use crate::wait_until;

impl Worker {
    /// Every process whose mount namespace is the node's.
    fn processes_in_mount_namespace(&self) -> Vec<i32> {
        let Ok(namespace) = std::fs::metadata(self.namespaces.join("mnt")) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|m| m.ino() == namespace.ino() && m.dev() == namespace.dev())
            })
            .collect()
    }

    /// Every cgroup of the node, deepest first.
    fn cgroups_deepest_first(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&entry.path(), found);
                    }
                }
            }
            found.push(dir.to_path_buf());
        }
        let mut found = Vec::new();
        for hierarchy in Self::cgroup_hierarchies() {
            let root = hierarchy.join(&self.cgroup);
            if root.exists() {
                walk(&root, &mut found);
            }
        }
        found
    }
}

fn kill(pid: i32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.kill();
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.kill();
        }
        // The kubelet, containerd's shims, and anything else the node started.
        for pid in self.processes_in_mount_namespace() {
            kill(pid);
        }
        // The containers (each in a mount namespace of its own).
        for cgroup in self.cgroups_deepest_first() {
            let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                kill(pid);
            }
        }
        wait_until(Duration::from_secs(10), || {
            self.cgroups_deepest_first()
                .iter()
                .all(|cgroup| std::fs::remove_dir(cgroup).is_ok() || !cgroup.exists())
        });
        for file in ["mnt", "uts"] {
            let _ = Command::new("umount")
                .arg(self.namespaces.join(file))
                .status();
        }
        let _ = Command::new("umount").arg(&self.namespaces).status();
    }
}
