//! Entra ID tokens for a repository configured with neither an account key nor a SAS: workload
//! identity (when AKS has injected `AZURE_FEDERATED_TOKEN_FILE`), then managed identity, then
//! the Azure CLI's login, the first that answers.
//!
//! Invariant: tokens only travel over https; the SDK refuses a token credential otherwise.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_identity::{AzureCliCredential, ManagedIdentityCredential, WorkloadIdentityCredential};

/// The credentials tried in order.
#[derive(Debug)]
pub(super) struct ChainCredential(Vec<Arc<dyn TokenCredential>>);

impl ChainCredential {
    /// The chain for this process's environment.
    pub(super) fn from_environment() -> Result<Arc<ChainCredential>, String> {
        let mut chain: Vec<Arc<dyn TokenCredential>> = Vec::new();
        if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            chain.push(WorkloadIdentityCredential::new(None).map_err(|e| e.to_string())?);
        }
        chain.push(ManagedIdentityCredential::new(None).map_err(|e| e.to_string())?);
        chain.push(AzureCliCredential::new(None).map_err(|e| e.to_string())?);
        Ok(Arc::new(ChainCredential(chain)))
    }
}

#[async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut failures = Vec::new();
        for credential in &self.0 {
            match credential.get_token(scopes, None).await {
                Ok(token) => return Ok(token),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no Azure credential answered (workload identity, managed identity, Azure CLI): {}\n\
                 hint: set account-key or sas-token, or give this host an identity with the \
                 Storage Blob Data Contributor role",
                failures.join("; ")
            ),
        ))
    }
}
