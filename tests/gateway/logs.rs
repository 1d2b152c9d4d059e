//! The daemons' logs as journald and log shippers read them: no colour escapes when stderr is a
//! file, and with `PORTCULLIS_LOG_FORMAT=json` (the env form of `--log-format json`) one JSON
//! object a line with its level and message.

use crate::support::Env;

use super::common;

/// Something worth logging on both daemons: logins and relayed commands, one refused.
fn some_activity(env: &Env) {
    env.gw_ssh("alice", &["request", "pg-staging", "--for", "5m"])
        .ok();
    env.gw_ssh("alice", &["reload"]).fails_with("admins");
}

#[test]
fn text_logs_written_to_a_file_carry_no_colour() {
    let g = common::start("");
    some_activity(&g.env);
    for (who, log) in [("approver", g.env.log()), ("gateway", g.env.gw_log())] {
        assert!(log.contains(" INFO "), "{who}: {log}");
        assert!(
            !log.contains('\u{1b}'),
            "{who}'s log has escape sequences:\n{log}"
        );
    }
}

#[test]
fn json_logs_are_one_object_a_line_with_level_and_message() {
    let mut env = Env::prepare("24h", "");
    env.daemon_env
        .push(("PORTCULLIS_LOG_FORMAT".into(), "json".into()));
    env.start_approver();
    env.start_gateway();
    some_activity(&env);
    for (who, log) in [("approver", env.log()), ("gateway", env.gw_log())] {
        let mut lines = 0;
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{who}: not JSON ({e}): {line}"));
            assert!(v["level"].is_string(), "{who}: no level: {line}");
            assert!(v["message"].is_string(), "{who}: no message: {line}");
            lines += 1;
        }
        assert!(lines > 3, "{who} logged {lines} lines:\n{log}");
        assert!(
            log.contains("\"level\":\"INFO\""),
            "{who}: no info line:\n{log}"
        );
    }
}
