//! FIDO keys without a token: `sk_provider.c` beside this file is a software authenticator
//! (an OpenSSH security key provider, test only: its key handles are the private keys), built
//! once per test process with the system C compiler and OpenSSL's libcrypto
//! (scripts/install-test-deps installs what it needs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::run;

/// The provider's shared library: what `ssh -o SecurityKeyProvider=`, `ssh-keygen -w` and
/// `ssh-add -S` load. An absolute path with no symlinks in it, as ssh-agent's `-P` allowlist
/// compares against.
pub fn provider() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/sk_provider.c");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sk-provider");
    std::fs::create_dir_all(&dir).unwrap();
    // Test binaries run at once share the directory: each compiles to a name of its own and
    // renames it into place, so none loads a half-written library (one already loaded keeps
    // the file it opened).
    let partial = dir.join(format!("sk_provider.so.{}", std::process::id()));
    let out = run(Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"])
        // Only the four sk_* entry points are exported, and only OpenSSL 3's current API used.
        .args(["-fvisibility=hidden", "-DOPENSSL_API_COMPAT=30000"])
        .arg("-o")
        .arg(&partial)
        .arg(&source)
        .arg("-lcrypto"));
    assert_eq!(
        out.code, 0,
        "building the test FIDO provider failed (scripts/install-test-deps installs libssl-dev):\n{}{}",
        out.stdout, out.stderr
    );
    let path = dir.join("sk_provider.so");
    std::fs::rename(&partial, &path).unwrap();
    path.canonicalize().unwrap()
}

/// `ssh-keygen -t KIND -w PROVIDER [-O OPT…] -f PATH`: a FIDO key (`ed25519-sk` or `ecdsa-sk`)
/// from the software token, no passphrase.
pub fn keygen(path: &Path, kind: &str, options: &[&str], comment: &str) {
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-t", kind, "-N", "", "-C", comment, "-w"])
        .arg(provider());
    for o in options {
        c.args(["-O", o]);
    }
    let out = run(c.arg("-f").arg(path));
    assert_eq!(
        out.code, 0,
        "ssh-keygen -t {kind} {options:?}: {}",
        out.stderr
    );
}
