//! What one user's open channels may make the gateway hold, over all their connections
//! (`max_channel_memory_per_user`): each forward counts for 672 KiB, so 8 MiB is twelve of
//! them, on as many connections; the thirteenth is refused with the reason on the client's
//! screen, a log line and an audit event, and a forward that ends gives its part back.

use super::common::{self, grant, Tunnel};
use super::refused_channels::refusals;

#[test]
fn a_users_channels_past_their_memory_budget_are_refused_with_the_reason() {
    let g = common::start_tuned(|_| String::new(), "max_channel_memory_per_user = \"8 MiB\"");
    let env = &g.env;
    grant(env, "alice", "echo", "1h");
    let dest = format!("echo:{}", g.echo.port);
    // Twelve connections of one forward each: the budget is the user's, not a connection's.
    let mut held: Vec<Tunnel> = (0..12)
        .map(|i| {
            let mut t = Tunnel::open(env, "alice", &dest);
            assert_eq!(t.echo(format!("{i}").as_bytes()), format!("{i}").as_bytes());
            t
        })
        .collect();

    let (code, stderr, _) = Tunnel::open(env, "alice", &dest).wait_cut();
    assert_ne!(code, 0);
    assert!(
        stderr.contains("open failed: resource shortage: portcullis: alice's open channels may already hold 7.9 MiB of the 8.0 MiB one user may have the gateway hold (max_channel_memory_per_user), and a forward needs 672.0 KiB"),
        "{stderr}"
    );
    env.eventually("the refusal in the gateway log", || {
        env.gw_log()
            .contains("forward refused: alice's open channels may already hold")
    });
    env.eventually("the refusal in the audit log", || {
        refusals(env)
            .iter()
            .any(|e| e["reason"] == "channel_memory" && e["user"] == "alice")
    });

    // Another user has a budget of their own.
    grant(env, "dave", "echo", "1h");
    let mut dave = Tunnel::open(env, "dave", &dest);
    assert_eq!(dave.echo(b"dave"), b"dave");

    // A forward that ends gives its part back.
    assert_eq!(held.pop().unwrap().close(), 0);
    env.eventually("room for alice again", || {
        let mut t = Tunnel::open(env, "alice", &dest);
        let echoed = t.try_echo(b"again");
        t.close();
        echoed.as_deref() == Some(b"again".as_slice())
    });
    for t in held {
        assert_eq!(t.close(), 0);
    }
    assert_eq!(dave.close(), 0);
}
