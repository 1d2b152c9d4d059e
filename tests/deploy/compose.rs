//! The compose demo without Docker: `deploy/demo-init.sh` (what the compose `init` service runs)
//! with `ROOT` standing for the containers' `/`, then the approver and the gateway started
//! with the commands and uids `deploy/docker-compose.yml` gives them, in a network namespace
//! whose `/etc/hosts` resolves the service names as the compose network does. Then the demo
//! works: the demo user requests the demo target and forwards to it through the gateway.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ns::{self, Netns};
use crate::support::{run, BIN};

/// One compose service: its `key: value` lines (the file keeps each on one line).
fn services(compose: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in compose.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_services = line.starts_with("services:");
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            let name = name.trim_end_matches(':').trim().to_string();
            all.insert(name.clone(), BTreeMap::new());
            current = Some(name);
        } else if let (Some(s), Some(kv)) = (&current, line.strip_prefix("    ")) {
            if let Some((k, v)) = kv.split_once(':') {
                let v = v.split(" #").next().unwrap().trim().to_string();
                all.get_mut(s).unwrap().insert(k.trim().to_string(), v);
            }
        }
    }
    all
}

/// A flow sequence of strings (`["a", "b"]`), as the compose file writes them.
fn list(v: &str) -> Vec<String> {
    serde_json::from_str(v).unwrap_or_else(|e| panic!("not a list of strings ({e}): {v}"))
}

/// The named volumes a service mounts, with where.
fn volumes(svc: &BTreeMap<String, String>) -> Vec<(String, String)> {
    svc.get("volumes")
        .map(|v| list(v))
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let mut parts = m.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
}

fn uid_of(svc: &BTreeMap<String, String>) -> String {
    let user = svc
        .get("user")
        .expect("each daemon names its uid")
        .trim_matches('"');
    let (uid, gid) = user.split_once(':').unwrap();
    assert_eq!(uid, gid);
    uid.to_string()
}

