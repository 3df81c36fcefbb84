//! The scale bench's process figures (heap in use, RSS, CPU) and its child
//! process, which serves the API double over HTTP.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::support::api_double::InMemoryApiServerDouble;

/// The system allocator, counting the bytes in use: what the process holds,
/// as opposed to RSS, which keeps what a burst (a large list) once took.
struct CountingAllocator;

static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        HEAP_BYTES.fetch_add(size, Ordering::Relaxed);
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

pub fn heap_mib() -> f64 {
    HEAP_BYTES.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

/// A field of /proc/self/status, in KiB.
pub fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

/// User + system CPU of this process so far.
pub fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0);
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The child: serves the service-cluster double at `/`, and one tenant double
/// per namespace at `/tenant/<namespace>/`.
pub fn serve_double(port_file: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        std::fs::write(port_file, port.to_string()).unwrap();
        let service_double = InMemoryApiServerDouble::new();
        // Stands in for the StatefulSet and Deployment controllers and the kubelets.
        service_double.roll_out_workloads();
        let tenant_doubles: Arc<
            std::sync::Mutex<std::collections::HashMap<String, InMemoryApiServerDouble>>,
        > = Arc::default();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service_double = service_double.clone();
            let tenant_doubles = tenant_doubles.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let service_double = service_double.clone();
                        let tenant_doubles = tenant_doubles.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let (mut parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let path_and_query =
                                parts.uri.path_and_query().unwrap().as_str().to_string();
                            let double = match path_and_query.strip_prefix("/tenant/") {
                                Some(rest) => {
                                    let (namespace, rest) = rest.split_once('/').unwrap();
                                    parts.uri = format!("/{rest}").parse().unwrap();
                                    tenant_doubles
                                        .lock()
                                        .unwrap()
                                        .entry(namespace.to_string())
                                        .or_default()
                                        .clone()
                                }
                                None => service_double,
                            };
                            let request = http::Request::from_parts(
                                parts,
                                kube::client::Body::from(body.to_vec()),
                            );
                            Ok::<_, Infallible>(double.handle(request).await)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
