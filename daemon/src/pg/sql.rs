//! SQL helpers over tokio-postgres: connecting with a libpq-style conninfo, and the facts about
//! a server that backup, restore and drills check (version, system identifier, segment size).

use tokio_postgres::{Client, NoTls};

/// A failure talking SQL to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The conninfo string does not parse.
    #[error("conninfo {conninfo:?} is invalid: {source}")]
    Conninfo {
        /// The string, which holds no password (the config refuses those).
        conninfo: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// Could not connect.
    #[error("cannot connect to PostgreSQL with {conninfo:?}: {source}\nhint: is the server running, and does pg_hba.conf let this user in?")]
    Connect {
        /// The conninfo used.
        conninfo: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: String,
        /// Why.
        source: tokio_postgres::Error,
    },
}

/// Connects and spawns the connection task; the session lives as long as the client.
pub async fn connect(conninfo: &str) -> Result<Client, SqlError> {
    let config: tokio_postgres::Config = conninfo.parse().map_err(|source| SqlError::Conninfo {
        conninfo: conninfo.into(),
        source,
    })?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| SqlError::Connect {
            conninfo: conninfo.into(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Facts about a running server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. 150018.
    pub version_num: u32,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: u64,
    /// `block_size` in bytes.
    pub block_size: u32,
    /// `data_checksums`.
    pub data_checksums: bool,
    /// `data_directory`.
    pub data_directory: String,
}

impl ServerFacts {
    /// The major version: 15 for 150018.
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// Reads [`ServerFacts`].
pub async fn server_facts(client: &Client) -> Result<ServerFacts, SqlError> {
    let q = |source| SqlError::Query {
        what: "reading server settings".into(),
        source,
    };
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, \
                    (SELECT system_identifier FROM pg_control_system())::text, \
                    pg_size_bytes(current_setting('wal_segment_size'))::int8, \
                    current_setting('block_size')::int4, \
                    current_setting('data_checksums') = 'on', \
                    current_setting('data_directory')",
            &[],
        )
        .await
        .map_err(q)?;
    let sysid: String = row.get(1);
    Ok(ServerFacts {
        version_num: row.get::<_, i32>(0) as u32,
        system_identifier: sysid.parse().unwrap_or_default(),
        wal_segment_size: row.get::<_, i64>(2) as u64,
        block_size: row.get::<_, i32>(3) as u32,
        data_checksums: row.get(4),
        data_directory: row.get(5),
    })
}
