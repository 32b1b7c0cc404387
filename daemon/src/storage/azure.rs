//! A repository in an Azure Blob Storage container: object `wal/00000001/0000000100000000000000A3`
//! of a repository with prefix `prod/main` is block blob `prod/main/wal/00000001/...`.
//!
//! Create-only: every put carries `If-None-Match: *` (409/412 means the name is taken). Objects
//! up to `single_put_max` (256 MiB) go in one put; larger ones are staged in blocks, and the
//! commit, also conditional, happens only after a check that no blob took the name meanwhile.
//! Every request has a timeout; timeouts, connection errors, 5xx and 429 are retried with
//! backoff, a 4xx never is. A retried create can meet its own first attempt as a 409: the
//! repository layer compares content ids before calling that a conflict.
//! Locks are blob leases on `locks/<name>` (15 to 60 seconds).

mod credential;
mod shared_key;

use std::future::Future;
use std::num::NonZero;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind as AzureErrorKind;
use azure_core::http::{ClientOptions, Etag, RequestContent, RetryOptions, Transport, Url};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientDownloadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientUploadOptions, BlockLookupList,
    HttpRange,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::{check_name, lock_path, Lease, ObjectInfo, Storage, StorageError};
use crate::config::AzureAuth;

/// Where a container is and how to reach it.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Service URL without a final `/`; `None` means `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// The storage account.
    pub account: String,
    /// The container (it must exist).
    pub container: String,
    /// Folder inside the container, without surrounding `/`; may be empty.
    pub prefix: String,
    /// How requests are authorized.
    pub auth: AzureAuth,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How many times a request is tried before a transient error is returned.
    pub attempts: u32,
    /// Objects up to this size go in a single put.
    pub single_put_max: usize,
    /// Block size of larger objects.
    pub block_size: usize,
    /// Names per listing request (the service's maximum is 5000).
    pub list_page_size: u32,
}

impl AzureSettings {
    /// Settings with the defaults for everything but where the container is.
    pub fn new(account: &str, container: &str, auth: AzureAuth) -> AzureSettings {
        AzureSettings {
            endpoint: None,
            account: account.to_string(),
            container: container.to_string(),
            prefix: String::new(),
            auth,
            request_timeout: Duration::from_secs(60),
            attempts: 5,
            // The service's limit is 5000 MiB; 256 MiB keeps a retried put cheap.
            single_put_max: 256 << 20,
            // 4 MiB blocks measured fastest against the emulator and are cheap to retry.
            block_size: 4 << 20,
            list_page_size: 5000,
        }
    }

    fn service_url(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://{}.blob.core.windows.net", self.account),
        }
    }
}

/// A container-backed store.
pub struct AzureStorage {
    settings: AzureSettings,
    clients: OnceCell<Clients>,
}

/// What every request shares, built on first use so that a missing key file is reported by
/// the request that needed it.
struct Clients {
    options: ClientOptions,
    credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
    /// The SAS query string, if that is the authorization.
    sas: Option<String>,
    container: BlobContainerClient,
}

impl std::fmt::Debug for AzureStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AzureStorage({})", self.location())
    }
}

impl AzureStorage {
    /// A store for `settings`; nothing is contacted until the first request.
    pub fn new(settings: AzureSettings) -> AzureStorage {
        AzureStorage {
            settings,
            clients: OnceCell::new(),
        }
    }

    /// Creates the container (tests and first-time set-up); an existing one is fine.
    pub async fn create_container(&self) -> Result<(), StorageError> {
        let name = self.settings.container.clone();
        let result = self
            .retrying("create container", &name, || async {
                let c = self.clients("create container", &name).await?;
                c.container
                    .create(None)
                    .await
                    .map(drop)
                    .map_err(|e| self.error("create container", &name, e))
            })
            .await;
        match result {
            Err(StorageError::AlreadyExists(_)) => Ok(()),
            r => r,
        }
    }

    async fn clients(&self, op: &'static str, name: &str) -> Result<&Clients, StorageError> {
        self.clients
            .get_or_try_init(|| async { self.build_clients() })
            .await
            .map_err(|message| self.io(op, name, std::io::ErrorKind::PermissionDenied, message))
    }

