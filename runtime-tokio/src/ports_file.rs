//! The ports file (`--ports_file_dir`) and the pid file (`-P`).
//!
//! The ports file tells scripts and tests where a server listens, which
//! matters with `-p -1`. As in the reference it is named
//! `<executable name>_<pid>.ports`, holds one line of compact JSON with the
//! keys `nats`, `monitoring`, `cluster`, `profile`, `websocket` in that order
//! (empty lists left out, no trailing newline), is written once every
//! listener is bound, and is removed at shutdown.
//!
//! The pid file holds the decimal pid and no newline, and is left in place at
//! shutdown, as the reference leaves it.
//!
//! A listener bound to an unspecified address (0.0.0.0 or ::) is listed once
//! per address of every interface, loopback and link-local included, in the
//! order of the interfaces' indexes, IPv4 before IPv6 within an interface:
//! that is what the reference writes.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The URLs a server can be reached at, by service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ports {
    /// Client URLs: `nats://host:port` (`tls://` with TLS).
    pub nats: Vec<String>,
    /// Monitoring URLs: `http://` or `https://`.
    pub monitoring: Vec<String>,
    /// Route URLs: `nats://` (`tls://` with TLS).
    pub cluster: Vec<String>,
    /// Profiling URLs: `http://`.
    pub profile: Vec<String>,
    /// Websocket URLs: `ws://` or `wss://`.
    pub websocket: Vec<String>,
}

impl Ports {
    /// The file's contents, byte for byte as the reference writes them.
    pub fn to_json(&self) -> String {
        let sections = [
            ("nats", &self.nats),
            ("monitoring", &self.monitoring),
            ("cluster", &self.cluster),
            ("profile", &self.profile),
            ("websocket", &self.websocket),
        ];
        let fields: Vec<String> = sections
            .iter()
            .filter(|(_, urls)| !urls.is_empty())
            .map(|(key, urls)| {
                let list = serde_json::to_string(urls).expect("a list of strings serializes");
                format!("\"{key}\":{list}")
            })
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// The ports file's path: `<dir>/<exe_name>_<pid>.ports`.
pub fn ports_file_path(dir: &Path, exe_name: &str, pid: u32) -> PathBuf {
    assert!(!exe_name.is_empty() && !exe_name.contains('/'));
    dir.join(format!("{exe_name}_{pid}.ports"))
}

/// The executable's name as the reference takes it: the last component of
/// `argv[0]` (`rnats-server` when run as `./target/debug/rnats-server`).
pub fn exe_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| crate::flags::PROGRAM_NAME.to_string())
}

/// Writes (or replaces) the ports file and returns its path, to hand to
/// [`remove_ports_file`] at shutdown. On error the reference logs
/// `Error writing ports file (<path>): <error>` and carries on.
pub fn write_ports_file(
    dir: &Path,
    exe_name: &str,
    pid: u32,
    ports: &Ports,
) -> io::Result<PathBuf> {
    let path = ports_file_path(dir, exe_name, pid);
    write_file(&path, ports.to_json().as_bytes(), 0o666)?;
    Ok(path)
}

/// Removes the ports file at shutdown. On error the reference logs
/// `Error cleaning up ports file <path>: <error>`.
pub fn remove_ports_file(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

/// Writes our pid to `path` (`-P`). On error the reference logs the fatal
/// `Could not write pidfile: open <path>: <error>` and exits.
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    assert!(pid > 0);
    write_file(path, pid.to_string().as_bytes(), 0o600)
}

/// Go's `os.WriteFile`: create with `mode` (less the umask) or truncate.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)
}

/// `scheme://host:port` for each address the listener at `address` answers on.
pub fn format_urls(scheme: &str, address: SocketAddr) -> Vec<String> {
    resolve_host_ports(address)
        .into_iter()
        .map(|host_port| format!("{scheme}://{host_port}"))
        .collect()
}

/// `host:port` strings for a listener: itself, or, when bound to an
/// unspecified address, every interface address with its port.
pub fn resolve_host_ports(address: SocketAddr) -> Vec<String> {
    if !address.ip().is_unspecified() {
        return vec![address.to_string()];
    }
    let port = address.port();
    interface_addresses()
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port).to_string())
        .collect()
}

/// Every address of every interface, ordered as described in the module doc.
fn interface_addresses() -> Vec<IpAddr> {
    let mut found: Vec<(u32, IpAddr)> = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read
    // and then free exactly once with freeifaddrs. Each `ifa_addr` is checked
    // for null and read as the sockaddr type its family says it is.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return Vec::new();
        }
        let mut entry = list;
        while !entry.is_null() {
            let current = &*entry;
            entry = current.ifa_next;
            if current.ifa_addr.is_null() {
                continue;
            }
            let ip = match i32::from((*current.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let socket = &*(current.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(socket.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let socket = &*(current.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(socket.sin6_addr.s6_addr))
                }
                _ => continue,
            };
            let name = CStr::from_ptr(current.ifa_name);
            found.push((libc::if_nametoindex(name.as_ptr()), ip));
        }
        libc::freeifaddrs(list);
    }
    // The C library lists all IPv4 addresses before all IPv6 ones; a stable
    // sort by interface keeps that order inside each interface.
    found.sort_by_key(|(index, _)| *index);
    found.into_iter().map(|(_, ip)| ip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_reference() {
        let ports = Ports {
            nats: vec!["nats://127.0.0.1:41307".into(), "nats://[::1]:41307".into()],
            monitoring: vec!["http://127.0.0.1:33783".into()],
            ..Ports::default()
        };
        assert_eq!(
            ports.to_json(),
            r#"{"nats":["nats://127.0.0.1:41307","nats://[::1]:41307"],"monitoring":["http://127.0.0.1:33783"]}"#
        );
        assert_eq!(Ports::default().to_json(), "{}");
        let all = Ports {
            nats: vec!["a".into()],
            monitoring: vec!["b".into()],
            cluster: vec!["c".into()],
            profile: vec!["d".into()],
            websocket: vec!["e".into()],
        };
        assert_eq!(
            all.to_json(),
            r#"{"nats":["a"],"monitoring":["b"],"cluster":["c"],"profile":["d"],"websocket":["e"]}"#
        );
    }

    #[test]
    fn files_are_written_and_removed() {
        let dir = std::env::temp_dir().join(format!("rnats-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = Ports {
            nats: vec!["nats://127.0.0.1:4222".into()],
            ..Ports::default()
        };
        let path = write_ports_file(&dir, "rnats-server", 42, &ports).unwrap();
        assert_eq!(path, dir.join("rnats-server_42.ports"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ports.to_json());
        remove_ports_file(&path).unwrap();
        assert!(!path.exists());

        let pid_path = dir.join("server.pid");
        write_pid_file(&pid_path, 1234).unwrap();
        write_pid_file(&pid_path, 21005).unwrap();
        assert_eq!(std::fs::read_to_string(&pid_path).unwrap(), "21005");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_ports() {
        let specific: SocketAddr = "127.0.0.1:4222".parse().unwrap();
        assert_eq!(resolve_host_ports(specific), vec!["127.0.0.1:4222"]);
        let v6: SocketAddr = "[::1]:4222".parse().unwrap();
        assert_eq!(format_urls("nats", v6), vec!["nats://[::1]:4222"]);
        // Every machine has a loopback interface, and it comes first.
        let any: SocketAddr = "0.0.0.0:4222".parse().unwrap();
        let all = resolve_host_ports(any);
        assert_eq!(all.first().map(String::as_str), Some("127.0.0.1:4222"));
    }
}
