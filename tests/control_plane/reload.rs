//! Reload: a good file takes effect; a bad one is refused and the old one kept. Both ways in:
//! `admin reload` and SIGHUP.

use crate::support::Env;

#[test]
fn good_reload_takes_effect_and_bad_reload_keeps_the_old_config() {
    let env = Env::start();
    env.ssh("alice", &["request", "pg-dev"])
        .fails_with("unknown target \"pg-dev\"");

    let good = std::fs::read_to_string(&env.config).unwrap()
        + "\n[[targets]]\nname = \"pg-dev\"\nkind = \"tcp\"\naddress = \"127.0.0.1:5555\"\nlabels = { env = \"staging\" }\n";
    std::fs::write(&env.config, &good).unwrap();
    let out = env.admin("ada", &["reload"]);
    out.ok();
    assert!(out.stdout.contains("5 targets"), "{}", out.stdout);
    env.ssh("alice", &["request", "pg-dev", "--for", "10m"])
        .ok();

    // A broken file: refused with the reason, old config kept.
    std::fs::write(
        &env.config,
        good.replace("approvals = 2", "approvals = \"two\""),
    )
    .unwrap();
    env.admin("ada", &["reload"])
        .fails_with("reload refused, the old config stays in force");
    env.ssh("alice", &["request", "pg-dev", "--for", "10m"])
        .ok();
    assert!(env.has_event("config.refused", "actor", serde_json::json!("ada")));
    assert!(env.has_event("config.loaded", "actor", serde_json::json!("ada")));
}

#[test]
fn sighup_reloads() {
    let env = Env::start();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg + "\n[[targets]]\nname = \"pg-hup\"\nkind = \"tcp\"\naddress = \"127.0.0.1:5556\"\nlabels = { env = \"staging\" }\n",
    )
    .unwrap();
    let st = std::process::Command::new("kill")
        .args(["-HUP", &env.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    env.eventually("the reload after SIGHUP", || {
        env.has_event("config.loaded", "actor", serde_json::json!("SIGHUP"))
    });
    env.ssh("alice", &["request", "pg-hup", "--for", "10m"])
        .ok();
}
