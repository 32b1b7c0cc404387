//! Pure encoders and decoders for the replication protocol: backend message bodies this client
//! reads (data rows, errors, authentication requests, CopyBothResponse) and the CopyData payloads
//! of a physical stream (XLogData `'w'`, keepalive `'k'`, standby status update `'r'`).
//!
//! Example: a status update reporting flush `0/20457B8` is 34 bytes, `'r'` then write, flush and
//! apply LSNs, the client time in µs since 2000-01-01 and a reply-requested byte.
//!
//! Invariant: every decoder checks lengths before reading, so a short or garbled message from
//! the network is an error, never a panic or a silently wrong LSN.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::pg::{Lsn, TimelineId};

/// Seconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC.
const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Size of a standby status update payload.
pub const STATUS_UPDATE_LEN: usize = 34;

/// Size of a primary keepalive payload.
pub const KEEPALIVE_LEN: usize = 18;

/// Size of the XLogData header before the WAL bytes.
pub const XLOGDATA_HEADER_LEN: usize = 25;

/// One row of a result set: each column's raw text, or `None` for NULL.
pub type Row = Vec<Option<Bytes>>;

/// One CopyData payload sent by a walsender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyMessage {
    /// WAL bytes starting at `start`.
    XLogData {
        /// LSN of the first byte of `data`.
        start: Lsn,
        /// The server's WAL end (for a historic timeline, that timeline's end).
        wal_end: Lsn,
        /// Server clock, µs since 2000-01-01.
        send_time: i64,
        /// The WAL bytes.
        data: Bytes,
    },
    /// A heartbeat from the server.
    Keepalive {
        /// The server's WAL end.
        wal_end: Lsn,
        /// Server clock, µs since 2000-01-01.
        send_time: i64,
        /// The server will kill the connection unless a status update comes soon.
        reply_requested: bool,
    },
}

/// The fields of an ErrorResponse or NoticeResponse that this client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerMessage {
    /// `ERROR`, `FATAL`, `WARNING`, ...
    pub severity: String,
    /// SQLSTATE, like `58P01`.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The DETAIL line, if any.
    pub detail: Option<String>,
}

/// The current time as PostgreSQL counts it: µs since 2000-01-01 UTC.
pub fn now_pg_micros() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_unix.as_micros() as i64 - (PG_EPOCH_UNIX_SECS as i64) * 1_000_000
}

/// Encodes a standby status update `'r'`.
pub fn encode_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    client_time: i64,
    reply_requested: bool,
) -> [u8; STATUS_UPDATE_LEN] {
    let mut out = [0u8; STATUS_UPDATE_LEN];
    out[0] = b'r';
    out[1..9].copy_from_slice(&write.0.to_be_bytes());
    out[9..17].copy_from_slice(&flush.0.to_be_bytes());
    out[17..25].copy_from_slice(&apply.0.to_be_bytes());
    out[25..33].copy_from_slice(&client_time.to_be_bytes());
    out[33] = u8::from(reply_requested);
    out
}

/// Decodes one CopyData payload of a physical stream.
pub fn decode_copy_data(payload: Bytes) -> Result<CopyMessage, String> {
    match payload.first() {
        Some(b'w') if payload.len() >= XLOGDATA_HEADER_LEN => Ok(CopyMessage::XLogData {
            start: Lsn(be_u64(&payload[1..9])),
            wal_end: Lsn(be_u64(&payload[9..17])),
            send_time: be_u64(&payload[17..25]) as i64,
            data: payload.slice(XLOGDATA_HEADER_LEN..),
        }),
        Some(b'k') if payload.len() == KEEPALIVE_LEN => Ok(CopyMessage::Keepalive {
            wal_end: Lsn(be_u64(&payload[1..9])),
            send_time: be_u64(&payload[9..17]) as i64,
            reply_requested: payload[17] != 0,
        }),
        Some(&tag) => Err(format!(
            "unexpected CopyData message {:?} of {} bytes",
            tag as char,
            payload.len()
        )),
        None => Err("empty CopyData message".into()),
    }
}

/// Decodes a CopyBothResponse `'W'` body (which postgres-protocol does not know): int8 format,
/// int16 column count, one int16 format per column. Returns the column count.
pub fn decode_copy_both(body: &[u8]) -> Result<u16, String> {
    if body.len() < 3 {
        return Err(format!(
            "CopyBothResponse of {} bytes is too short",
            body.len()
        ));
    }
    let columns = u16::from_be_bytes([body[1], body[2]]);
    if body.len() != 3 + 2 * columns as usize {
        return Err(format!(
            "CopyBothResponse of {} bytes does not match its {columns} columns",
            body.len()
        ));
    }
    Ok(columns)
}