#[test]
fn the_compose_demo_runs_without_docker() {
    if !ns::root_or_skip("the_compose_demo_runs_without_docker") {
        return;
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let compose = std::fs::read_to_string(deploy.join("docker-compose.yml")).unwrap();
    let dockerfile = std::fs::read_to_string(deploy.join("Dockerfile")).unwrap();
    let svc = services(&compose);

    // One volume per process; the target gets only the key volume; the admin's key is in no
    // daemon's volume.
    let mounts =
        |name: &str| -> Vec<String> { volumes(&svc[name]).into_iter().map(|(v, _)| v).collect() };
    let (approver, gateway) = (mounts("approver"), mounts("gateway"));
    let private = |mine: &[String], theirs: &[String]| {
        mine.iter()
            .filter(|v| !theirs.contains(v) && v.as_str() != "config")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        private(&approver, &gateway).len(),
        1,
        "{approver:?} / {gateway:?}"
    );
    assert_eq!(
        private(&gateway, &approver).len(),
        1,
        "{approver:?} / {gateway:?}"
    );
    assert!(
        approver
            .iter()
            .all(|v| !gateway.contains(v) || v == "config"),
        "the approver and the gateway share a volume: {approver:?} / {gateway:?}"
    );
    for s in ["approver", "gateway"] {
        assert!(
            list(&svc[s]["volumes"])
                .iter()
                .any(|m| m.starts_with("config:") && m.ends_with(":ro")),
            "{s} reads the config, read-only"
        );
    }
    assert_eq!(
        mounts("sshd"),
        ["target-keys"],
        "the target gets the key volume only"
    );
    for s in ["approver", "gateway", "sshd"] {
        assert!(
            !mounts(s).contains(&"admin".to_string()),
            "{s} mounts the admin's key"
        );
    }
    // The daemons' uids are the Dockerfile's users.
    let (a_uid, g_uid) = (uid_of(&svc["approver"]), uid_of(&svc["gateway"]));
    assert_ne!(a_uid, g_uid);
    assert!(
        dockerfile.contains(&format!("--uid {a_uid} "))
            && dockerfile.contains("portcullis-approver")
    );
    assert!(
        dockerfile.contains(&format!("--uid {g_uid} "))
            && dockerfile.contains("portcullis-gateway")
    );
    // 2223 is reachable on the compose network and published only on the host's loopback.
    assert!(list(&svc["approver"]["ports"])
        .iter()
        .all(|p| p.starts_with("127.0.0.1:")));

    // The init service's script, with ROOT for the containers' / and portcullis on PATH.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let init = &svc["init"];
    assert_eq!(init["user"], "\"0\"");
    let entry = list(&init["entrypoint"]);
    assert_eq!(entry, ["/bin/sh", "/demo-init.sh"]);
    assert!(list(&init["volumes"]).contains(&"./demo-init.sh:/demo-init.sh:ro".to_string()));
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = deploy.join("demo-init.sh");
    let out = run(Command::new("sh")
        .arg(&script)
        .env("ROOT", root)
        .env("PATH", &path));
    out.ok();
    // A second `up` runs it again: it leaves the setup alone.
    run(Command::new("sh")
        .arg(&script)
        .env("ROOT", root)
        .env("PATH", &path))
    .ok();

    let at =
        |container_path: &str| -> PathBuf { root.join(container_path.trim_start_matches('/')) };
    let init_mount = |volume: &str| -> PathBuf {
        let (_, path) = volumes(init)
            .into_iter()
            .find(|(v, _)| v == volume)
            .unwrap();
        at(&path)
    };
    let target_keys: Vec<String> = std::fs::read_dir(init_mount("target-keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(target_keys, ["gateway_client_key.pub"]);

    let mut ns = Netns::new(root, &["approver", "gateway", "postgres", "sshd"]);
    // The demo target (postgres:5432) stands in as an echo server.
    ns.start_echo("127.0.0.1:5432");
    let start = |ns: &mut Netns, name: &str| {
        let s = &svc[name];
        let uid = uid_of(s);
        let mut words = list(&s["command"]);
        let last = words.len() - 1;
        words[last] = at(&words[last]).display().to_string();
        let mut c = ns.command("setpriv");
        c.args([
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            "--",
            BIN,
        ])
        .args(&words)
        .env("PORTCULLIS_LOG", "debug");
        ns.spawn(name, c);
    };
    start(&mut ns, "approver");
    ns.wait_listening("approver", "2223");
    start(&mut ns, "gateway");
    ns.wait_listening("gateway", "2222");

    // Each daemon's volume is its uid's alone.
    let a_dir = init_mount("approver-data");
    let g_dir = init_mount("gateway-data");
    for (path, want) in [
        (a_dir.clone(), format!("{a_uid}:{a_uid} 700")),
        (
            a_dir.join("grant_signing_key"),
            format!("{a_uid}:{a_uid} 600"),
        ),
        (a_dir.join("store"), format!("{a_uid}:{a_uid} 700")),
        (g_dir.clone(), format!("{g_uid}:{g_uid} 700")),
        (g_dir.join("client_key"), format!("{g_uid}:{g_uid} 600")),
        (g_dir.join("replica"), format!("{g_uid}:{g_uid} 700")),
        (
            init_mount("admin").join("demo_ed25519"),
            "0:0 600".to_string(),
        ),
    ] {
        assert_eq!(ns::stat_ids(&path), want, "{}", path.display());
    }
    let cat = run(ns
        .command("setpriv")
        .args([
            "--reuid",
            &g_uid,
            "--regid",
            &g_uid,
            "--clear-groups",
            "--",
            "cat",
        ])
        .arg(a_dir.join("grant_signing_key")));
    cat.fails_with("Permission denied");

    // The demo, as its comment says: request, then forward.
    let args = ns::ssh_args(
        root,
        &init_mount("admin").join("demo_ed25519"),
        "2222",
        "localhost",
        &g_dir.join("host_key.pub"),
    );
    let ssh = |words: &[&str]| {
        run(ns
            .command("ssh")
            .args(&args)
            .arg("-n")
            .arg("demo@localhost")
            .args(words))
    };
    ns.eventually(
        "the gateway to reach approver:2223 and get the catalog",
        || ssh(&["whoami"]).code == 0,
    );
    ssh(&["request", "demo-db", "--for", "10m"]).ok();
    ns.eventually("a forward to postgres:5432 through the gateway", || {
        ns::echo_through(&ns, &args, "demo@localhost", "demo-db:5432", b"hello, demo").code == 0
    });
}
