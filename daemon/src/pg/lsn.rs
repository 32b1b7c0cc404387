//! Log sequence numbers: `Lsn` is a byte position in the WAL stream, shown as PostgreSQL shows it
//! (`0/16B3748`: high and low 32 bits in hex). In repository object names it is written as 16
//! fixed-width hex digits (`00000000016B3748`) so names sort by position.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in the WAL stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// An LSN that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hex numbers separated by a slash, like 0/16B3748")]
pub struct LsnParseError(pub String);

impl Lsn {
    /// The invalid position PostgreSQL writes as `0/0`.
    pub const INVALID: Lsn = Lsn(0);

    /// Sixteen hex digits, the form used inside object names.
    pub fn to_hex16(self) -> String {
        format!("{:016X}", self.0)
    }

    /// Parses the sixteen-hex-digit form of [`Lsn::to_hex16`].
    pub fn from_hex16(s: &str) -> Result<Lsn, LsnParseError> {
        if s.len() != 16 {
            return Err(LsnParseError(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(Lsn)
            .map_err(|_| LsnParseError(s.to_string()))
    }

    /// The start of the segment holding this position.
    pub fn segment_start(self, seg_size: u64) -> Lsn {
        Lsn(self.0 - self.0 % seg_size)
    }

    /// Byte offset of this position inside its segment.
    pub fn segment_offset(self, seg_size: u64) -> u64 {
        self.0 % seg_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Lsn, LsnParseError> {
        let bad = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let lsn: Lsn = "1/A2000000".parse().unwrap();
        assert_eq!(lsn.0, 0x1_A200_0000);
        assert_eq!(lsn.to_string(), "1/A2000000");
        assert_eq!(Lsn::from_hex16(&lsn.to_hex16()).unwrap(), lsn);
    }

    #[test]
    fn rejects_garbage() {
        assert!("16B3748".parse::<Lsn>().is_err());
        assert!("0/xyz".parse::<Lsn>().is_err());
        assert!(Lsn::from_hex16("0/0").is_err());
    }
}
