//! A replication connection: conninfo to socket, startup with `replication=true`, authentication
//! (trust, cleartext, MD5, SCRAM-SHA-256 without channel binding) and message framing.
//!
//! Example: `host=/run/postgresql port=5432 user=postgres dbname=postgres` opens
//! `/run/postgresql/.s.PGSQL.5432`; `host=127.0.0.1` opens TCP. The password comes from the
//! conninfo, else `PGPASSWORD`, else the pgpass file (see [`super::pgpass`]).
//!
//! Invariant: [`Conn::read_frame`] is cancel-safe (its only await is a read into the buffer), so
//! a caller may race it against a timer without losing or splitting a message.

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend::Header, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, SslMode};

use super::error::ReplError;
use super::messages::{self, Row, ServerMessage};
use super::pgpass;

/// Application name sent when the conninfo names none.
const DEFAULT_APPLICATION_NAME: &str = "lifeboat";

/// Largest backend message accepted: XLogData is at most 128 KiB and history files are small, so
/// anything near this is a corrupt length, not a message worth buffering.
const MAX_MESSAGE: usize = 64 << 20;

/// A backend message: its tag and body.
#[derive(Debug)]
pub struct Frame {
    /// The message type byte.
    pub tag: u8,
    /// The body after the length.
    pub body: Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and as whom to connect, taken from a conninfo.
#[derive(Clone)]
pub struct Target {
    /// `host:port` or `socketdir:port`, for messages.
    pub server: String,
    host: Host,
    port: u16,
    user: String,
    password: Option<Vec<u8>>,
    application_name: String,
    connect_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Parses a conninfo with tokio-postgres' parser; only the first host and port are used.
pub fn parse_target(conninfo: &str) -> Result<Target, ReplError> {
    let bad = |reason: String| ReplError::Conninfo {
        conninfo: conninfo.to_owned(),
        reason,
    };
    // tokio-postgres rejects verify-* outright; name the real limit instead.
    if let Some(mode) = conninfo
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("sslmode="))
        .filter(|mode| mode.starts_with("verify"))
    {
        return Err(ReplError::TlsUnsupported {
            sslmode: mode.to_owned(),
        });
    }
    let config: tokio_postgres::Config = conninfo.parse().map_err(|e| bad(format!("{e}")))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(ReplError::TlsUnsupported {
            sslmode: "require".into(),
        });
    }
    let host = match config.get_hosts().first() {
        Some(host) => host.clone(),
        None => Host::Unix("/var/run/postgresql".into()),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("PGUSER").ok())
        .or_else(|| std::env::var("USER").ok())
        .ok_or_else(|| bad("no user=, PGUSER or USER".into()))?;
    let host_text = match &host {
        Host::Tcp(name) => name.clone(),
        Host::Unix(dir) => dir.display().to_string(),
    };
    let password = config
        .get_password()
        .map(<[u8]>::to_vec)
        .or_else(|| std::env::var("PGPASSWORD").ok().map(String::into_bytes))
        .or_else(|| pgpass::lookup(&host_text, port, &user).map(String::into_bytes));
    Ok(Target {
        server: format!("{host_text}:{port}"),
        host,
        port,
        user,
        password,
        application_name: config
            .get_application_name()
            .unwrap_or(DEFAULT_APPLICATION_NAME)
            .to_owned(),
        connect_timeout: config.get_connect_timeout().copied(),
    })
}

/// An open, authenticated replication connection.
pub struct Conn {
    /// `host:port`, for messages.
    pub server: String,
    /// The `server_version` the server announced at startup.
    pub server_version: String,
    io: Box<dyn Io>,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl Conn {
    /// Opens the socket, sends the startup packet and authenticates; returns after `'Z'`.
    /// `connect_timeout` in the conninfo bounds the whole of it, as in libpq.
    pub async fn connect(target: &Target) -> Result<Conn, ReplError> {
        let Some(limit) = target.connect_timeout else {
            return Conn::connect_now(target).await;
        };
        tokio::time::timeout(limit, Conn::connect_now(target))
            .await
            .unwrap_or_else(|_| {
                Err(ReplError::Io {
                    server: target.server.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no session within connect_timeout {limit:?}"),
                    ),
                })
            })
    }

