//! `[gateway] metrics` and `[approver] metrics`: after sessions opened with the stock `ssh`,
//! refused logins, and cuts by revocation and by expiry, `/metrics` on each daemon says so.
//! The exposition is parsed by the Prometheus project's own Python parser
//! (`prometheus_client.parser`), not by anything of ours nor by the crate that wrote it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use super::common::{grant, Tunnel};
use crate::support::{keygen, ssh_with_keys, targets::Echo, tcp_target, Env};

/// One sample: its name and labels (`name{k="v",…}`, labels sorted), and its value.
type Samples = BTreeMap<String, f64>;

/// `GET /metrics` from the daemon whose data directory is `dir`: status line and body.
fn scrape(dir: &std::path::Path, path: &str) -> (String, String) {
    let addr = std::fs::read_to_string(dir.join("metrics.addr")).unwrap();
    let mut s = TcpStream::connect(addr.trim()).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Parse an exposition with `prometheus_client.parser.text_string_to_metric_families`.
fn parse(text: &str) -> Samples {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n\
        \x20       out[s.name + ('{' + labels + '}' if labels else '')] = s.value\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metrics(dir: &std::path::Path) -> Samples {
    let (status, body) = scrape(dir, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    parse(&body)
}

fn value(m: &Samples, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// `ssh` to the gateway with `key` as `login`: refused, it exits 255.
fn refused_login(env: &Env, login: &str, key: &std::path::Path) {
    let out = ssh_with_keys(&env.gw_port(), login, &[key], &[], &["whoami"]);
    assert_eq!(out.code, 255, "{login} got in: {}", out.stderr);
}

#[test]
fn metrics_count_what_happened() {
    let echo = Echo::start();
    let mut env = Env::prepare("24h", &tcp_target("echo", echo.port));
    let cfg = std::fs::read_to_string(&env.config).unwrap().replacen(
        "request_ttl = \"24h\"",
        "request_ttl = \"24h\"\nmetrics = \"127.0.0.1:0\"",
        1,
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.gateway_extra = "metrics = \"127.0.0.1:0\"\n".into();
    env.start_approver();
    env.start_gateway();
    let gw_dir = env.path().join("gateway");
    let ap_dir = env.path().join("approver");
    let dest = format!("echo:{}", echo.port);

    // Anything but /metrics is not found.
    let (status, _) = scrape(&gw_dir, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    // Two forwards under a grant that is then revoked.
    let revoked = grant(&env, "alice", "echo", "10m");
    let mut tunnels: Vec<Tunnel> = (0..2).map(|_| Tunnel::open(&env, "alice", &dest)).collect();
    for t in &mut tunnels {
        assert_eq!(t.echo(b"12345"), b"12345");
    }
    let live = metrics(&gw_dir);
    assert_eq!(value(&live, "portcullis_gateway_sessions_live"), 2.0);
    env.admin(
        "ada",
        &["revoke", &revoked.to_string(), "--reason", "metrics"],
    )
    .ok();
    for t in tunnels {
        let (code, err, _) = t.wait_cut();
        assert_eq!(code, 255, "{err}");
        assert!(err.contains("revoked"), "{err}");
    }

    // One under a grant that runs out.
    grant(&env, "alice", "echo", "3s");
    let mut t = Tunnel::open(&env, "alice", &dest);
    assert_eq!(t.echo(b"x"), b"x");
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("expired"), "{err}");

    // Logins refused: a key nobody holds, a user nobody is, and bob's key offered as alice.
    keygen(env.path(), "stranger");
    let stranger = env.path().join("stranger_key");
    refused_login(&env, "alice", &stranger);
    refused_login(&env, "nobody", &stranger);
    refused_login(&env, "alice", &env.key("bob"));
    // And one at the approver.
    let port = env.addr.rsplit(':').next().unwrap().to_string();
    let out = ssh_with_keys(&port, "alice", &[&stranger], &[], &["status"]);
    assert_eq!(out.code, 255, "{}", out.stderr);

    // A refused connection is counted as it goes, and the ends are counted as reported.
    let mut gw = Samples::new();
    env.eventually("the gateway's metrics to settle", || {
        gw = metrics(&gw_dir);
        value(
            &gw,
            "portcullis_gateway_logins_refused_total{reason=\"wrong_user\"}",
        ) == 1.0
            && value(&gw, "portcullis_gateway_sessions_live") == 0.0
            && value(&gw, "portcullis_gateway_spool_depth") == 0.0
    });
    let expect = [
        (
            "portcullis_gateway_sessions_opened_total{kind=\"forward\"}",
            3.0,
        ),
        ("portcullis_gateway_cuts_total{reason=\"revoked\"}", 2.0),
        ("portcullis_gateway_cuts_total{reason=\"expired\"}", 1.0),
        (
            "portcullis_gateway_logins_refused_total{reason=\"unknown_key\"}",
            1.0,
        ),
        (
            "portcullis_gateway_logins_refused_total{reason=\"unknown_user\"}",
            1.0,
        ),
        (
            "portcullis_gateway_logins_refused_total{reason=\"wrong_user\"}",
            1.0,
        ),
        // Each cut timed: two from the revocation's arrival, one from the grant's end.
        ("portcullis_gateway_cut_delay_seconds_count", 3.0),
        (
            "portcullis_gateway_cut_delay_seconds_bucket{le=\"+Inf\"}",
            3.0,
        ),
        (
            "portcullis_gateway_relayed_bytes_total{direction=\"to_target\"}",
            11.0,
        ),
        (
            "portcullis_gateway_relayed_bytes_total{direction=\"to_client\"}",
            11.0,
        ),
        ("portcullis_gateway_approver_link_up", 1.0),
        ("portcullis_gateway_replica_revisions_behind", 0.0),
    ];
    for (key, want) in expect {
        assert_eq!(value(&gw, key), want, "{key} in {gw:#?}");
    }
    let delay = value(&gw, "portcullis_gateway_cut_delay_seconds_sum");
    assert!(
        delay < 1.0,
        "three cuts took {delay} s after their ends: {gw:#?}"
    );
    assert!(value(&gw, "portcullis_gateway_approver_silence_seconds") < 20.0);

    let mut ap = Samples::new();
    env.eventually("the approver's metrics to settle", || {
        ap = metrics(&ap_dir);
        value(
            &ap,
            "portcullis_approver_decisions_total{decision=\"grant_expired\"}",
        ) == 1.0
            && value(
                &ap,
                "portcullis_approver_logins_refused_total{reason=\"unknown_key\"}",
            ) == 1.0
    });
    let expect = [
        ("portcullis_approver_requests_total", 2.0),
        (
            "portcullis_approver_decisions_total{decision=\"granted\"}",
            2.0,
        ),
        (
            "portcullis_approver_decisions_total{decision=\"revoked\"}",
            1.0,
        ),
        ("portcullis_approver_grants_active", 0.0),
        ("portcullis_approver_requests_pending", 0.0),
    ];
    for (key, want) in expect {
        assert_eq!(value(&ap, key), want, "{key} in {ap:#?}");
    }
    // Every audit record committed since start, the sessions' starts and ends among them.
    let records = env.audit_events().len() as f64;
    assert_eq!(
        value(&ap, "portcullis_approver_audit_records_total"),
        records,
        "{ap:#?}"
    );
}