/// Decodes a DataRow `'D'` body: int16 column count, then per column an int32 length (-1 for
/// NULL) and the bytes.
pub fn decode_data_row(body: &Bytes) -> Result<Row, String> {
    let short = || format!("DataRow of {} bytes is truncated", body.len());
    if body.len() < 2 {
        return Err(short());
    }
    let columns = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut row = Vec::with_capacity(columns);
    let mut at = 2;
    for _ in 0..columns {
        let len_bytes = body.get(at..at + 4).ok_or_else(short)?;
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let end = at + len as usize;
        if end > body.len() {
            return Err(short());
        }
        row.push(Some(body.slice(at..end)));
        at = end;
    }
    Ok(row)
}

/// Decodes the fields of an ErrorResponse `'E'` or NoticeResponse `'N'` body.
pub fn decode_server_message(body: &[u8]) -> ServerMessage {
    let mut msg = ServerMessage::default();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let (value, after) = split_cstr(tail);
        match kind {
            b'V' => msg.severity = value,
            b'S' if msg.severity.is_empty() => msg.severity = value,
            b'C' => msg.code = value,
            b'M' => msg.message = value,
            b'D' => msg.detail = Some(value),
            _ => {}
        }
        rest = after;
    }
    msg
}

/// Decodes an authentication request `'R'`: the request code and its data.
pub fn decode_auth(body: &[u8]) -> Result<(i32, &[u8]), String> {
    if body.len() < 4 {
        return Err(format!("authentication request of {} bytes", body.len()));
    }
    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok((code, &body[4..]))
}

