//! A complete tenant PKI (3 CAs, 7 leaves, 4 kubeconfigs with client
//! certificates, the service-account key pair and cluster-info): issued from
//! nothing, and re-checked when nothing needs renewing (what a controller pays
//! on every reconcile). `scripts/bench-pki` runs this beside `helm template`.

use criterion::{Criterion, criterion_group, criterion_main};
use gantry_pki::{Endpoint, FileSet, KeyAlgorithm, PkiSpec, issue};
use time::OffsetDateTime;

fn spec(algorithm: KeyAlgorithm) -> PkiSpec {
    let mut spec = PkiSpec::new(
        "tenant-a",
        Endpoint::parse("endpoint", "203.0.113.10").unwrap(),
    )
    .unwrap();
    spec.algorithm = algorithm;
    spec
}

fn full_pki(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_pki");
    let ecdsa = spec(KeyAlgorithm::EcdsaP256);
    group.bench_function("ecdsa-p256", |b| {
        b.iter(|| issue(&ecdsa, &FileSet::new(), OffsetDateTime::now_utc()).unwrap())
    });
    let existing = issue(&ecdsa, &FileSet::new(), OffsetDateTime::now_utc())
        .unwrap()
        .bundle
        .to_file_set();
    group.bench_function("ecdsa-p256-keep-all", |b| {
        b.iter(|| {
            let again = issue(&ecdsa, &existing, OffsetDateTime::now_utc()).unwrap();
            assert!(!again.changed());
        })
    });
    group.sample_size(10);
    let rsa = spec(KeyAlgorithm::Rsa2048);
    group.bench_function("rsa-2048", |b| {
        b.iter(|| issue(&rsa, &FileSet::new(), OffsetDateTime::now_utc()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, full_pki);
criterion_main!(benches);
