#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    #[error("gateway store: {0}")]
    Store(#[from] portcullis_store::StoreError),
    #[error("{0}")]
    Io(String),
}