    fn build_clients(&self) -> Result<Clients, String> {
        let s = &self.settings;
        let mut options = ClientOptions {
            // Lifeboat retries itself, with a timeout on each try.
            retry: RetryOptions::none(),
            transport: Some(Transport::new(azure_core::http::new_http_client(Some(
                azure_core::http::HttpClientOptions {
                    automatic_decompression: false,
                },
            )))),
            ..Default::default()
        };
        let (mut credential, mut sas) = (None, None);
        match &s.auth {
            AzureAuth::AccountKey(r) => {
                let key = r.read()?;
                let policy = shared_key::SharedKeyPolicy::new(&s.account, &key)?;
                options.per_try_policies.push(Arc::new(policy));
            }
            AzureAuth::SasToken(r) => sas = Some(r.read()?.trim_start_matches('?').to_string()),
            AzureAuth::TokenCredential => {
                credential = Some(credential::ChainCredential::from_environment()? as _);
            }
        }
        let url = self.url_for(None, sas.as_deref())?;
        let container = BlobContainerClient::new(
            url,
            credential.clone(),
            Some(BlobContainerClientOptions {
                client_options: options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| e.to_string())?;
        Ok(Clients {
            options,
            credential,
            sas,
            container,
        })
    }

    /// The container's URL, or a blob's, with `/` in blob names kept as path separators.
    fn url_for(&self, blob: Option<&str>, sas: Option<&str>) -> Result<Url, String> {
        let s = &self.settings;
        let mut text = format!("{}/{}", s.service_url(), s.container);
        if let Some(blob) = blob {
            for part in blob.split('/') {
                text.push('/');
                text.push_str(&percent_encode(part));
            }
        }
        let mut url = Url::parse(&text).map_err(|e| format!("{text} is not a URL: {e}"))?;
        if let Some(sas) = sas {
            url.set_query(Some(sas));
        }
        Ok(url)
    }

    async fn blob(&self, op: &'static str, name: &str) -> Result<BlobClient, StorageError> {
        let c = self.clients(op, name).await?;
        let url = self
            .url_for(Some(&self.blob_name(name)), c.sas.as_deref())
            .map_err(|m| self.io(op, name, std::io::ErrorKind::InvalidInput, m))?;
        let options = BlobClientOptions {
            client_options: c.options.clone(),
            ..Default::default()
        };
        BlobClient::new(url, c.credential.clone(), Some(options))
            .map_err(|e| self.io(op, name, std::io::ErrorKind::InvalidInput, e.to_string()))
    }

    fn blob_name(&self, name: &str) -> String {
        match self.settings.prefix.as_str() {
            "" => name.to_string(),
            p => format!("{p}/{name}"),
        }
    }

    fn io(
        &self,
        op: &'static str,
        name: &str,
        kind: std::io::ErrorKind,
        message: impl Into<String>,
    ) -> StorageError {
        StorageError::Io {
            op,
            name: name.to_string(),
            location: self.location(),
            source: std::io::Error::new(kind, message.into()),
        }
    }

    /// Maps an SDK error; the kind of the io error says whether it is transient.
    fn error(&self, op: &'static str, name: &str, e: azure_core::Error) -> StorageError {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            AzureErrorKind::HttpResponse {
                error_code: Some(code),
                ..
            } if code == "ContainerNotFound" => {
                let hint = format!(
                    "container {} does not exist\nhint: create it first, e.g. `az storage \
                     container create --account-name {} --name {}`",
                    self.settings.container, self.settings.account, self.settings.container
                );
                return self.io(op, name, K::InvalidInput, hint);
            }
            AzureErrorKind::HttpResponse { status, .. } => match u16::from(*status) {
                404 => return StorageError::NotFound(name.to_string()),
                409 | 412 if op.starts_with("create") => {
                    return StorageError::AlreadyExists(name.to_string())
                }
                409 if op == "lock" => return StorageError::Locked(name.to_string()),
                401 | 403 => K::PermissionDenied,
                416 => K::UnexpectedEof,
                429 | 500..=599 => K::Other,
                _ => K::InvalidInput,
            },
            AzureErrorKind::Connection | AzureErrorKind::Io => K::ConnectionAborted,
            AzureErrorKind::Credential => K::PermissionDenied,
            _ => K::InvalidData,
        };
        self.io(op, name, kind, e.to_string())
    }

