//! One storage conformance suite, run on every backend: local directories and Azure Blob
//! Storage (on the Azurite emulator). A backend passes when it behaves like the others.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat::storage::azure::AzureStorage;
use lifeboat::storage::local::LocalStorage;
use lifeboat::storage::{Storage, StorageError};
use lifeboat_tests::{write_azure_key_file, Azurite};

/// Above the single-put threshold the Azure store is given below, so it is staged in blocks.
const LARGE: usize = 5 * 1024 * 1024 + 12_345;

/// Every backend must pass this.
async fn conformance(s: &dyn Storage) {
    create_get_and_conflict(s).await;
    ranges(s).await;
    listing(s).await;
    delete(s).await;
    large_object(s).await;
    locks(s).await;
}

async fn create_get_and_conflict(s: &dyn Storage) {
    s.put_new("wal/00000001/000000010000000000000001", b"hello")
        .await
        .unwrap();
    let again = s
        .put_new("wal/00000001/000000010000000000000001", b"other")
        .await;
    assert!(
        matches!(again, Err(StorageError::AlreadyExists(_))),
        "{again:?}"
    );
    assert_eq!(
        s.get("wal/00000001/000000010000000000000001")
            .await
            .unwrap(),
        b"hello",
        "a refused create must keep the stored object"
    );
    s.put_new("empty", b"").await.unwrap();
    assert_eq!(s.get("empty").await.unwrap(), b"");
    let missing = s.get("wal/00000001/nothing-here").await;
    assert!(
        matches!(missing, Err(StorageError::NotFound(_))),
        "{missing:?}"
    );
    let bad = s.put_new("../escape", b"x").await;
    assert!(matches!(bad, Err(StorageError::InvalidName(_))), "{bad:?}");
}

async fn ranges(s: &dyn Storage) {
    let name = "packs/3f/3f9a-with/slashes/inside";
    s.put_new(name, b"0123456789").await.unwrap();
    assert_eq!(s.get_range(name, 0, 10).await.unwrap(), b"0123456789");
    assert_eq!(s.get_range(name, 3, 4).await.unwrap(), b"3456");
    assert_eq!(s.get_range(name, 9, 1).await.unwrap(), b"9");
    for (offset, len) in [(8, 5), (10, 1), (100, 1)] {
        let past = s.get_range(name, offset, len).await;
        assert!(
            matches!(past, Err(StorageError::Io { .. })),
            "a range past the end ({offset}+{len}) must fail: {past:?}"
        );
    }
    let missing = s.get_range("packs/3f/none", 0, 1).await;
    assert!(
        matches!(missing, Err(StorageError::NotFound(_))),
        "{missing:?}"
    );
}

async fn listing(s: &dyn Storage) {
    // More objects than one page of the Azure store below (3 a page).
    let names: Vec<String> = (0..11).map(|i| format!("index/i{i:02}")).collect();
    for n in names.iter().rev() {
        s.put_new(n, n.as_bytes()).await.unwrap();
    }
    s.put_new("indexes-not-this", b"x").await.unwrap();
    let listed = s.list("index/").await.unwrap();
    let listed_names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(listed_names, names, "sorted, every page, nothing else");
    assert!(listed.iter().all(|o| o.size == 9), "{listed:?}");
    let partial: Vec<String> = s
        .list("index/i0")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(
        partial,
        names[..10].to_vec(),
        "a prefix may end inside a name"
    );
    let deep = s.list("packs/3f/3f9a-with/").await.unwrap();
    assert_eq!(deep.len(), 1);
    assert_eq!(deep[0].name, "packs/3f/3f9a-with/slashes/inside");
    assert_eq!(deep[0].size, 10);
    assert!(s.list("nothing/").await.unwrap().is_empty());
}

async fn delete(s: &dyn Storage) {
    s.put_new("drills/d1/report.json", b"{}").await.unwrap();
    s.delete("drills/d1/report.json").await.unwrap();
    let gone = s.get("drills/d1/report.json").await;
    assert!(matches!(gone, Err(StorageError::NotFound(_))), "{gone:?}");
    s.delete("drills/d1/report.json").await.unwrap();
    s.delete("drills/never/there").await.unwrap();
    assert!(s.list("drills/").await.unwrap().is_empty());
    // A deleted name can be created again.
    s.put_new("drills/d1/report.json", b"[]").await.unwrap();
    assert_eq!(s.get("drills/d1/report.json").await.unwrap(), b"[]");
}

