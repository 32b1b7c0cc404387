//! A cluster whose WAL `lifeboat daemon` streams (`[cluster.wal] mode = "stream"`, archiving
//! off), and the daemon as a child process.
//!
//! Example:
//! ```no_run
//! use lifeboat_tests::{Archived, Daemon};
//! let a = Archived::streaming("primary");
//! let daemon = Daemon::start(&a);
//! daemon.wait_streaming(&a);
//! a.lifeboat_ok(&["backup"]);
//! ```
//!
//! Invariant: a daemon never outlives its test: dropping [`Daemon`] kills it.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::setup::ConfigParts;
use crate::Archived;

/// How often the streamed part of a segment is stored in these tests.
pub const PARTIAL_UPLOAD_INTERVAL: Duration = Duration::from_secs(1);

/// What a streaming test configures beyond the defaults of [`Archived::streaming`].
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// `metrics-listen`; no `/metrics` when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// `[cluster.backup] schedule`; `"off"` when unset, so no backup surprises a test.
    pub schedule: Option<String>,
}

impl Archived {
    /// Creates and starts a cluster with archiving off, writes a configuration that streams its
    /// WAL (partial uploads every [`PARTIAL_UPLOAD_INTERVAL`]) and initialises the repository.
    /// The daemon is not started.
    #[track_caller]
    pub fn streaming(name: &str) -> Archived {
        Archived::streaming_with(name, &StreamOptions::default())
    }

    /// [`Archived::streaming`] with the extra settings of `opts`.
    #[track_caller]
    pub fn streaming_with(name: &str, opts: &StreamOptions) -> Archived {
        Archived::build(name, false, |_| stream_parts(opts))
    }
}

/// `lifeboat daemon` running as a child process; killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `lifeboat --config <config> daemon`, logging to `<root>/daemon-<n>.log`.
    #[track_caller]
    pub fn start(a: &Archived) -> Daemon {
        let log = (0..)
            .map(|n| a.root.path().join(format!("daemon-{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let file = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().expect("log file handle");
        let child = a
            .root
            .lifeboat()
            .arg("--config")
            .arg(&a.config)
            .arg("daemon")
            .env("LIFEBOAT_LOG", "lifeboat=debug")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start lifeboat daemon: {e}"));
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's slot is active on the source and its first WAL is durable.
    #[track_caller]
    pub fn wait_streaming(&self, a: &Archived) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let active = "SELECT count(*) FROM pg_replication_slots \
                      WHERE slot_name = 'lifeboat' AND active";
        while a.sql(active) != "1" {
            assert!(
                Instant::now() < deadline,
                "the daemon did not start streaming in 30 s\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit; panics unless it exits 0 within 10 s.
    #[track_caller]
    pub fn stop(mut self) -> Duration {
        let mut child = self.child.take().expect("the daemon runs");
        let started = Instant::now();
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM to the daemon");
        let status: ExitStatus = loop {
            if let Some(status) = child.try_wait().expect("wait for the daemon") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!(
                    "the daemon did not exit within 15 s of SIGTERM\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = started.elapsed();
        assert!(
            status.success(),
            "daemon exited with {status}\n{}",
            self.log()
        );
        assert!(
            took < Duration::from_secs(10),
            "the daemon took {took:?} to stop\n{}",
            self.log()
        );
        took
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The end of the newest WAL stored in local repository `repo` on `tli`: the highest complete
/// segment's end or partial's end LSN, read from the object names.
pub fn repo_durable_end(repo: &Path, tli: u32, seg_size: u64) -> u64 {
    let dir = repo.join("wal").join(format!("{tli:08X}"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let per = (1u64 << 32) / seg_size;
    let mut end = 0;
    for name in entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
    {
        let (seg, partial) = match name.split_once(".partial.") {
            Some((seg, lsn)) => (seg, u64::from_str_radix(lsn, 16).ok()),
            None => (name.as_str(), None),
        };
        if seg.len() != 24 || !seg.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let log = u64::from_str_radix(&seg[8..16], 16).unwrap_or(0);
        let low = u64::from_str_radix(&seg[16..24], 16).unwrap_or(0);
        let this = partial.unwrap_or((log * per + low + 1) * seg_size);
        end = end.max(this);
    }
    end
}

/// The configuration parts of a streamed cluster.
fn stream_parts(opts: &StreamOptions) -> ConfigParts {
    ConfigParts {
        top: opts
            .metrics_listen
            .map(|a| format!("metrics-listen = \"{a}\"\n"))
            .unwrap_or_default(),
        backup: format!("schedule = \"{}\"\n", opts.schedule.as_deref().unwrap_or("off")),
        tail: format!(
            "[cluster.wal]\nmode = \"stream\"\nslot = \"lifeboat\"\npartial-upload-interval = \"{}s\"\n",
            PARTIAL_UPLOAD_INTERVAL.as_secs()
        ),
        ..ConfigParts::default()
    }
}
