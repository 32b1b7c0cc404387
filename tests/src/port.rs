//! Choosing TCP ports for test clusters.
//!
//! Example: `free_port()` binds `127.0.0.1:0`, reads the port the kernel chose (say 41873),
//! closes the socket and returns the port.
//!
//! Invariant: a port is handed out at most once per test process, so parallel tests never pick
//! the same one; another process can still take it before the server binds, which is why
//! [`crate::Cluster::start`] retries on a fresh port when the bind fails.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// A TCP port on 127.0.0.1 that was free a moment ago and not handed out before in this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a TCP port on 127.0.0.1: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the address of a bound socket: {e}"))
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}
