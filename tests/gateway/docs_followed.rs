//! The docs followed literally (#18): README's, docs/operators.md's and docs/users.md's command
//! lines are read from the Markdown (every fenced `sh` block is marked `<!-- tested: … -->` or
//! `<!-- illustrative: … -->`), the pages' host names, ports, keys and ids are replaced by this
//! test's, and every line runs, in order, as the reader types it: the developer's `ssh` and
//! `scp` from a HOME of their own, the operator's and the auditor's `portcullis` after the
//! `login` the page has them run, the install lines on a scratch root. Each must exit 0. What
//! cannot run here (system installs, systemd, the test suite itself) is listed below with the
//! reason, and a block with neither mark fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common;
use crate::support::docs::{self, swap, KillOnDrop, Mark};
use crate::support::targets::{free_port, shared_dir, Postgres, Sshd};
use crate::support::{keygen, request_id, Env, Out, BIN, SOON};

/// Marked blocks no test runs, and why.
const ILLUSTRATIVE_BLOCKS: &[(&str, &str)] = &[
    (
        "readme-try-it",
        "`cargo run --release` builds a release binary (many minutes on a test machine) only to \
         run quickstart, which tests/gateway/quickstart.rs runs from the test build; \
         `scripts/test` is the test suite itself",
    ),
    (
        "readme-test",
        "the test suite itself: a test running it would run itself",
    ),
    (
        "readme-scripts-by-hand",
        "run by hand for minutes to hours: the benchmarks rewrite docs/benchmarks.md, the fault \
         runs kill daemons under load for a long time, fuzzing needs a nightly toolchain",
    ),
    (
        "operators-user-ca-signing",
        "makes a CA key and signs a user's key with it on the reader's machine; \
         tests/gateway/certificates.rs signs with `ssh-keygen -s` the same way and logs in",
    ),
    (
        "operators-target-ca",
        "writes the target-ca line into a file for a target's sshd; \
         tests/gateway/target_ca.rs gives that line to a real sshd's TrustedUserCAKeys",
    ),
    (
        "users-key-kinds",
        "needs the reader's own RSA and ECDSA keys and a security key; tests/gateway/key_kinds.rs \
         logs in with each kind from files and from ssh-agent, tests/gateway/fido.rs with FIDO \
         keys on a software token",
    ),
    (
        "users-certificates",
        "needs a certificate the reader's CA signed; tests/gateway/certificates.rs logs in with \
         one and shows its fields in the audit log",
    ),
    (
        "operators-systemd",
        "installs units into the machine's systemd; the install tests below run what the \
         approver's unit runs, and tests/deploy/units.rs runs both units' commands as their users",
    ),
];

/// Marked blocks that tests run: the test that does.
const TESTED_BLOCKS: &[(&str, &str)] = &[
    ("readme-quickstart-lines", "quickstart.rs"),
    ("readme-developer-lines", "docs_followed.rs"),
    ("readme-operator-lines", "docs_followed.rs"),
    ("readme-auditor-lines", "docs_followed.rs"),
    ("readme-run-it-for-real", "docs_followed.rs"),
    ("operators-install", "docs_followed.rs"),
    ("operators-keys", "docs_followed.rs"),
    ("users-ask-wait-look", "docs_followed.rs"),
    ("users-ssh-lines", "users_doc.rs"),
    ("users-thin-client", "docs_followed.rs"),
];

/// Lines of tested blocks that cannot run here, by a piece of their text, and why.
const ILLUSTRATIVE_LINES: &[(&str, &str)] = &[
    (
        "cargo build --release",
        "builds the release binary; the test runs the binary cargo built for the tests, first on \
         PATH as `portcullis`",
    ),
    (
        "sudo install -m 755 target/release/portcullis /usr/local/bin/",
        "installs into the machine's /usr/local/bin; the test puts its build first on PATH instead",
    ),
    (
        "useradd",
        "would create the system users portcullis-approver and portcullis-gateway on the machine \
         running the tests: the test checks that the line is one `init` printed, and \
         tests/deploy/units.rs runs init's steps as root, with users of its own",
    ),
    (
        "chown -R",
        "hands the data directories to those system users: checked against `init`'s printed \
         steps like useradd, and run by tests/deploy/units.rs",
    ),
    (
        "systemctl daemon-reload",
        "installs the units into the machine's systemd, which a test machine need not run",
    ),
    (
        "systemctl enable --now",
        "needs systemd: the test runs what the units run instead, the approver's ExecStartPre \
         (`check`) and ExecStart, and the gateway's ExecStart, which as the same user must refuse \
         to start (docs/operators.md, Install); tests/deploy/units.rs starts it as a user of its \
         own",
    ),
];

