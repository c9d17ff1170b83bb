//! Cross-checks the Kubernetes API emulator with clients nobody here wrote: real `kubectl`
//! and kube-rs.

#[path = "support/kube_emulator/mod.rs"]
mod kube_emulator;

#[test]
fn placeholder_compiles() {
    let emulator = kube_emulator::KubeEmulator::start();
    assert!(emulator.endpoint().starts_with("https://127.0.0.1:"));
}
