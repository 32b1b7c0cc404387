//! Shared Key request signing, which the official SDK lacks: a per-try pipeline policy that
//! dates each request and signs it with HMAC-SHA256 under the decoded account key.
//!
//! Example string to sign for `GET http://127.0.0.1:10000/devstoreaccount1/c/a?comp=list`:
//! `GET\n` + eleven standard header lines (Content-Length empty when 0) + the sorted
//! `x-ms-*` headers + `/devstoreaccount1/devstoreaccount1/c/a\ncomp:list`.
//!
//! Invariant: the policy runs after every header is set and before the transport, once per
//! try, so a retried request carries a fresh date and signature.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs requests with an account key.
pub(super) struct SharedKeyPolicy {
    account: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SharedKeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedKeyPolicy({}, key hidden)", self.account)
    }
}

/// The standard headers in the order the string to sign lists them.
const SIGNED_HEADERS: [&str; 10] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
];

impl SharedKeyPolicy {
    /// A policy for `account` with its base64 account key.
    pub(super) fn new(account: &str, key_base64: &str) -> Result<SharedKeyPolicy, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_base64.trim())
            .map_err(|e| format!("the account key is not base64: {e}"))?;
        Ok(SharedKeyPolicy {
            account: account.to_string(),
            key,
        })
    }

    fn string_to_sign(&self, request: &Request) -> String {
        let headers: BTreeMap<String, String> = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.as_str().trim().to_string(),
                )
            })
            .collect();
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let mut out = format!("{}\n", request.method().as_str().to_ascii_uppercase());
        for name in SIGNED_HEADERS {
            let value = match name {
                // Since version 2015-02-21 a zero length is signed as an empty string.
                "content-length" => match request.body().len() {
                    Some(0) | None => String::new(),
                    Some(n) => n.to_string(),
                },
                _ => header(name),
            };
            out.push_str(&value);
            out.push('\n');
        }
        out.push_str(&header("range"));
        out.push('\n');
        for (name, value) in headers.iter().filter(|(k, _)| k.starts_with("x-ms-")) {
            out.push_str(&format!("{name}:{value}\n"));
        }
        out.push_str(&self.canonical_resource(request));
        out
    }

    fn canonical_resource(&self, request: &Request) -> String {
        let url = request.url();
        let mut out = format!("/{}{}", self.account, url.path());
        let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            params
                .entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.into_owned());
        }
        for (k, mut values) in params {
            values.sort();
            out.push_str(&format!("\n{k}:{}", values.join(",")));
        }
        out
    }

    fn sign(&self, text: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(text.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        request.insert_header("x-ms-date", date);
        let signature = self.sign(&self.string_to_sign(request));
        request.insert_header(
            "authorization",
            format!("SharedKey {}:{signature}", self.account),
        );
        next[0].send(ctx, request, &next[1..]).await
    }
}
