//! Server processes under test: start one on a fresh port, read its port from
//! the log, sample its memory from /proc, kill it on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rnats,
    Nats,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rnats => "rnats-server",
            Kind::Nats => "nats-server",
        }
    }
}

/// A server process on 127.0.0.1 with an ephemeral port. Killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The websocket listener (started with `websocket`).
    pub ws_addr: Option<SocketAddr>,
}

impl ServerProcess {
    /// Starts `binary -a 127.0.0.1 -p -1` (with `websocket`, also a
    /// websocket listener: `ws.rs`) and waits for its listening line.
    pub fn start(binary: &Path, websocket: bool) -> Result<ServerProcess, String> {
        let extra = if websocket {
            crate::ws::config_args()?.to_vec()
        } else {
            Vec::new()
        };
        ServerProcess::start_with(binary, &extra)
    }

    /// Starts `binary -a 127.0.0.1 -p -1` with more arguments (`-c FILE`:
    /// a websocket or JetStream configuration).
    pub fn start_with(binary: &Path, extra: &[String]) -> Result<ServerProcess, String> {
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Both servers log the websocket listener before the client one.
            let mut ws_port = None;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                ws_port = ws_port.or_else(|| crate::ws::listening_port(&line));
                if let Some(port) = listening_port(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((port, ws_port));
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((port, ws_port)) => Ok(ServerProcess {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                ws_addr: ws_port.map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{} reported no listening port", binary.display()))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a clean shutdown: both servers flush their stores), and wait
    /// up to `limit` for the exit; after that, SIGKILL and an error.
    pub fn stop(mut self, limit: Duration) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(format!("did not exit within {limit:?} of SIGTERM"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("Listening for client connections on ").nth(1)?;
    rest.trim().rsplit(':').next()?.parse().ok()
}

/// Resident memory of a process, KiB: (VmRSS now, VmHWM peak).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// This workspace's release `rnats-server`: beside this binary.
pub fn rnats_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.join("rnats-server");
    bin.is_file().then_some(bin)
}

/// The reference nats-server: `pyenv which nats-server`, else PATH.
pub fn nats_binary() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pyenv")
        .args(["which", "nats-server"])
        .output()
    {
        if out.status.success() {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if path.is_file() {
                return Some(path);
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// CPU time all threads of a process have used so far, nanoseconds (the sum of
/// the first field of /proc/<pid>/task/*/schedstat). Time of threads that
/// exited is not counted.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
