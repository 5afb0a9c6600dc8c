//! Private MariaDB servers: `mariadb-install-db` into a temp dir, then
//! `mariadbd --no-defaults` on a free 127.0.0.1 port with its own socket
//! and pid file there. Admin SQL goes through the `mariadb` CLI over the
//! private socket as root; the tests connect over TCP as `app`, an
//! ordinary user (no SUPER / READ_ONLY ADMIN, so `read_only` binds it).
//!
//! Std only (plus the parent module): `bench/` includes the support module
//! by path. Never touches the shared server on 3306; signals only the
//! `mariadbd` it spawned (its own child).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, free_port, signal, wait_port};

/// The database the tests use; `app` may do anything in it.
pub const DB: &str = "redial";

/// Where the MariaDB binaries live when `/usr/sbin` is not on `PATH`.
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/usr/bin", "/usr/local/sbin"];

/// Finds `bin` on PATH or in /usr/sbin, /usr/bin, /usr/local/sbin; when
/// missing, [`super::require`]'s SKIPPED line (or its panic under
/// `REDIAL_REQUIRE_SERVERS=1`).
pub fn require_bin(bin: &str) -> Option<PathBuf> {
    EXTRA_DIRS
        .iter()
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
        .or_else(|| super::require(bin))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A private MariaDB server.
pub struct MariaDbServer {
    pub port: u16,
    mariadbd: PathBuf,
    client: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    // Last: removed after the server is killed.
    dir: TempDir,
}

impl MariaDbServer {
    /// Installs and starts one with database [`DB`] and user `app`
    /// (password `app`), or `None` (SKIPPED) when a binary is missing.
    pub fn start() -> Option<MariaDbServer> {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with extra `mariadbd` arguments (after
    /// the defaults, so they win: `--max-connections=3`).
    pub fn start_with(extra: &[&str]) -> Option<MariaDbServer> {
        let s = Self::install(extra)?;
        s.sql(&format!(
            "CREATE DATABASE {DB}; CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
             GRANT ALL ON {DB}.* TO 'app'@'%';"
        ));
        Some(s)
    }

    /// Installs into a fresh temp dir and starts, no users or database.
    fn install(extra: &[&str]) -> Option<MariaDbServer> {
        let mariadbd = require_bin("mariadbd")?;
        let install = require_bin("mariadb-install-db")?;
        let client = require_bin("mariadb")?;
        let dir = TempDir::new("mariadb");
        // Its own tmpdir: bootstraps running side by side in a shared /tmp
        // have been seen to trip over each other's temporary tables.
        let tmp = dir.0.join("tmp");
        std::fs::create_dir_all(&tmp).expect("create tmpdir");
        let mut cmd = Command::new(install);
        cmd.args([
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", dir.0.join("data").display()))
        .arg(format!("--tmpdir={}", tmp.display()));
        if is_root() {
            cmd.arg("--user=root");
        }
        let out = cmd.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = MariaDbServer {
            port: free_port(),
            mariadbd,
            client,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
            dir,
        };
        s.spawn();
        Some(s)
    }

    /// `mysql://app:app@127.0.0.1:<port>/redial`.
    pub fn url(&self) -> String {
        format!("mysql://app:app@127.0.0.1:{}/{DB}", self.port)
    }

    /// The server's temp dir (its `data/`, `err.log`, socket).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    fn socket(&self) -> PathBuf {
        self.dir.0.join("sock")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let d = &self.dir.0;
        let mut cmd = Command::new(&self.mariadbd);
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("err.log").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .args([
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-innodb-doublewrite",
                "--performance-schema=OFF",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn mariadbd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !wait_port(self.port, Duration::from_millis(100)) {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                signal(child.id(), libc::SIGKILL);
                let _ = child.wait();
                panic!(
                    "mariadbd did not listen on {} ({exited:?}); its log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
        }
        self.child = Some(child);
    }

    /// The last lines of the server's error log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.0.join("err.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server keeps its sockets (the kernel still accepts
    /// connections) but answers nothing until [`resume`](Self::resume).
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGCONT);
        }
    }

    /// A clean shutdown (SIGTERM: mariadbd closes its connections, 1053
    /// to statements under way, and flushes), waited for up to 30 s, then
    /// SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    signal(c.id(), libc::SIGKILL);
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts it again on the same port and data (stopping it cleanly
    /// first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Admin SQL as root over the private socket: the rows, tab-separated,
    /// one a line (no header). Panics with the client's error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("admin SQL {sql:?} failed: {e}"))
    }

    /// As [`sql`](Self::sql), the client's error as `Err`.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.client)
            .args(["--no-defaults", "-uroot", "-N", "-B"])
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-e", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// `SET GLOBAL read_only = 1 / 0`.
    pub fn set_read_only(&self, on: bool) {
        self.sql(&format!("SET GLOBAL read_only = {}", u8::from(on)));
    }

    /// `SELECT id, COUNT(*) FROM <table> GROUP BY id`, as pairs.
    pub fn id_counts(&self, table: &str) -> Vec<(i64, i64)> {
        self.sql(&format!(
            "SELECT id, COUNT(*) FROM {DB}.{table} GROUP BY id"
        ))
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once('\t')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary and a replica with binlog replication (GTID).
pub struct MariaDbPair {
    pub primary: MariaDbServer,
    pub replica: MariaDbServer,
}

/// When a [`MariaDbPair::switchover`] did what.
#[derive(Clone, Copy, Debug)]
pub struct Switchover {
    /// The old primary answered `SET GLOBAL read_only = 1`.
    pub read_only_at: Instant,
    /// The replica had applied everything the old primary wrote.
    pub caught_up_at: Instant,
    /// The replica answered `SET GLOBAL read_only = 0`: the new primary.
    pub writable_at: Instant,
}

impl MariaDbPair {
    /// Both installed and started (`--log-bin`, server ids 1 and 2), the
    /// replica read-only and replicating from the primary by GTID, [`DB`]
    /// and `app` on both; or `None` (SKIPPED).
    pub fn start() -> Option<MariaDbPair> {
        let binlog = ["--log-bin=binlog", "--binlog-format=ROW"];
        let primary = MariaDbServer::install(&[binlog[0], binlog[1], "--server-id=1"])?;
        let replica =
            MariaDbServer::install(&[binlog[0], binlog[1], "--server-id=2", "--read-only=1"])?;
        primary.sql(&format!(
            "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl'; \
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'; \
             CREATE DATABASE {DB}; CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
             GRANT ALL ON {DB}.* TO 'app'@'%';"
        ));
        replica.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
             MASTER_USER='repl', MASTER_PASSWORD='repl', \
             MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;",
            primary.port
        ));
        let pair = MariaDbPair { primary, replica };
        pair.wait_caught_up(Duration::from_secs(20));
        Some(pair)
    }

    /// Waits until the replica has applied everything the primary has
    /// written so far (`MASTER_GTID_WAIT`).
    pub fn wait_caught_up(&self, within: Duration) {
        let pos = self.primary.sql("SELECT @@global.gtid_binlog_pos");
        let got = self.replica.sql(&format!(
            "SELECT MASTER_GTID_WAIT('{pos}', {})",
            within.as_secs_f64()
        ));
        assert_eq!(
            got,
            "0",
            "replica did not reach {pos}; its status:\n{}",
            self.replica.sql("SHOW SLAVE STATUS\\G")
        );
    }

    /// The primary set read-only, the replica waited for until it has
    /// everything, its replication stopped and it made writable; returns
    /// when done, with when each step finished.
    pub fn switchover(&self) -> Switchover {
        self.primary.set_read_only(true);
        let read_only_at = Instant::now();
        self.wait_caught_up(Duration::from_secs(20));
        let caught_up_at = Instant::now();
        self.replica.sql("STOP SLAVE; RESET SLAVE ALL;");
        self.replica.set_read_only(false);
        Switchover {
            read_only_at,
            caught_up_at,
            writable_at: Instant::now(),
        }
    }
}
