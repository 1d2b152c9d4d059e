#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    #[error("gateway store: {0}")]
    Store(#[from] portcullis_store::StoreError),
    /// An operating-system error, with what the gateway was doing.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl GatewayError {
    /// An I/O error while doing `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GatewayError {
        let what = what.into();
        move |source| GatewayError::Io { what, source }
    }
}