    async fn connect_now(target: &Target) -> Result<Conn, ReplError> {
        let io_err = |source| ReplError::Io {
            server: target.server.clone(),
            source,
        };
        let io: Box<dyn Io> = match &target.host {
            Host::Tcp(name) => {
                let stream = TcpStream::connect((name.as_str(), target.port))
                    .await
                    .map_err(io_err)?;
                stream.set_nodelay(true).map_err(io_err)?;
                Box::new(stream)
            }
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{}", target.port));
                Box::new(UnixStream::connect(path).await.map_err(io_err)?)
            }
        };
        let mut conn = Conn {
            server: target.server.clone(),
            server_version: String::new(),
            io,
            read_buf: BytesMut::with_capacity(256 * 1024),
            write_buf: BytesMut::new(),
        };
        conn.startup(target).await?;
        Ok(conn)
    }

    async fn startup(&mut self, target: &Target) -> Result<(), ReplError> {
        let params = [
            ("user", target.user.as_str()),
            ("database", "replication"),
            ("replication", "true"),
            ("application_name", target.application_name.as_str()),
        ];
        frontend::startup_message(params, &mut self.write_buf).map_err(|e| self.io_error(e))?;
        self.flush().await?;
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'R' => self.authenticate(target, &frame.body, &mut scram).await?,
                b'S' => {
                    let (name, value) = messages::decode_parameter_status(&frame.body);
                    if name == "server_version" {
                        self.server_version = value;
                    }
                }
                b'E' => {
                    let error = messages::decode_server_message(&frame.body);
                    // 28xxx: bad password or no pg_hba line; others (too many clients,
                    // starting up) are ordinary server errors, some retryable.
                    if error.code.starts_with("28") {
                        return Err(self.auth_error(target, error.message));
                    }
                    return Err(ReplError::from_server(&self.server, "startup", error));
                }
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }

    async fn authenticate(
        &mut self,
        target: &Target,
        body: &[u8],
        scram: &mut Option<sasl::ScramSha256>,
    ) -> Result<(), ReplError> {
        let (code, data) = messages::decode_auth(body).map_err(|e| self.protocol(e))?;
        let password = || {
            target.password.clone().ok_or_else(|| {
                self.auth_error(target, "the server asks for a password and none is set (conninfo, PGPASSWORD or pgpass)".into())
            })
        };
        let sent = match code {
            0 => return Ok(()),
            3 => frontend::password_message(&password()?, &mut self.write_buf),
            5 => {
                let salt: [u8; 4] = data
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| self.protocol("MD5 request without salt".into()))?;
                let hash = md5_hash(target.user.as_bytes(), &password()?, salt);
                frontend::password_message(hash.as_bytes(), &mut self.write_buf)
            }
            10 => {
                let offered = messages::sasl_mechanisms(data);
                if !offered.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                    let reason = format!("unsupported SASL mechanisms {offered:?}");
                    return Err(self.auth_error(target, reason));
                }
                let state =
                    sasl::ScramSha256::new(&password()?, sasl::ChannelBinding::unsupported());
                let sent = frontend::sasl_initial_response(
                    sasl::SCRAM_SHA_256,
                    state.message(),
                    &mut self.write_buf,
                );
                *scram = Some(state);
                sent
            }
            11 | 12 => {
                let state = scram
                    .as_mut()
                    .ok_or_else(|| self.protocol("SASL message before SASL start".into()))?;
                if code == 11 {
                    state
                        .update(data)
                        .map_err(|e| self.auth_error(target, e.to_string()))?;
                    frontend::sasl_response(state.message(), &mut self.write_buf)
                } else {
                    // Checks the server's signature: a server without the password cannot pass.
                    return state
                        .finish(data)
                        .map_err(|e| self.auth_error(target, e.to_string()));
                }
            }
            other => {
                let reason = format!("unsupported authentication request {other}");
                return Err(self.auth_error(target, reason));
            }
        };
        sent.map_err(|e| self.io_error(e))?;
        self.flush().await
    }

    /// Reads one backend message; cancel-safe.
    pub async fn read_frame(&mut self) -> Result<Frame, ReplError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(frame);
            }
            let n = self
                .io
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(ReplError::Closed {
                    server: self.server.clone(),
                });
            }
        }
    }

    fn take_frame(&mut self) -> Result<Option<Frame>, ReplError> {
        let Some(header) = Header::parse(&self.read_buf).map_err(|e| self.io_error(e))? else {
            return Ok(None);
        };
        let total = 1 + header.len() as usize;
        if total > MAX_MESSAGE {
            return Err(self.protocol(format!(
                "message {:?} of {total} bytes exceeds the {MAX_MESSAGE}-byte limit",
                header.tag() as char
            )));
        }
        if self.read_buf.len() < total {
            self.read_buf.reserve(total - self.read_buf.len());
            return Ok(None);
        }
        let mut frame = self.read_buf.split_to(total).freeze();
        let body = frame.split_off(5);
        Ok(Some(Frame {
            tag: header.tag(),
            body,
        }))
    }

    /// Sends what the frontend encoders put in the write buffer.
    pub async fn flush(&mut self) -> Result<(), ReplError> {
        let buf = self.write_buf.split();
        self.io
            .write_all(&buf)
            .await
            .map_err(|e| self.io_error(e))?;
        self.io.flush().await.map_err(|e| self.io_error(e))
    }

    /// The buffer the frontend encoders write into before [`Conn::flush`].
    pub fn write_buf(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    /// Sends a simple query.
    pub async fn send_query(&mut self, command: &str) -> Result<(), ReplError> {
        frontend::query(command, &mut self.write_buf).map_err(|e| self.io_error(e))?;
        self.flush().await
    }

    /// Runs a command that answers with rows; reads through `'Z'`.
    pub async fn simple_query(&mut self, command: &str) -> Result<Vec<Row>, ReplError> {
        self.send_query(command).await?;
        self.read_result(command).await
    }

    /// Reads result sets until `'Z'`: several CommandComplete messages can come first.
    pub async fn read_result(&mut self, command: &str) -> Result<Vec<Row>, ReplError> {
        let mut rows = Vec::new();
        let mut error: Option<ServerMessage> = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'D' => {
                    rows.push(messages::decode_data_row(&frame.body).map_err(|e| self.protocol(e))?)
                }
                b'E' => error = Some(messages::decode_server_message(&frame.body)),
                b'N' => log_notice(&self.server, &frame.body),
                b'Z' => break,
                b'T' | b'C' | b'I' | b'S' => {}
                other => {
                    return Err(self.protocol(format!(
                        "unexpected message {:?} after {command}",
                        other as char
                    )));
                }
            }
        }
        match error {
            Some(error) => Err(ReplError::from_server(&self.server, command, error)),
            None => Ok(rows),
        }
    }

    /// A protocol error naming this server.
    pub fn protocol(&self, reason: String) -> ReplError {
        ReplError::Protocol {
            server: self.server.clone(),
            reason,
        }
    }

    fn io_error(&self, source: std::io::Error) -> ReplError {
        ReplError::Io {
            server: self.server.clone(),
            source,
        }
    }

    fn auth_error(&self, target: &Target, reason: String) -> ReplError {
        ReplError::Auth {
            server: self.server.clone(),
            user: target.user.clone(),
            reason,
        }
    }
}

