//! Ports for servers a test cannot hand a listener to: a deployed container binds its own port,
//! so a port picked by binding and dropping a listener is free only until another test picks it
//! too. A lease takes a lock file per port, which every test process on this machine honours,
//! and holds it until the test is over; binding is still tried, for programs that are not tests.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use rand::Rng;

/// Consecutive ports `base..base + count` on 127.0.0.1, reserved until dropped.
pub struct PortLease {
    pub base: u16,
    _locks: Vec<File>,
}

/// Below the kernel's ephemeral range (32768 and up), where servers that bind port 0 — the
/// test environment's registries and moto among them — get theirs.
const RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Leases `count` consecutive ports nothing else on this machine uses or has leased.
pub fn lease_ports(count: u16) -> PortLease {
    let dir = lock_dir();
    let mut rng = rand::rng();
    for _ in 0..500 {
        let base = rng.random_range(RANGE.start..RANGE.end - count);
        let mut locks = Vec::with_capacity(usize::from(count));
        let all_free = (base..base + count).all(|port| match lock(&dir, port) {
            Some(file) => {
                locks.push(file);
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            }
            None => false,
        });
        if all_free {
            return PortLease {
                base,
                _locks: locks,
            };
        }
    }
    panic!("failed to lease {count} consecutive free ports on 127.0.0.1");
}

/// Shared by every test process of every checkout on this machine.
fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("shipit-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("failed to create {}: {error}", dir.display()));
    dir
}

/// The port's lock, if no one holds it. The lock goes with the file when it is closed, also
/// when a test process dies.
fn lock(dir: &std::path::Path, port: u16) -> Option<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .ok()?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => Some(file),
        _ => None,
    }
}