/// Why `sudo ` is dropped from the install lines that run: the test runs them as whoever runs
/// the tests, on a scratch root that user owns; `init` needs no root itself (docs/operators.md).
const WITHOUT_SUDO: &str = "sudo ";

/// What is typed into a recorded or end-to-end terminal: its output proves the command ran on
/// the far side (the terminal's echo of the typed line shows `$((20+22))`, not `42`).
const TYPED: &str = "echo docs-$((20+22)); exit\n";
const TYPED_SHOWS: &str = "docs-42";

#[test]
fn every_sh_block_of_readme_operators_and_users_md_is_tested_or_illustrative() {
    let mut seen = BTreeSet::new();
    let mut tested_text = String::new();
    for page in ["README.md", "docs/operators.md", "docs/users.md"] {
        for b in docs::blocks(&docs::read_doc(page)) {
            if b.lang != "sh" {
                continue;
            }
            let Some((mark, name)) = &b.mark else {
                panic!(
                    "{page}:{}: a sh block with neither <!-- tested: NAME --> nor \
                     <!-- illustrative: NAME --> before it:\n{}",
                    b.line, b.text
                );
            };
            match mark {
                Mark::Tested => {
                    assert!(
                        TESTED_BLOCKS.iter().any(|(n, _)| n == name),
                        "{page}:{}: {name} is marked tested, but no test runs it",
                        b.line
                    );
                    tested_text.push_str(&b.text);
                }
                Mark::Illustrative => assert!(
                    ILLUSTRATIVE_BLOCKS.iter().any(|(n, _)| n == name),
                    "{page}:{}: {name} is marked illustrative without a reason in this test",
                    b.line
                ),
            }
            assert!(seen.insert(name.clone()), "{name} marks two blocks");
        }
    }
    for (name, _) in TESTED_BLOCKS.iter().chain(ILLUSTRATIVE_BLOCKS) {
        assert!(seen.contains(*name), "no block is marked {name} any more");
    }
    for (needle, _) in ILLUSTRATIVE_LINES {
        assert!(
            tested_text.contains(needle),
            "no tested line has {needle:?} any more: drop its reason"
        );
    }
}

