//! Policy evaluation and grant lookup: the two checks on the hot path.
//! Run: cargo bench -p portcullis-core --bench policy

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_core::catalog::{Catalog, Policy, Selector, Target, TargetKind, User};
use portcullis_core::grant_index::GrantIndex;
use portcullis_core::model::Grant;
use portcullis_core::policy;
use portcullis_core::window::Window;
use portcullis_core::Timestamp;

/// 200 targets across 20 environments, 50 policies, 1,000 users.
fn catalog() -> Catalog {
    let mut c = Catalog::default();
    for i in 0..1000 {
        let name = format!("user{i}");
        c.users.insert(
            name.clone(),
            User {
                name,
                keys: vec![],
                groups: [format!("team{}", i % 10)].into(),
            },
        );
    }
    for i in 0..200 {
        let name = format!("target{i}");
        c.targets.insert(
            name.clone(),
            Target {
                name,
                kind: TargetKind::Tcp,
                address: format!("10.0.{}.{}:5432", i / 250, i % 250),
                host: format!("10.0.{}.{}", i / 250, i % 250),
                port: 5432,
                login: None,
                host_key: None,
                labels: [
                    ("env".to_string(), format!("env{}", i % 20)),
                    ("team".to_string(), format!("team{}", i % 10)),
                ]
                .into(),
                record_data: false,
            },
        );
    }
    for i in 0..50 {
        c.policies.push(Policy {
            name: format!("policy{i}"),
            selector: Selector {
                labels: [("env".to_string(), format!("env{}", i % 20))].into(),
                targets: vec![],
            },
            approvers: vec![format!("team{}", (i + 1) % 10)],
            approvals: 2,
            max_duration: Duration::from_secs(4 * 3600),
            default_duration: Duration::from_secs(3600),
            require_reason: i % 2 == 0,
            auto_approve: Some(portcullis_core::catalog::AutoApprove {
                groups: vec![format!("team{}", i % 10)],
                windows: vec![Window::parse("Mon-Fri 08:00-18:00 UTC").unwrap()],
            }),
            record_data: false,
        });
    }
    c
}

fn bench(c: &mut Criterion) {
    let cat = catalog();
    let user = cat.users["user7"].clone();
    let now = Timestamp(1_795_392_000_000 + 12 * 3_600_000);
    c.bench_function("policy evaluate (200 targets, 50 policies)", |b| {
        b.iter(|| {
            black_box(
                policy::evaluate(
                    black_box(&cat),
                    black_box(&user),
                    black_box("target137"),
                    Some(Duration::from_secs(1800)),
                    Some("INC-1"),
                    now,
                )
                .is_ok(),
            )
        })
    });

    let mut index = GrantIndex::new();
    for i in 0..10_000u64 {
        index.upsert(Grant {
            id: i,
            request: i,
            user: format!("user{}", i % 1000),
            target: format!("target{}", i % 200),
            policy: "p".into(),
            issued_at: Timestamp(0),
            expires_at: Timestamp(now.0 + i * 1000),
            approvers: vec![],
            revoked: None,
        });
    }
    c.bench_function("grant lookup (10k grants, hit)", |b| {
        b.iter(|| black_box(index.active(black_box("user7"), black_box("target7"), now)))
    });
    c.bench_function("grant lookup (10k grants, miss)", |b| {
        b.iter(|| black_box(index.active(black_box("user7"), black_box("target8"), now)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