async fn large_object(s: &dyn Storage) {
    let data: Vec<u8> = (0..LARGE).map(|i| (i * 7 % 251) as u8).collect();
    s.put_new("packs/77/large", &data).await.unwrap();
    assert!(s.get("packs/77/large").await.unwrap() == data);
    let (at, len) = (1024 * 1024 - 10, 20);
    assert_eq!(
        s.get_range("packs/77/large", at as u64, len as u64)
            .await
            .unwrap(),
        &data[at..at + len],
        "a range across a block boundary"
    );
    let again = s.put_new("packs/77/large", &data[..LARGE - 1]).await;
    assert!(
        matches!(again, Err(StorageError::AlreadyExists(_))),
        "{again:?}"
    );
    assert_eq!(s.list("packs/77/").await.unwrap()[0].size, LARGE as u64);
}

async fn locks(s: &dyn Storage) {
    let ttl = Duration::from_secs(30);
    let lease = s.lock("backup", ttl).await.unwrap();
    assert_eq!(lease.name, "locks/backup");
    let second = s.lock("backup", ttl).await;
    assert!(matches!(second, Err(StorageError::Locked(_))), "{second:?}");
    let other = s.lock("expire", ttl).await.unwrap();
    s.unlock(&lease).await.unwrap();
    let again = s.lock("backup", ttl).await.unwrap();
    assert_ne!(again.id, lease.id);
    s.unlock(&lease).await.unwrap();
    assert!(
        matches!(s.lock("backup", ttl).await, Err(StorageError::Locked(_))),
        "releasing a stale lease must not free the new holder's lock"
    );
    s.unlock(&again).await.unwrap();
    s.unlock(&other).await.unwrap();
}

#[tokio::test]
async fn local_storage_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&LocalStorage::new(dir.path().join("repo"))).await;
}

#[tokio::test]
async fn azure_storage_conforms_on_azurite() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let key = write_azure_key_file(dir.path());
    let mut settings = azurite.settings("conformance", key);
    settings.prefix = "clusters/main".into();
    settings.single_put_max = 2 * 1024 * 1024;
    settings.block_size = 1024 * 1024;
    settings.list_page_size = 3;
    let s = AzureStorage::new(settings);
    s.create_container().await.unwrap();
    conformance(&s).await;
    assert!(
        s.location().contains(&azurite.endpoint()),
        "{}",
        s.location()
    );
}

#[tokio::test]
async fn azure_prefixes_keep_repositories_apart() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let key = write_azure_key_file(dir.path());
    let mut a = azurite.settings("shared", key.clone());
    a.prefix = "one".into();
    let mut b = azurite.settings("shared", key);
    b.prefix = "one-more".into();
    let (a, b) = (AzureStorage::new(a), AzureStorage::new(b));
    a.create_container().await.unwrap();
    a.put_new("lifeboat.repo", b"a").await.unwrap();
    b.put_new("lifeboat.repo", b"b").await.unwrap();
    let names: Vec<String> = a
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["lifeboat.repo"]);
    assert_eq!(b.get("lifeboat.repo").await.unwrap(), b"b");
}

#[tokio::test]
async fn a_missing_container_is_named_not_taken_for_a_missing_object() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let s = AzureStorage::new(azurite.settings("never-created", write_azure_key_file(dir.path())));
    for err in [
        s.get("lifeboat.repo").await.unwrap_err(),
        s.put_new("lifeboat.repo", b"{}").await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains("container never-created does not exist"),
            "{text}"
        );
        assert!(!err.is_retryable(), "{text}");
    }
}

#[tokio::test]
async fn a_wrong_account_key_is_refused_without_retries() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let good = azurite.storage(dir.path(), "keys").await;
    good.put_new("x", b"x").await.unwrap();
    let wrong = dir.path().join("wrong-key");
    std::fs::write(&wrong, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    let s = AzureStorage::new(azurite.settings("keys", wrong));
    let started = Instant::now();
    let err = s.get("x").await.unwrap_err();
    match &err {
        StorageError::Io { source, .. } => {
            assert_eq!(source.kind(), ErrorKind::PermissionDenied, "{err}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!err.is_retryable(), "{err}");
    assert!(
        !err.to_string().contains("attempts"),
        "a 403 is not retried: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_silent_endpoint_times_out_is_retried_and_is_named() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = write_azure_key_file(dir.path());
    let endpoint = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let mut settings = Azurite::settings_for(&endpoint, "silent", key);
    settings.request_timeout = Duration::from_millis(300);
    settings.attempts = 3;
    let s = AzureStorage::new(settings);
    let started = Instant::now();
    let err = s.put_new("wal/00000001/x", b"data").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&endpoint),
        "the error names the endpoint: {text}"
    );
    assert!(text.contains("wal/00000001/x"), "and the object: {text}");
    assert!(text.contains("after 3 attempts"), "{text}");
    assert!(err.is_retryable(), "{text}");
    assert!(
        accepted.load(Ordering::SeqCst) >= 2,
        "each attempt opens a new connection"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
