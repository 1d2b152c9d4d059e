//! An in-process russh client, for the tests that need what no stock client does: a SHA-1
//! signature, timing one attempt at a time, a certificate offered by hand, a connection held
//! across a reload, channels opened and closed unused. It trusts any host key (the tests run
//! on loopback against the daemons they start).

use std::sync::Arc;

/// A client handler that accepts whatever host key the server shows.
pub struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Connect to `addr` with the product's client settings; not yet authenticated.
pub async fn connect(addr: &str) -> russh::client::Handle<AnyHostKey> {
    let config = Arc::new(portcullis_ssh::client::client_config());
    russh::client::connect(config, addr, AnyHostKey)
        .await
        .unwrap()
}
