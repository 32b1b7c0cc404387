//! Checks on the restored cluster: it accepts queries, and every database that holds the pgbench
//! tables keeps pgbench's balance invariant; any other database answers `SELECT 1`.
//!
//! Example: database `bench` with the four pgbench tables passes when
//! `sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta)`, e.g. all four equal -81 722.
//!
//! Invariant: the four sums are read by one statement, so they come from one snapshot; a
//! database that cannot be reached or queried is a failed check, never a skipped one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls};

/// How long the first connection is retried: the restore has already seen the server answer,
/// so this only covers a slow socket or a backend still starting.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Who the checks connect as, and to which database first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The role: `user=` of the cluster's conninfo, else `postgres`.
    pub user: String,
    /// The database the list of databases is read from: `dbname=` of the conninfo, else
    /// `postgres`.
    pub dbname: String,
}

impl Login {
    /// The role and first database named by `conninfo`, which the restored cluster shares with
    /// its source.
    pub fn from_conninfo(conninfo: &str) -> Login {
        let parsed = conninfo.parse::<tokio_postgres::Config>().ok();
        let user = parsed
            .as_ref()
            .and_then(|c| c.get_user())
            .unwrap_or("postgres")
            .to_string();
        let dbname = parsed
            .as_ref()
            .and_then(|c| c.get_dbname())
            .unwrap_or("postgres")
            .to_string();
        Login { user, dbname }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// What was checked: `accepting queries`, `pgbench balance invariant` or `select 1`.
    pub name: String,
    /// The database it ran in.
    pub database: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found, with the figures.
    pub detail: String,
}

/// The four pgbench balance sums of one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgbenchSums {
    /// `sum(pgbench_accounts.abalance)`.
    pub accounts: i64,
    /// `sum(pgbench_tellers.tbalance)`.
    pub tellers: i64,
    /// `sum(pgbench_branches.bbalance)`.
    pub branches: i64,
    /// `sum(pgbench_history.delta)`.
    pub history: i64,
}

impl PgbenchSums {
    /// Whether the sums agree, as every committed pgbench transaction keeps them.
    pub fn balanced(&self) -> bool {
        self.accounts == self.tellers && self.tellers == self.branches
    }

    /// Whether `pgbench_history` also sums to the balances. pgbench runs without `-n` truncate
    /// it, so a mismatch alone is no sign of a bad restore; the three balance tables, which
    /// every pgbench transaction updates together, carry the invariant.
    pub fn history_agrees(&self) -> bool {
        self.history == self.accounts
    }

    /// The check this yields for `database`, naming the four sums either way.
    pub fn judge(&self, database: &str) -> CheckResult {
        let sums = format!(
            "sum(abalance) = {}, sum(tbalance) = {}, sum(bbalance) = {}, sum(delta) = {}",
            self.accounts, self.tellers, self.branches, self.history
        );
        let detail = match (self.balanced(), self.history_agrees()) {
            (true, true) => format!("balanced: {sums}"),
            (true, false) => format!(
                "balanced: {sums} (pgbench_history was truncated since initialisation, \
                 as pgbench runs without -n do; the three balance tables agree)"
            ),
            (false, _) => format!("balances disagree: {sums}"),
        };
        CheckResult {
            name: "pgbench balance invariant".into(),
            database: database.into(),
            passed: self.balanced(),
            detail,
        }
    }
}

const PGBENCH_TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_tellers",
    "pgbench_branches",
    "pgbench_history",
];

/// The sums in one statement, so one snapshot; `sum(int)` is `bigint`, and an empty table sums
/// to 0.
const PGBENCH_SUMS: &str = "SELECT \
     (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::bigint, \
     (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::bigint, \
     (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::bigint, \
     (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::bigint";

/// How to reach the restored cluster.
#[derive(Debug, Clone)]
pub struct Target {
    /// The port the scratch cluster listens on, on 127.0.0.1.
    pub port: u16,
    /// Its unix socket directory, tried when 127.0.0.1 turns the role away (a restored
    /// pg_hba.conf may ask for a password over TCP and allow peer over the socket).
    pub socket_dir: Option<PathBuf>,
    /// The role and first database.
    pub login: Login,
}

