//! The TOML configuration, read by both the approver and the gateway: text -> `ConfigFile` ->
//! validated `Config`. A file that validates must satisfy every rule validation promises (the
//! rest of the product relies on them without checking again), its catalog must survive the
//! codec (it is streamed and kept in replicas), and parsing must be deterministic.

#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use portcullis_core::catalog::{TargetKind, BUILTIN_GROUPS};
use portcullis_core::config::{self, valid_name, ConnectionLimits};
use portcullis_core::stream::{Change, ChangeBody, SignedChange};
use portcullis_core::{Catalog, Timestamp};

fn check_limits(l: &ConnectionLimits) {
    assert!(l.max_connections >= 1 && l.max_connections_per_source >= 1);
    assert!(!l.login_grace.is_zero());
}

fn check_catalog(c: &Catalog) {
    for g in BUILTIN_GROUPS {
        assert!(c.groups.contains_key(g), "built-in group {g} missing");
    }
    let mut owner: HashMap<&str, String> = HashMap::new();
    for (name, u) in &c.users {
        assert_eq!(name, &u.name);
        assert!(valid_name(name), "user name {name:?} accepted");
        assert!(
            !u.keys.is_empty() || !c.certificates.user_cas.is_empty(),
            "user {name} without a key accepted, and no CA to log in by"
        );
        assert!(
            !c.gateways.contains_key(name),
            "{name} is a user and a gateway"
        );
        for k in &u.keys {
            let who = format!("user {name}");
            assert_eq!(
                owner.entry(k).or_insert_with(|| who.clone()),
                &who,
                "shared key"
            );
        }
        for g in &u.groups {
            assert!(c.groups.get(g).is_some_and(|m| m.contains(name)));
        }
    }
    for (name, g) in &c.gateways {
        assert!(valid_name(name), "gateway name {name:?} accepted");
        let who = format!("gateway {name}");
        assert_eq!(
            owner.entry(&g.key).or_insert_with(|| who.clone()),
            &who,
            "shared key"
        );
    }
    for (name, t) in &c.targets {
        assert_eq!(name, &t.name);
        assert!(valid_name(name), "target name {name:?} accepted");
        assert!(
            t.port != 0 && !t.host.is_empty(),
            "target {name} has no address"
        );
        assert_eq!(
            config::split_host_port(&t.address),
            Ok((t.host.clone(), t.port))
        );
        match t.kind {
            TargetKind::Ssh => assert!(t.login.is_some() && t.host_key.is_some()),
            TargetKind::Tcp => assert!(t.login.is_none() && t.host_key.is_none()),
        }
    }
    for (i, p) in c.policies.iter().enumerate() {
        assert!(valid_name(&p.name), "policy name {:?} accepted", p.name);
        assert!(
            !c.policies[..i].iter().any(|q| q.name == p.name),
            "duplicate policy"
        );
        assert!(p.approvals >= 1);
        assert!(!p.default_duration.is_zero() && p.default_duration <= p.max_duration);
        assert!(!p.approvers.is_empty() || p.auto_approve.is_some());
        assert!(!p.selector.labels.is_empty() || !p.selector.targets.is_empty());
        for t in &p.selector.targets {
            assert!(c.targets.contains_key(t), "policy names unknown target {t}");
        }
        for g in &p.approvers {
            assert!(c.groups.contains_key(g), "policy names unknown group {g}");
        }
        if let Some(a) = &p.auto_approve {
            for g in &a.groups {
                assert!(c.groups.contains_key(g));
            }
            for w in &a.windows {
                for t in [0, 1_780_000_000_000, u64::MAX] {
                    let _ = w.contains(Timestamp(t));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Config files are read as UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text) {
        Ok(c) => {
            if let Some(a) = &c.approver {
                assert!(a.listen.parse::<SocketAddr>().is_ok());
                assert!(!a.request_ttl.is_zero());
                check_limits(&a.limits);
            }
            if let Some(g) = &c.gateway {
                assert!(g.listen.parse::<SocketAddr>().is_ok());
                assert!(!g.expiry_warning.is_zero() && !g.fail_after.is_zero());
                assert!(g.max_channels_per_connection >= 1);
                assert!(g.max_channel_memory_per_user >= config::MIN_CHANNEL_MEMORY_PER_USER);
                check_limits(&g.limits);
                for k in &g.grant_signing_keys {
                    assert!(portcullis_core::keys::parse_signing_key(k).is_ok());
                }
            }
            check_catalog(&c.catalog);
            // The catalog is streamed to gateways and kept in their replicas, inside a signed
            // change (whose decoder also reads catalogs from before `certificates`: a bare
            // catalog without certificates leaves the field out, see core's catalog_v1).
            let change = Change {
                rev: 1,
                at: Timestamp(0),
                body: ChangeBody::Catalog(c.catalog.clone()),
            };
            let signed = SignedChange::seal(&portcullis_fuzz::signing_key(), &change);
            assert_eq!(signed.peek().ok(), Some(change));
            // Deterministic: the same text validates to the same configuration.
            match config::parse(text) {
                Ok(again) => {
                    assert_eq!(again.catalog, c.catalog);
                    assert_eq!(again.approver, c.approver);
                    assert_eq!(again.gateway, c.gateway);
                }
                Err(e) => panic!("the same text failed the second time: {e}"),
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without a problem");
            let _ = e.to_string();
        }
    }
});