/// The mechanism names of an AuthenticationSASL request's data (NUL-terminated, then a NUL).
pub fn sasl_mechanisms(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

/// Decodes a ParameterStatus `'S'` body into name and value.
pub fn decode_parameter_status(body: &[u8]) -> (String, String) {
    let (name, rest) = split_cstr(body);
    let (value, _) = split_cstr(rest);
    (name, value)
}

/// Parses `SHOW wal_segment_size` output (`16MB`, `1GB`, `512kB` or plain bytes) into bytes.
pub fn parse_segment_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim() {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    let size = number.checked_mul(unit)?;
    (size.is_power_of_two() && size >= 1 << 20).then_some(size)
}

/// The major version from the `server_version` parameter: `15.18 (Debian 15.18-1)` → 15.
pub fn parse_server_major(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Parses the row that ends a timeline: next_tli (int8 as text) and next_tli_startpos.
pub fn parse_end_of_timeline(row: &Row) -> Result<(TimelineId, Lsn), String> {
    match row.as_slice() {
        [Some(tli), Some(pos)] => {
            let tli = text(tli)
                .parse::<u32>()
                .map_err(|e| format!("next timeline {:?}: {e}", text(tli)))?;
            let pos = text(pos).parse::<Lsn>().map_err(|e| e.to_string())?;
            Ok((TimelineId(tli), pos))
        }
        _ => Err(format!(
            "end-of-timeline row has {} columns or NULLs",
            row.len()
        )),
    }
}

/// A column's text, lossily decoded.
pub fn text(column: &Bytes) -> String {
    String::from_utf8_lossy(column).into_owned()
}

/// Whether `name` is a valid replication slot name: 1-63 of `[a-z0-9_]`, as PostgreSQL requires.
pub fn valid_slot_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(raw)
}

fn split_cstr(bytes: &[u8]) -> (String, &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(nul) => (
            String::from_utf8_lossy(&bytes[..nul]).into_owned(),
            &bytes[nul + 1..],
        ),
        None => (String::from_utf8_lossy(bytes).into_owned(), &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_update_is_34_bytes_in_network_order() {
        let msg = encode_status_update(Lsn(0x1_0000_0002), Lsn(0x20457B8), Lsn(0), 7, false);
        assert_eq!(msg.len(), 34);
        assert_eq!(msg[0], b'r');
        assert_eq!(&msg[1..9], &[0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(&msg[9..17], &[0, 0, 0, 0, 0x02, 0x04, 0x57, 0xB8]);
        assert_eq!(&msg[17..25], &[0; 8]);
        assert_eq!(&msg[25..33], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(msg[33], 0);
        assert_eq!(encode_status_update(Lsn(0), Lsn(0), Lsn(0), 0, true)[33], 1);
    }

    #[test]
    fn keepalive_is_18_bytes() {
        let mut raw = vec![b'k'];
        raw.extend_from_slice(&0x0000_0000_0300_0060u64.to_be_bytes());
        raw.extend_from_slice(&42i64.to_be_bytes());
        raw.push(1);
        assert_eq!(raw.len(), KEEPALIVE_LEN);
        let decoded = decode_copy_data(Bytes::from(raw.clone())).unwrap();
        assert_eq!(
            decoded,
            CopyMessage::Keepalive {
                wal_end: Lsn(0x300_0060),
                send_time: 42,
                reply_requested: true
            }
        );
        raw.push(0);
        assert!(decode_copy_data(Bytes::from(raw)).is_err());
    }

    #[test]
    fn xlogdata_header_is_25_bytes_then_wal() {
        let mut raw = vec![b'w'];
        raw.extend_from_slice(&0x100_0000u64.to_be_bytes());
        raw.extend_from_slice(&0x17414F8u64.to_be_bytes());
        raw.extend_from_slice(&9i64.to_be_bytes());
        raw.extend_from_slice(b"WAL!");
        match decode_copy_data(Bytes::from(raw)).unwrap() {
            CopyMessage::XLogData {
                start,
                wal_end,
                send_time,
                data,
            } => {
                assert_eq!(start.to_string(), "0/1000000");
                assert_eq!(wal_end.to_string(), "0/17414F8");
                assert_eq!(send_time, 9);
                assert_eq!(&data[..], b"WAL!");
            }
            other => panic!("{other:?}"),
        }
        assert!(decode_copy_data(Bytes::from_static(b"w\0\0")).is_err());
        assert!(decode_copy_data(Bytes::new()).is_err());
    }

    #[test]
    fn copy_both_response_has_format_and_column_count() {
        assert_eq!(decode_copy_both(&[0, 0, 0]), Ok(0));
        assert_eq!(decode_copy_both(&[0, 0, 1, 0, 0]), Ok(1));
        assert!(decode_copy_both(&[0, 0]).is_err());
        assert!(decode_copy_both(&[0, 0, 2, 0, 0]).is_err());
    }

    #[test]
    fn end_of_timeline_row_names_next_timeline_and_start() {
        let body = Bytes::from_static(b"\0\x02\0\0\0\x012\0\0\0\x090/4031038");
        let row = decode_data_row(&body).unwrap();
        assert_eq!(
            parse_end_of_timeline(&row),
            Ok((TimelineId(2), Lsn(0x4031038)))
        );
        let nulls = decode_data_row(&Bytes::from_static(
            b"\0\x02\xff\xff\xff\xff\xff\xff\xff\xff",
        ))
        .unwrap();
        assert_eq!(nulls, vec![None, None]);
        assert!(parse_end_of_timeline(&nulls).is_err());
        assert!(decode_data_row(&Bytes::from_static(b"\0\x01\0\0\0\x09short")).is_err());
    }

    #[test]
    fn error_fields_decode() {
        let body = b"SERROR\0VERROR\0C58P01\0Mrequested WAL segment has already been removed\0\0";
        let msg = decode_server_message(body);
        assert_eq!(msg.severity, "ERROR");
        assert_eq!(msg.code, "58P01");
        assert!(msg.message.starts_with("requested WAL segment"));
        assert_eq!(msg.detail, None);
    }

    #[test]
    fn segment_sizes_parse() {
        assert_eq!(parse_segment_size("16MB"), Some(16 << 20));
        assert_eq!(parse_segment_size("1GB"), Some(1 << 30));
        assert_eq!(parse_segment_size("64MB"), Some(64 << 20));
        assert_eq!(parse_segment_size("16777216"), Some(16 << 20));
        assert_eq!(parse_segment_size("15MB"), None);
        assert_eq!(parse_segment_size("16XB"), None);
        assert_eq!(parse_segment_size(""), None);
    }

    #[test]
    fn small_parsers() {
        assert_eq!(parse_server_major("15.18 (Debian 15.18-1.pgdg)"), Some(15));
        assert_eq!(parse_server_major("17devel"), Some(17));
        assert_eq!(
            sasl_mechanisms(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").len(),
            2
        );
        assert_eq!(
            decode_parameter_status(b"server_version\x0015.18\0"),
            ("server_version".into(), "15.18".into())
        );
        assert!(valid_slot_name("lifeboat_1"));
        assert!(!valid_slot_name("Lifeboat"));
        assert!(!valid_slot_name("a\"b"));
        assert!(!valid_slot_name(""));
        assert!(now_pg_micros() > 800_000_000_000_000);
    }
}