    /// Runs `attempt` under the request timeout, again with backoff while it fails transiently.
    async fn retrying<T, F, Fut>(
        &self,
        op: &'static str,
        name: &str,
        attempt: F,
    ) -> Result<T, StorageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let timeout = self.settings.request_timeout;
        let attempts = self.settings.attempts.max(1);
        let mut delay = Duration::from_millis(200);
        for n in 1..=attempts {
            let result = match tokio::time::timeout(timeout, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(self.io(
                    op,
                    name,
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                )),
            };
            match result {
                Err(e) if is_transient(&e) && n < attempts => {
                    tracing::debug!(op, name, attempt = n, error = %e, "retrying");
                    let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(StorageError::Io {
                    op,
                    name,
                    location,
                    source,
                }) if n > 1 => {
                    let source = std::io::Error::new(
                        source.kind(),
                        format!("{source} (after {n} attempts)"),
                    );
                    return Err(StorageError::Io {
                        op,
                        name,
                        location,
                        source,
                    });
                }
                r => return r,
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn put_single(&self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        let bytes = data;
        self.retrying("create", name, || async {
            let blob = self.blob("create", name).await?;
            let options = BlockBlobClientUploadOptions {
                if_none_match: Some(Etag::from("*")),
                parallel: Some(NonZero::<usize>::MIN),
                partition_size: NonZero::new(data.len().max(1) as u64),
                ..Default::default()
            };
            blob.block_blob_client()
                .upload(RequestContent::from(bytes.to_vec()), Some(options))
                .await
                .map(drop)
                .map_err(|e| self.error("create", name, e))
        })
        .await
    }

    async fn put_staged(&self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        // Staging hundreds of MiB under a taken name would be wasted: look first.
        self.refuse_existing(name).await?;
        let upload: [u8; 8] = rand::random();
        let ids: Vec<Vec<u8>> = (0..data.len().div_ceil(self.settings.block_size))
            .map(|i| format!("{}{i:08}", hex::encode(upload)).into_bytes())
            .collect();
        let block_size = self.settings.block_size;
        let stages: Vec<_> = ids
            .iter()
            .zip(data.chunks(block_size))
            .map(|(id, block)| self.stage(name, id, block))
            .collect();
        // Four blocks in flight: the measured sweet spot against the emulator.
        futures::stream::iter(stages)
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await?;
        self.refuse_existing(name).await?;
        let list = BlockLookupList {
            latest: Some(ids),
            ..Default::default()
        };
        self.retrying("create", name, || async {
            let blob = self.blob("create", name).await?;
            let content = RequestContent::try_from(list.clone()).map_err(|e| {
                self.io(
                    "create",
                    name,
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                )
            })?;
            let options = BlockBlobClientCommitBlockListOptions {
                if_none_match: Some(Etag::from("*")),
                ..Default::default()
            };
            blob.block_blob_client()
                .commit_block_list(content, Some(options))
                .await
                .map(drop)
                .map_err(|e| self.error("create", name, e))
        })
        .await
    }

    async fn stage(&self, name: &str, id: &[u8], block: &[u8]) -> Result<(), StorageError> {
        let bytes = block;
        self.retrying("stage block of", name, || async {
            let blob = self.blob("stage block of", name).await?;
            blob.block_blob_client()
                .stage_block(
                    id,
                    block.len() as u64,
                    RequestContent::from(bytes.to_vec()),
                    None,
                )
                .await
                .map(drop)
                .map_err(|e| self.error("stage block of", name, e))
        })
        .await
    }

    async fn refuse_existing(&self, name: &str) -> Result<(), StorageError> {
        let found = self
            .retrying("check", name, || async {
                let blob = self.blob("check", name).await?;
                blob.get_properties(None)
                    .await
                    .map(drop)
                    .map_err(|e| self.error("check", name, e))
            })
            .await;
        match found {
            Ok(()) => Err(StorageError::AlreadyExists(name.to_string())),
            Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn download(
        &self,
        name: &str,
        range: Option<HttpRange>,
    ) -> Result<Vec<u8>, StorageError> {
        check_name(name)?;
        self.retrying("read", name, || async {
            let blob = self.blob("read", name).await?;
            let options = BlobClientDownloadOptions {
                range: range.clone(),
                parallel: Some(NonZero::<usize>::MIN),
                partition_size: NonZero::new(usize::MAX),
                ..Default::default()
            };
            let response = blob
                .download(Some(options))
                .await
                .map_err(|e| self.error("read", name, e))?;
            let body = response
                .body
                .collect()
                .await
                .map_err(|e| self.error("read", name, e))?;
            Ok(body.to_vec())
        })
        .await
    }

    async fn list_page(
        &self,
        prefix: &str,
        marker: Option<String>,
    ) -> Result<(Vec<ObjectInfo>, Option<String>), StorageError> {
        let c = self.clients("list", prefix).await?;
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(self.blob_name(prefix)),
            marker,
            maxresults: Some(self.settings.list_page_size as i32),
            ..Default::default()
        };
        let mut pages = c
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.error("list", prefix, e))?
            .into_pages();
        let page = match pages.next().await {
            None => return Ok((Vec::new(), None)),
            Some(p) => p.map_err(|e| self.error("list", prefix, e))?,
        };
        let page = page
            .into_model()
            .map_err(|e| self.error("list", prefix, e))?;
        let strip = match self.settings.prefix.as_str() {
            "" => 0,
            p => p.len() + 1,
        };
        let objects = page
            .blob_items
            .into_iter()
            .filter_map(|b| {
                let name = b.name?;
                let size = b.properties.and_then(|p| p.content_length).unwrap_or(0);
                Some(ObjectInfo {
                    name: name.get(strip..)?.to_string(),
                    size,
                })
            })
            .collect();
        Ok((objects, page.next_marker.filter(|m| !m.is_empty())))
    }
}

/// Timeouts, lost connections, 5xx and 429: the request may succeed if tried again.
fn is_transient(e: &StorageError) -> bool {
    use std::io::ErrorKind as K;
    matches!(e, StorageError::Io { source, .. }
        if matches!(source.kind(), K::TimedOut | K::ConnectionAborted | K::Other))
}

/// Percent-encodes one path segment of a blob name (unreserved characters stay).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A lease id in the GUID form the service demands.
fn new_lease_id() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[async_trait]
impl Storage for AzureStorage {
    async fn put_new(&self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        if data.len() <= self.settings.single_put_max {
            self.put_single(name, data).await
        } else {
            self.put_staged(name, data).await
        }
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.download(name, None).await
    }

    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        if len == 0 {
            check_name(name)?;
            return Ok(Vec::new());
        }
        let data = self
            .download(name, Some(HttpRange::new(offset, len)))
            .await?;
        if (data.len() as u64) < len {
            return Err(self.io(
                "read",
                name,
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "wanted {len} bytes at offset {offset}, the object ends after {}",
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let (objects, next) = self
                .retrying("list", prefix, || self.list_page(prefix, marker.clone()))
                .await?;
            out.extend(objects);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        let result = self
            .retrying("delete", name, || async {
                let blob = self.blob("delete", name).await?;
                blob.delete(None)
                    .await
                    .map(drop)
                    .map_err(|e| self.error("delete", name, e))
            })
            .await;
        match result {
            Err(StorageError::NotFound(_)) => Ok(()),
            r => r,
        }
    }

    fn location(&self) -> String {
        let s = &self.settings;
        let prefix = match s.prefix.as_str() {
            "" => String::new(),
            p => format!(" prefix {p}"),
        };
        format!(
            "azure {} account {} container {}{prefix}",
            s.service_url(),
            s.account,
            s.container
        )
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Lease, StorageError> {
        let path = lock_path(name);
        check_name(&path)?;
        match self.put_single(&path, b"").await {
            Ok(()) | Err(StorageError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        // The service grants leases of 15 to 60 seconds (or infinite, which a crash would leak).
        let seconds = ttl.as_secs().clamp(15, 60) as i32;
        let id = new_lease_id();
        self.retrying("lock", &path, || async {
            let blob = self.blob("lock", &path).await?;
            let options = BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some(id.clone()),
                ..Default::default()
            };
            blob.acquire_lease(seconds, Some(options))
                .await
                .map(drop)
                .map_err(|e| self.error("lock", &path, e))
        })
        .await?;
        Ok(Lease { name: path, id })
    }

    async fn unlock(&self, lease: &Lease) -> Result<(), StorageError> {
        let result = self
            .retrying("unlock", &lease.name, || async {
                let blob = self.blob("unlock", &lease.name).await?;
                blob.release_lease(lease.id.clone(), None)
                    .await
                    .map(drop)
                    .map_err(|e| self.error("unlock", &lease.name, e))
            })
            .await;
        match result {
            // Expired and taken by another, or the blob is gone: the lease is lost either way.
            Err(StorageError::NotFound(_)) => Ok(()),
            Err(StorageError::Io { ref source, .. })
                if source.kind() == std::io::ErrorKind::InvalidInput =>
            {
                Ok(())
            }
            r => r,
        }
    }
}