/// README's lines for developers, operators and auditors, in the page's order, against a real
/// approver and gateway: pg-prod is a real PostgreSQL (the page's `psql` runs through the
/// tunnel), web-1 a real sshd.
#[test]
fn readme_developer_operator_and_auditor_lines_run_in_order() {
    let readme = docs::blocks(&docs::read_doc("README.md"));
    let lines = |name: &str| docs::commands(&docs::block(&readme, name).text);
    let (dev_lines, op_lines, aud_lines) = (
        lines("readme-developer-lines"),
        lines("readme-operator-lines"),
        lines("readme-auditor-lines"),
    );
    let b = Bastion::start();
    let env = &b.g.env;

    let mut dev = Developer::new(&b);
    for (cmd, comment) in &dev_lines {
        dev.follow(cmd, comment.as_deref());
    }
    assert!(
        dev.live_psql.is_some(),
        "no tunnel line left a psql for the operator's lines: {dev_lines:?}"
    );

    // The operator: `login` as the page has it, then the lines bare.
    let ops = Reader::new("ada", env);
    let mut ours = None;
    for (cmd, _) in &op_lines {
        let line = b.at_approver(cmd);
        if line.contains("requests --pending") {
            // Something to decide: alice's next request, approved once by bob already.
            let out = env.ssh(
                "alice",
                &["request", "pg-prod", "--reason", "INC-44", "--json"],
            );
            let id = request_id(&out).to_string();
            env.admin("bob", &["approve", &id]).ok();
            let out = ops.run(&line);
            out.ok();
            assert!(out.stdout.contains(&id), "{line}: {}", out.stdout);
            ours = Some(id);
        } else if line.contains(" approve 17 ") || line.contains(" revoke 17 ") {
            let id = ours.as_deref().expect("requests --pending before approve");
            ops.run(&line.replace(" 17 ", &format!(" {id} "))).ok();
        } else if line.contains("sessions --live") {
            let out = ops.run(&line);
            out.ok();
            let sid = live_pg_session(env);
            assert!(out.stdout.contains(&sid), "{line}: {}", out.stdout);
        } else if line.contains(" kill gw-1-3fa2-42") {
            let sid = live_pg_session(env);
            ops.run(&swap(&line, "gw-1-3fa2-42", &sid)).ok();
            env.eventually("the killed session to end", || {
                !env.admin("ada", &["sessions", "--live"])
                    .stdout
                    .contains(&sid)
            });
        } else if line.contains(" reload") {
            // The operator has added a user, a target and a policy to the file.
            let erin = keygen(env.path(), "erin");
            let mut cfg = std::fs::read_to_string(&env.config).unwrap();
            cfg.push_str(&format!(
                "\n[[users]]\nname = \"erin\"\nkeys = [\"{erin}\"]\ngroups = [\"newteam\"]\n\
                 \n[[targets]]\nname = \"pg-new\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
                 labels = {{ team = \"new\" }}\n\n[[policies]]\nname = \"newteam\"\n\
                 match = {{ team = \"new\" }}\nauto_approve = {{ groups = [\"newteam\"] }}\n\
                 max_duration = \"1h\"\n",
                b.pg.port
            ));
            std::fs::write(&env.config, cfg).unwrap();
            ops.run(&line).ok();
            env.eventually("erin's request through the gateway", || {
                env.gw_ssh("erin", &["request", "pg-new", "--for", "10m"])
                    .code
                    == 0
            });
        } else {
            ops.run(&line).ok();
        }
    }

    // The auditor logs in "the same way, as themselves": the operators' login line as audrey.
    let login = op_lines
        .iter()
        .find(|(c, _)| c.starts_with("portcullis login "))
        .expect("the operators' lines start with login");
    let aud = Reader::new("audrey", env);
    aud.run(&swap(&b.at_approver(&login.0), "-l ada", "-l audrey"))
        .ok();
    let recorded = recorded_shell_session(env);
    for (cmd, _) in &aud_lines {
        let line = cmd.replace("gw-1-3fa2-17", &recorded);
        let out = aud.run(&line);
        out.ok();
        if line.contains(" replay ") {
            assert!(out.stdout.contains(TYPED_SHOWS), "{line}: {}", out.stdout);
        }
        if let Some((_, file)) = line.split_once(" > ") {
            let text = std::fs::read_to_string(aud.cwd.path().join(file.trim())).unwrap();
            let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap())
                .unwrap_or_else(|e| panic!("{line}: not JSON ({e}):\n{text}"));
            if line.contains(" export ") {
                assert_eq!(first["version"], 2, "{line}: {text}");
                assert!(text.contains(TYPED_SHOWS), "{line}: {text}");
            }
        }
    }
}

/// docs/users.md's "Ask, wait, look" lines, then its thin-client lines, in order, as alice.
#[test]
fn users_md_ask_wait_look_and_thin_client_lines_run_in_order() {
    let page = docs::blocks(&docs::read_doc("docs/users.md"));
    let b = Bastion::start();
    let mut dev = Developer::new(&b);
    for name in ["users-ask-wait-look", "users-thin-client"] {
        for (cmd, comment) in docs::commands(&docs::block(&page, name).text) {
            dev.follow(&cmd, comment.as_deref());
        }
    }
    assert!(dev.waited >= 2, "both blocks wait for a request");
}

/// What the pages' lines run against: the approver and gateway with the test's users (alice
/// in dev, bob and carol in dba, ada an admin, audrey an auditor), pg-prod a real PostgreSQL
/// needing two of dba, and web-1 a real sshd that takes the gateway's key (recorded sessions)
/// and alice's (end to end), self-service for dev. README's operator approves requests for
/// pg-prod, so ada is in dba as well: being an admin alone approves nothing
/// (docs/operators.md).
struct Bastion {
    g: common::GwEnv,
    pg: Postgres,
    web1: Sshd,
    _scratch: tempfile::TempDir,
}

impl Bastion {
    fn start() -> Bastion {
        let scratch = tempfile::tempdir().unwrap();
        let pg = Postgres::start(scratch.path());
        let mut web1 = None;
        let g = common::start_with(|env| {
            let cfg = std::fs::read_to_string(&env.config).unwrap();
            let cfg = swap(
                &cfg,
                "address = \"127.0.0.1:15432\"",
                &format!("address = \"127.0.0.1:{}\"", pg.port),
            );
            let cfg = swap(
                &cfg,
                "groups = [\"admins\"]",
                "groups = [\"admins\", \"dba\"]",
            );
            std::fs::write(&env.config, cfg).unwrap();
            let keys = [
                env.path().join("gateway/client_key.pub"),
                env.key("alice").with_extension("pub"),
            ]
            .map(|p| std::fs::read_to_string(p).unwrap());
            let s = Sshd::start(scratch.path(), &keys.join("\n"));
            let target = format!(
                "\n[[targets]]\nname = \"web-1\"\nkind = \"ssh\"\naddress = \"127.0.0.1:{}\"\n\
                 login = \"{}\"\nhost_key = \"{}\"\nlabels = {{ env = \"staging\" }}\n",
                s.port, s.login, s.host_key
            );
            web1 = Some(s);
            target
        });
        Bastion {
            g,
            pg,
            web1: web1.unwrap(),
            _scratch: scratch,
        }
    }

    /// The pages' approver address, here.
    fn at_approver(&self, line: &str) -> String {
        line.replace("bastion.example.com:2223", &self.g.env.addr)
    }
}

/// alice, following the pages' developer lines: her key as ~/.ssh/id_ed25519, the host keys
/// known, and what she has started (a tunnel, a psql in another terminal).
struct Developer<'a> {
    b: &'a Bastion,
    me: Reader,
    /// No ssh config from the docs (their lines are the long forms): this file only says what
    /// the pages' names stand for here, `bastion` this gateway and web-1's port 22 this sshd's.
    names: PathBuf,
    /// Where `scp … bastion:/tmp/` copies to (a directory web-1's login may write).
    dest: tempfile::TempDir,
    /// The pages' local port 15432, here.
    local: u16,
    requested: Option<u64>,
    waited: usize,
    tunnel: Option<KillOnDrop>,
    live_psql: Option<KillOnDrop>,
}

