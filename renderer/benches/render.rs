//! Rendering a full tenant (both sets, every object checked against its
//! k8s-openapi type) from a ready PKI: key generation is excluded. Also the
//! chart archive. `scripts/bench-render` runs this beside `helm template`.

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/fixture/mod.rs"]
mod fixture;

fn render(c: &mut Criterion) {
    let input = fixture::input();
    let pki = fixture::pki(&input);
    c.bench_function("render_full_tenant", |b| {
        b.iter(|| gantry_renderer::render(&input, &pki).unwrap())
    });
    let rendered = gantry_renderer::render(&input, &pki).unwrap();
    c.bench_function("chart_archive", |b| {
        b.iter(|| {
            gantry_renderer::chart::package(&input.name, input.version, &rendered.service).unwrap()
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
