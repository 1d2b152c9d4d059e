//! Store records: the bytes the approver's store and a gateway's replica keep in sled, each
//! `[version] ++ bincode` under a 16 MiB limit with no trailing bytes. The input is decoded as
//! every record type a tree holds; what decodes must round-trip, and what the product computes
//! from a decoded record (status, JSON, summaries, policy windows) must not panic, since a
//! corrupt record on disk reaches exactly those paths.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_audit::AuditRecord;
use portcullis_core::model::{
    Grant, GrantRecord, Request, SessionRecord, SessionReport, SignedGrant,
};
use portcullis_core::stream::{Change, ChangeBody, SignedChange};
use portcullis_core::{Catalog, Timestamp};
use portcullis_fuzz::{body_round_trip, record_round_trip, signing_key, verifying_key};

/// Instants that stress the arithmetic: the epoch, now-ish, the far future, the end of time.
const INSTANTS: [u64; 4] = [0, 1_780_000_000_000, 253_402_300_799_000, u64::MAX];

fn check_grant(g: &Grant) {
    for now in INSTANTS {
        let now = Timestamp(now);
        let _ = g.status(now).as_str();
        let _ = g.is_active(now);
        let _ = g.remaining(now);
    }
    let ends = g.ends_at();
    assert!(ends <= g.expires_at, "a grant ends after it expires");
    let _ = ends.rfc3339();
}

fn check_signed_grant(s: &SignedGrant) {
    let peeked = s.grant();
    if let Some(g) = body_round_trip::<Grant>(&s.0.body) {
        check_grant(&g);
    }
    if let Ok(verified) = s.verify(&verifying_key()) {
        assert_eq!(Ok(verified), peeked, "verify and peek disagree");
    }
}

fn check_catalog(c: &Catalog) {
    for p in &c.policies {
        if let Some(a) = &p.auto_approve {
            for w in &a.windows {
                for now in INSTANTS {
                    let _ = w.contains(Timestamp(now));
                }
            }
        }
        for t in c.targets.values() {
            let _ = p.selector.matches(t);
        }
    }
    for (name, u) in &c.users {
        let _ = u.is_auditor();
        for k in &u.keys {
            let _ = c.authenticate(name, k);
        }
    }
    for t in c.targets.values() {
        let _ = c.target_by_name_or_address(&t.host, t.port);
        let _ = c.policies_for(t).count();
    }
}

fuzz_target!(|data: &[u8]| {
    // requests: id -> Request
    if let Some(r) = record_round_trip::<Request>(data) {
        let _ = r.is_pending();
        let _ = r.state.as_str();
        let _ = r.approved_by(&r.user);
        let _ = r.created_at.rfc3339();
        let _ = r.expires_at.plus(r.duration);
    }
    // grants: id -> GrantRecord
    if let Some(g) = record_round_trip::<GrantRecord>(data) {
        check_signed_grant(&g.signed);
    }
    // changes: rev -> SignedChange
    if let Some(c) = record_round_trip::<SignedChange>(data) {
        // The change reader tries today's layout and then the one before #13 (a catalog
        // without `certificates`, which today's encoder also writes while it is empty), so a
        // body the plain decoder reads must read the same, and whatever it reads must survive
        // being sealed again.
        let peeked = c.peek().ok();
        if let Some(plain) = body_round_trip::<Change>(&c.0.body) {
            assert_eq!(peeked.as_ref(), Some(&plain));
        }
        if let Some(change) = peeked {
            // The replica keeps its catalog as such a change, and reads it back at start.
            if let ChangeBody::Catalog(catalog) | ChangeBody::Snapshot { catalog, .. } =
                &change.body
            {
                check_catalog(catalog);
            }
            let again = SignedChange::seal(&signing_key(), &change);
            assert_eq!(again.peek().ok(), Some(change));
        }
    }
    // audit: seq -> AuditRecord
    if let Some(a) = record_round_trip::<AuditRecord>(data) {
        let json = a.to_json();
        assert_eq!(json["seq"], a.seq, "audit JSON carries another seq");
        assert_eq!(json["event"], a.event.kind.name());
        let _ = a.event.summary();
        let _ = portcullis_audit::verify(
            &verifying_key(),
            [(a.seq, Ok(a.clone()))],
            &portcullis_audit::End {
                signed: None,
                counter: Some(a.seq),
            },
        );
        let _ = portcullis_audit::recording_hashes([(a.seq, Ok(a))]);
    }
    // sessions: id -> SessionRecord
    if let Some(s) = record_round_trip::<SessionRecord>(data) {
        let _ = s.started_at.rfc3339();
    }
    // replica spool and live: seq -> SessionReport
    if let Some(r) = record_round_trip::<SessionReport>(data) {
        let _ = r.session();
    }
    // replica grants: id -> SignedGrant
    if let Some(s) = record_round_trip::<SignedGrant>(data) {
        check_signed_grant(&s);
    }
});