impl Target {
    async fn connect_via(
        &self,
        host: &Host<'_>,
        dbname: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        match host {
            Host::Loopback => config.host("127.0.0.1"),
            Host::Socket(dir) => config.host_path(dir),
        };
        let (client, connection) = config
            .port(self.port)
            .user(&self.login.user)
            .dbname(dbname)
            .application_name("lifeboat-drill")
            .connect_timeout(Duration::from_secs(10))
            .connect(NoTls)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "drill connection closed");
            }
        });
        Ok(client)
    }

    /// Connects over 127.0.0.1, else over the socket; the error names the role and every
    /// route tried.
    async fn connect(&self, dbname: &str) -> Result<Client, String> {
        let mut refusals = Vec::new();
        let socket = self.socket_dir.as_deref().map(Host::Socket);
        for host in std::iter::once(Host::Loopback).chain(socket) {
            match self.connect_via(&host, dbname).await {
                Ok(client) => return Ok(client),
                Err(e) => {
                    refusals.push(format!("{}: {}", host.describe(self.port), error_text(&e)))
                }
            }
        }
        Err(format!(
            "as role {:?}, {}",
            self.login.user,
            refusals.join("; ")
        ))
    }

    /// Connects to the first database and runs `SELECT 1`, retrying for [`ACCEPT_TIMEOUT`]
    /// while the server is not accepting yet; the error is the last refusal.
    pub async fn accept(&self) -> Result<Client, String> {
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        loop {
            let refusal = match self.connect(&self.login.dbname).await {
                Ok(client) => match client.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(client),
                    Err(e) => error_text(&e),
                },
                Err(refusal) => refusal,
            };
            if Instant::now() >= deadline {
                return Err(refusal);
            }
            tracing::debug!(%refusal, "not accepting queries yet");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs the checks of every database that accepts connections and is not a template.
    pub async fn check_all(&self, first: &Client) -> Vec<CheckResult> {
        let databases = match list_databases(first).await {
            Ok(d) => d,
            Err(e) => return vec![failed("list databases", &self.login.dbname, error_text(&e))],
        };
        let mut results = Vec::new();
        for db in databases {
            results.push(self.check_database(&db).await);
        }
        results
    }

    async fn check_database(&self, db: &str) -> CheckResult {
        let client = match self.connect(db).await {
            Ok(c) => c,
            Err(refusal) => return failed("connect", db, refusal),
        };
        match pgbench_tables(&client).await {
            Ok(present) if present.len() == PGBENCH_TABLES.len() => {
                match pgbench_sums(&client).await {
                    Ok(sums) => sums.judge(db),
                    Err(e) => failed("pgbench balance invariant", db, error_text(&e)),
                }
            }
            Ok(present) => select_one(&client, db, &present).await,
            Err(e) => failed("find pgbench tables", db, error_text(&e)),
        }
    }
}

/// A route to the server.
enum Host<'a> {
    Loopback,
    Socket(&'a Path),
}

impl Host<'_> {
    fn describe(&self, port: u16) -> String {
        match self {
            Host::Loopback => format!("on 127.0.0.1:{port}"),
            Host::Socket(dir) => format!("on socket {}/.s.PGSQL.{port}", dir.display()),
        }
    }
}

fn failed(name: &str, db: &str, detail: String) -> CheckResult {
    CheckResult {
        name: name.into(),
        database: db.into(),
        passed: false,
        detail,
    }
}

/// tokio-postgres puts the server's message in the source; show both.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

async fn list_databases(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn \
             ORDER BY datname",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn pgbench_tables(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL ORDER BY t",
            &[&PGBENCH_TABLES.as_slice()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn pgbench_sums(client: &Client) -> Result<PgbenchSums, tokio_postgres::Error> {
    let row = client.query_one(PGBENCH_SUMS, &[]).await?;
    Ok(PgbenchSums {
        accounts: row.get(0),
        tellers: row.get(1),
        branches: row.get(2),
        history: row.get(3),
    })
}

async fn select_one(client: &Client, db: &str, pgbench_present: &[String]) -> CheckResult {
    let passed = client.simple_query("SELECT 1").await;
    let mut detail = match &passed {
        Ok(_) => "answered".to_string(),
        Err(e) => error_text(e),
    };
    if !pgbench_present.is_empty() {
        detail.push_str(&format!(
            "; only some pgbench tables exist ({}), so the balance invariant was not checked",
            pgbench_present.join(", ")
        ));
    }
    CheckResult {
        name: "select 1".into(),
        database: db.into(),
        passed: passed.is_ok(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(accounts: i64, tellers: i64, branches: i64, history: i64) -> PgbenchSums {
        PgbenchSums {
            accounts,
            tellers,
            branches,
            history,
        }
    }

    #[test]
    fn equal_sums_are_balanced() {
        let r = sums(-81_722, -81_722, -81_722, -81_722).judge("bench");
        assert!(r.passed);
        assert_eq!(r.name, "pgbench balance invariant");
        assert!(r.detail.contains("-81722"), "{}", r.detail);
    }

    #[test]
    fn a_fresh_pgbench_database_is_balanced() {
        assert!(sums(0, 0, 0, 0).balanced());
    }

    #[test]
    fn any_balance_that_disagrees_fails_and_names_the_database_and_sums() {
        for s in [sums(1, 0, 0, 0), sums(0, 1, 0, 0), sums(0, 0, 1, 0)] {
            let r = s.judge("bench");
            assert!(!r.passed, "{s:?}");
            assert_eq!(r.database, "bench");
        }
        let r = sums(10, 7, 10, 10).judge("shop");
        assert_eq!(r.database, "shop");
        assert_eq!(
            r.detail,
            "balances disagree: sum(abalance) = 10, sum(tbalance) = 7, sum(bbalance) = 10, \
             sum(delta) = 10"
        );
    }

    #[test]
    fn a_truncated_history_is_named_but_does_not_fail() {
        let r = sums(10, 10, 10, 7).judge("shop");
        assert!(r.passed);
        assert!(r.detail.contains("truncated"), "{}", r.detail);
    }

    #[test]
    fn login_comes_from_the_conninfo() {
        let l = Login::from_conninfo("host=/var/run/postgresql port=5432 user=backup dbname=app");
        assert_eq!(
            l,
            Login {
                user: "backup".into(),
                dbname: "app".into()
            }
        );
        let l = Login::from_conninfo("host=/var/run/postgresql port=5432");
        assert_eq!(
            l,
            Login {
                user: "postgres".into(),
                dbname: "postgres".into()
            }
        );
    }
}