impl<'a> Developer<'a> {
    fn new(b: &'a Bastion) -> Developer<'a> {
        let env = &b.g.env;
        let me = Reader::new("alice", env);
        me.knows_hosts(&[
            format!("[127.0.0.1]:{} {}", env.gw_port(), env.gateway_host_key),
            format!("[web-1]:{} {}", b.web1.port, b.web1.host_key),
        ]);
        let names = me.home.path().join("names_here");
        std::fs::write(
            &names,
            format!(
                "Host bastion\n    HostName 127.0.0.1\nHost web-1\n    Port {}\nHost *\n    \
                 IdentityFile {home}/.ssh/id_ed25519\n    IdentitiesOnly yes\n    \
                 UserKnownHostsFile {home}/.ssh/known_hosts\n    StrictHostKeyChecking yes\n    \
                 BatchMode yes\n    LogLevel ERROR\n",
                b.web1.port,
                home = me.home.path().display()
            ),
        )
        .unwrap();
        std::fs::write(me.cwd.path().join("file"), SCP_FILE).unwrap();
        // The grant the -J, recorded and scp lines rest on: the pages have one already.
        common::grant(env, "alice", "web-1", "1h");
        Developer {
            b,
            me,
            names,
            dest: shared_dir(),
            local: free_port(),
            requested: None,
            waited: 0,
            tunnel: None,
            live_psql: None,
        }
    }

    /// A page's line with this test's ports, names and paths.
    fn here(&self, line: &str) -> String {
        let b = self.b;
        let line = b
            .at_approver(line)
            .replace("2222", &b.g.env.gw_port())
            .replace("15432", &self.local.to_string())
            .replace("pg-prod:5432", &format!("pg-prod:{}", b.pg.port))
            .replace("deploy@web-1", &format!("{}@web-1", b.web1.login))
            .replace(
                "bastion:/tmp/",
                &format!("bastion:{}/", self.dest.path().display()),
            );
        with_ssh_config(&line, &self.names)
    }

    /// One line of a page, run as it says, with what it needs first and the check that it
    /// did what the page says.
    fn follow(&mut self, cmd: &str, comment: Option<&str>) {
        let env = &self.b.g.env;
        let line = self.here(cmd);
        if line.contains(" request ") {
            let out = self.me.run(&line);
            out.ok();
            self.requested = Some(number_after(&out.stdout, "request "));
        } else if line.contains(" wait 17") {
            // The request above waits for two of dba: they approve while `wait` blocks.
            let id = self
                .requested
                .expect("a request line before wait")
                .to_string();
            let line = swap(&line, " wait 17", &format!(" wait {id}"));
            let waiting = self.me.spawn(&line, Stdio::null());
            env.admin("bob", &["approve", &id]).ok();
            env.admin("carol", &["approve", &id]).ok();
            let out = wait_out(waiting, &line);
            assert_eq!(out.code, 0, "{line}\n{}\n{}", out.stdout, out.stderr);
            assert!(out.stdout.contains("approved"), "{line}: {}", out.stdout);
            self.waited += 1;
        } else if line.contains(" cancel 17") {
            // "while still pending": another request of alice's that nobody decided yet.
            let pending = env.ssh(
                "alice",
                &["request", "pg-prod", "--reason", "INC-43", "--json"],
            );
            let id = request_id(&pending);
            self.me
                .run(&swap(&line, " cancel 17", &format!(" cancel {id}")))
                .ok();
        } else if line.contains(" -N -L ") {
            self.tunnel = Some(self.me.start_tunnel(&line, self.local));
            // The comment's `then: psql …`: once with a query typed in, and once held open in
            // "another terminal", the live session README's operator lists and kills.
            let psql = self.here(
                comment
                    .and_then(|c| c.strip_prefix("then: "))
                    .expect("the tunnel line says what to run through it"),
            );
            let out = wait_out(self.me.spawn_typed(&psql, "select 'docs' || 42;\n"), &psql);
            assert_eq!(out.code, 0, "{psql}\n{}\n{}", out.stdout, out.stderr);
            assert!(out.stdout.contains("docs42"), "{psql}: {}", out.stdout);
            env.eventually("the first psql's session to end", || {
                live_sessions_on(env, "pg-prod").is_empty()
            });
            self.live_psql = Some(KillOnDrop(self.me.spawn(&psql, Stdio::piped())));
        } else if is_terminal_login(&line) {
            let out = self.me.in_terminal(&line, TYPED);
            assert_eq!(out.code, 0, "{line}\n{}\n{}", out.stdout, out.stderr);
            // The gateway itself has no shell: it lists the commands.
            let shows = if is_gateway_login(&line) {
                "request"
            } else {
                TYPED_SHOWS
            };
            assert!(out.stdout.contains(shows), "{line}: {}", out.stdout);
        } else {
            self.me.run(&line).ok();
        }
        if line.starts_with("scp ") {
            let copied = self.dest.path().join("file");
            assert_eq!(
                std::fs::read_to_string(&copied).unwrap_or_default(),
                SCP_FILE,
                "{line}"
            );
            std::fs::remove_file(copied).unwrap();
        }
    }
}

const SCP_FILE: &str = "copied by the page's scp line\n";

/// README's "Run it for real" on a scratch root (its /etc and /var/lib): `init` as printed,
/// the approver started as its unit starts it, and the `login` line init prints.
#[test]
fn readme_run_it_for_real_lines_run_on_a_scratch_root() {
    let readme = docs::blocks(&docs::read_doc("README.md"));
    let layout = Layout::new();
    layout.follow(&docs::block(&readme, "readme-run-it-for-real").text);
    assert!(
        layout.logged_in(),
        "the block ends with a login that worked"
    );
}

/// docs/operators.md's Install on a scratch root, then its `keys` lines, whose output must
/// have the shape the page shows.
#[test]
fn operators_md_install_and_keys_lines_run_on_a_scratch_root() {
    let page = docs::blocks(&docs::read_doc("docs/operators.md"));
    let layout = Layout::new();
    layout.follow(&docs::block(&page, "operators-install").text);
    for (cmd, shown) in docs::session(&docs::block(&page, "operators-keys").text) {
        let line = layout.rooted(&cmd);
        let out = layout.admin.run(&line);
        out.ok();
        let printed: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(printed.len(), shown.len(), "{line}:\n{}", out.stdout);
        for (printed, shown) in printed.iter().zip(&shown) {
            // The approver's port, moved from the page's 2223 (see Layout::after_init).
            let shown = shown.replace(":2223 ", &format!(":{} ", layout.approver_port.get()));
            assert!(
                same_shape(printed, &shown),
                "{line}: printed {printed:?}, the page shows {shown:?}"
            );
        }
    }
}

/// A printed line against the page's: the same up to the page's placeholder for a key
/// (`AAAA…`, `BASE64`), then one word.
fn same_shape(printed: &str, shown: &str) -> bool {
    let cut = ["AAAA…", "BASE64"]
        .iter()
        .filter_map(|p| shown.find(p))
        .min()
        .unwrap_or(shown.len());
    let (fixed, rest) = (&shown[..cut], &printed.get(cut..).unwrap_or(""));
    printed.starts_with(fixed) && !rest.is_empty() && !rest.contains(char::is_whitespace)
}

/// One reader of the docs: a HOME with their key as `~/.ssh/id_ed25519`, and a directory to
/// work in.
struct Reader {
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Reader {
    fn new(user: &str, env: &Env) -> Reader {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        for ext in ["", ".pub"] {
            std::fs::copy(
                format!("{}{ext}", env.key(user).display()),
                ssh.join(format!("id_ed25519{ext}")),
            )
            .unwrap();
        }
        Reader {
            home,
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    /// A reader with a fresh key of their own.
    fn with_new_key() -> Reader {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        keygen(&ssh, "id_ed25519");
        std::fs::rename(ssh.join("id_ed25519_key"), ssh.join("id_ed25519")).unwrap();
        std::fs::rename(ssh.join("id_ed25519_key.pub"), ssh.join("id_ed25519.pub")).unwrap();
        Reader {
            home,
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    fn knows_hosts(&self, lines: &[String]) {
        std::fs::write(
            self.home.path().join(".ssh/known_hosts"),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }

    /// `line` as this reader's shell runs it: `sh -c` in their directory, as [`Reader::apply`].
    fn shell(&self, line: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(line);
        self.apply(&mut c);
        c
    }

    /// This reader's directory and HOME, the test's build of `portcullis` first on PATH, and
    /// nothing from the test runner's environment that would pick a profile, a key or an
    /// agent. PGUSER: the role this test's PostgreSQL has.
    fn apply(&self, c: &mut Command) {
        let path = format!(
            "{}:{}",
            Path::new(BIN).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env("PATH", path)
            .env("SHELL", "/bin/sh")
            .env("PGUSER", "postgres")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SSH_AUTH_SOCK");
        for var in [
            "PORTCULLIS_APPROVER",
            "PORTCULLIS_USER",
            "PORTCULLIS_IDENTITY",
            "PORTCULLIS_APPROVER_HOST_KEY",
            "PORTCULLIS_KNOWN_HOSTS",
            "PORTCULLIS_PROFILE",
        ] {
            c.env_remove(var);
        }
    }

    fn run(&self, line: &str) -> Out {
        let out = wait_out(self.spawn(line, Stdio::null()), line);
        if out.code != 0 {
            eprintln!("{line}\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
        }
        out
    }

    fn spawn(&self, line: &str, stdin: Stdio) -> Child {
        eprintln!("$ {line}");
        self.shell(line)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `line` with `typed` on its standard input, then end of input.
    fn spawn_typed(&self, line: &str, typed: &str) -> Child {
        let mut child = self.spawn(line, Stdio::piped());
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(typed.as_bytes()).unwrap();
        drop(stdin);
        child
    }

    /// `line` in a terminal of its own (`script` gives it a pty), `typed` typed into it.
    fn in_terminal(&self, line: &str, typed: &str) -> Out {
        eprintln!("$ {line}    (in a terminal, typing {typed:?})");
        let mut c = Command::new("script");
        c.args(["-q", "-e", "-c", line, "/dev/null"]);
        self.apply(&mut c);
        let mut child = c
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Kept open until the session ends: a terminal does not close under its user.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(typed.as_bytes()).unwrap();
        let out = wait_out(child, line);
        drop(stdin);
        out
    }

    /// An `ssh -N -L LOCAL:…` line, left running; back once LOCAL takes connections.
    fn start_tunnel(&self, line: &str, local: u16) -> KillOnDrop {
        docs::start_tunnel(self.shell(&format!("exec {line}")), line, local)
    }
}

/// What `child` printed and how it exited, once it has, within [`SOON`].
fn wait_out(child: Child, what: &str) -> Out {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(SOON) {
        Ok(output) => {
            let o = output.unwrap();
            Out {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what}: still running after {SOON:?}");
        }
    }
}

/// `ssh …`, `scp …` as `PROGRAM -F CONFIG …`: the file says what the page's names stand for
/// on this machine (ssh reads no ~/.ssh/config from a HOME it is given).
fn with_ssh_config(line: &str, config: &Path) -> String {
    match line.split_once(' ') {
        Some((program @ ("ssh" | "scp" | "sftp"), rest)) => {
            format!("{program} -F {} {rest}", config.display())
        }
        _ => line.to_string(),
    }
}

/// `ssh … alice@bastion` with no command: to the gateway itself, not through it.
fn is_gateway_login(line: &str) -> bool {
    line.split_whitespace()
        .last()
        .and_then(|w| w.split_once('@'))
        .is_some_and(|(user, host)| host == "bastion" && !user.contains(':'))
        && !line.contains(" -J ")
}

/// A login with no command and no `-N`: the reader gets a shell, in a terminal.
fn is_terminal_login(line: &str) -> bool {
    line.starts_with("ssh ")
        && !line.contains(" -N ")
        && line
            .split_whitespace()
            .last()
            .is_some_and(|w| w.contains('@'))
}

/// The number after the first `word` in `text` (`request 17 is pending` → 17).
fn number_after(text: &str, word: &str) -> u64 {
    text.split(word)
        .skip(1)
        .find_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no number after {word:?} in {text:?}"))
}

/// The live sessions on `target`, as an admin lists them.
fn live_sessions_on(env: &Env, target: &str) -> Vec<String> {
    let out = env.admin("ada", &["--json", "sessions", "--live"]);
    out.ok();
    out.json()["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["target"] == target)
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// The one live session on pg-prod: the developer's psql in its other terminal.
fn live_pg_session(env: &Env) -> String {
    let mut id = String::new();
    env.eventually(
        "the psql in the other terminal as a live session",
        || match live_sessions_on(env, "pg-prod").as_slice() {
            [one] => {
                id = one.clone();
                true
            }
            _ => false,
        },
    );
    id
}

/// The recorded shell the developer typed into: the ended session whose recording shows it.
fn recorded_shell_session(env: &Env) -> String {
    let mut id = String::new();
    env.eventually("the recorded shell's recording at the approver", || {
        let ended: Vec<String> = env
            .audit_events()
            .into_iter()
            .filter(|e| e["event"] == "session.ended" && e["recording_sha256"].is_string())
            .filter_map(|e| e["session"].as_str().map(str::to_string))
            .collect();
        ended.into_iter().any(|s| {
            let export = env.portcullis("audrey", "audit", &["export", &s]);
            let found = export.code == 0 && export.stdout.contains(TYPED_SHOWS);
            if found {
                id = s;
            }
            found
        })
    });
    id
}

/// A scratch root for the install lines: its `/etc` and `/var/lib`, the admin's HOME with a
/// key of their own, and (once the lines start it) the approver.
struct Layout {
    root: tempfile::TempDir,
    admin: Reader,
    /// What `init` printed.
    init: std::cell::RefCell<String>,
    approver: std::cell::RefCell<Option<(KillOnDrop, String)>>,
    logged_in: std::cell::Cell<bool>,
    /// Where the approver listens here: the page's 2223, moved.
    approver_port: std::cell::Cell<u16>,
}

impl Layout {
    fn new() -> Layout {
        let root = tempfile::tempdir().unwrap();
        for d in ["etc", "var/lib"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        Layout {
            root,
            admin: Reader::with_new_key(),
            init: Default::default(),
            approver: Default::default(),
            logged_in: Default::default(),
            approver_port: Default::default(),
        }
    }

    /// The page's system paths under the scratch root.
    fn rooted(&self, line: &str) -> String {
        let r = self.root.path().display();
        line.replace("/etc/portcullis", &format!("{r}/etc/portcullis"))
            .replace("/var/lib", &format!("{r}/var/lib"))
    }

    fn config(&self) -> PathBuf {
        self.root.path().join("etc/portcullis/portcullis.toml")
    }

    fn logged_in(&self) -> bool {
        self.logged_in.get()
    }

    /// Every line of an install block, in order: run, or illustrative for a reason above.
    fn follow(&self, block: &str) {
        for (cmd, _) in docs::commands(block) {
            let reasons: Vec<&str> = ILLUSTRATIVE_LINES
                .iter()
                .filter(|(needle, _)| cmd.contains(needle))
                .map(|(_, why)| *why)
                .collect();
            if !reasons.is_empty() {
                eprintln!("illustrative: {cmd}\n  {}", reasons.join("\n  "));
                self.illustrate(&cmd);
                continue;
            }
            let line = self.rooted(cmd.strip_prefix(WITHOUT_SUDO).unwrap_or(&cmd));
            if line.starts_with("portcullis login ") {
                self.login(&line);
                continue;
            }
            let out = self.admin.run(&line);
            out.ok();
            if line.starts_with("portcullis init ") {
                self.after_init(out.stdout);
            }
        }
    }

    /// init's approver listens on 2223, which another test (or a quickstart) may hold: move it
    /// to a free port. Nothing else in the file is touched.
    fn after_init(&self, printed: String) {
        let cfg = std::fs::read_to_string(self.config()).unwrap();
        let port = free_port();
        std::fs::write(
            self.config(),
            swap(&cfg, "127.0.0.1:2223", &format!("127.0.0.1:{port}")),
        )
        .unwrap();
        self.approver_port.set(port);
        *self.init.borrow_mut() = printed;
    }

    /// What stands in for a line that cannot run here, and the check that can be made of it.
    fn illustrate(&self, cmd: &str) {
        if cmd.contains("useradd") || cmd.contains("chown") {
            // The page's example of "the steps it prints" is one of them.
            let step = cmd.replace(WITHOUT_SUDO, "");
            let step = step
                .strip_prefix("sh -c '")
                .and_then(|s| s.strip_suffix('\''))
                .unwrap_or(&step);
            let step = self.rooted(step);
            let init = self.init.borrow();
            assert!(
                init.lines().any(|l| l.trim() == step),
                "the page's {cmd:?} is not a step init printed:\n{init}"
            );
        }
        if cmd.contains("systemctl enable --now") {
            self.start_as_the_units_do();
        }
    }

    /// What `systemctl enable --now` would run: the approver's unit's ExecStartPre (`check`)
    /// and ExecStart. The gateway's unit, run as the same user, refuses to start, as
    /// docs/operators.md says it must (it could read the grant-signing key).
    fn start_as_the_units_do(&self) {
        let unit = |name: &str| {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../deploy")
                    .join(name),
            )
            .unwrap()
        };
        let (unit, gateway_unit) = (
            unit("portcullis-approver.service"),
            unit("portcullis-gateway.service"),
        );
        let value = |unit: &str, key: &str| {
            unit.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("a unit has no {key}="))
                .to_string()
        };
        let words = |line: &str| -> Vec<String> {
            let line = swap(line, "/usr/local/bin/portcullis ", &format!("{BIN} "));
            self.rooted(&line)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let gateway = words(&value(&gateway_unit, "ExecStart"));
        let refused = Command::new(&gateway[0])
            .args(&gateway[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_out(refused, "the gateway's ExecStart as the approver's user")
            .fails_with("grant-signing key");
        let pre = words(&value(&unit, "ExecStartPre"));
        let check = crate::support::run(Command::new(&pre[0]).args(&pre[1..]));
        check.ok();
        let start = words(&value(&unit, "ExecStart"));
        let log = self.root.path().join("approver.log");
        let child = Command::new(&start[0])
            .args(&start[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let cfg = std::fs::read_to_string(self.config()).unwrap();
        let addr = cfg
            .lines()
            .find_map(|l| l.strip_prefix("listen = \""))
            .and_then(|l| l.split('"').next())
            .unwrap()
            .to_string();
        let deadline = Instant::now() + SOON;
        while std::net::TcpStream::connect(&addr).is_err() {
            if let Some(st) = child.0.try_wait().unwrap() {
                panic!(
                    "the approver exited with {st}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "the approver did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        *self.approver.borrow_mut() = Some((child, addr));
    }

    /// The page's `login` line is the one init printed (its host key aside); run with that key,
    /// at the approver's port here.
    fn login(&self, line: &str) {
        let init = self.init.borrow();
        let printed = init
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("portcullis login "))
            .unwrap_or_else(|| panic!("init printed no login line:\n{init}"));
        let (head, key) = printed
            .split_once(" --approver-host-key '")
            .unwrap_or_else(|| panic!("init's login pins no key: {printed}"));
        let key = key.trim_end_matches('\'');
        assert_eq!(
            line,
            format!("{head} --approver-host-key '…'"),
            "the page's login line is not the one init prints"
        );
        let approver = self.approver.borrow();
        let addr = &approver
            .as_ref()
            .expect("the approver started before login")
            .1;
        let line = swap(line, "'…'", &format!("'{key}'"));
        let line = swap(&line, "127.0.0.1:2223", addr);
        self.admin.run(&line).ok();
        self.logged_in.set(true);
    }
}