/// Logs a NoticeResponse at DEBUG: warnings from a walsender need no action by themselves.
pub fn log_notice(server: &str, body: &[u8]) {
    let notice = messages::decode_server_message(body);
    tracing::debug!(server, severity = %notice.severity, message = %notice.message, "server notice");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_gives_socket_or_tcp_target() {
        let unix = parse_target("host=/run/pg port=5433 user=postgres dbname=postgres").unwrap();
        assert_eq!(unix.server, "/run/pg:5433");
        assert!(matches!(unix.host, Host::Unix(_)));
        assert_eq!(unix.application_name, "lifeboat");
        let tcp = parse_target("host=127.0.0.1 user=u password=p application_name=x").unwrap();
        assert_eq!(tcp.server, "127.0.0.1:5432");
        assert_eq!(tcp.password.as_deref(), Some(&b"p"[..]));
        assert_eq!(tcp.application_name, "x");
        assert!(!format!("{tcp:?}").contains("\"p\""));
    }

    #[test]
    fn tls_modes_are_refused_by_name() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let err = parse_target(&format!("host=h user=u sslmode={mode}")).unwrap_err();
            assert!(matches!(err, ReplError::TlsUnsupported { .. }), "{err}");
            assert!(err.to_string().contains(mode));
        }
        assert!(parse_target("host=h user=u sslmode=prefer").is_ok());
        assert!(parse_target("host=h user=u bogus=1").is_err());
    }
}
