//! Free TCP ports for servers a test starts itself. Shared by the
//! gantry-tests crate and the controller's tests (`#[path]` include), so
//! both pick ports the same way, out of reach of outgoing connections.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server the test
/// starts itself.
///
/// The port comes from *below* the kernel's ephemeral range, never from it:
/// a port the kernel hands out for `bind(0)` is also the pool every outgoing
/// connection draws its source port from, so between this call and the
/// server's own `bind` another client (say, one etcd member dialling its
/// peers) could take it, and the server fails with "address already in use".
/// Each call in a process tries the next port after the previous call's
/// (parallel tests get different ports), from a start point that differs per
/// process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (first, end) = ports_below_ephemeral_range();
    let span = u32::from(end - first);
    let start = std::process::id() % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = first + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 in {first}..{end}");
}

/// The ports from 10000 up to where the kernel's ephemeral range starts
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default).
fn ports_below_ephemeral_range() -> (u16, u16) {
    const FIRST: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(
        ephemeral_start > FIRST + 1_000,
        "the kernel's ephemeral port range starts at {ephemeral_start}, leaving no room below it \
         for test servers; raise net.ipv4.ip_local_port_range's first value above {}",
        FIRST + 1_000
    );
    (FIRST, ephemeral_start)
}
