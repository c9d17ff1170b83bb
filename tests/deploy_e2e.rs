//! The docker deploy target end to end, through the real binary and the test environment's
//! daemon: a healthy deploy, a failing one rolled back (exit 3), one that never becomes healthy
//! before its deadline (exit 4), and one killed mid-deploy and resumed without orphans.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::demo_app::copy_demo_app;
use support::scenario::Scenario;
use support::{Project, http_get, stage};

/// A project holding a copy of the demo app, deployed as the scenario's pipeline on four of its
/// ports; `extra` ends the target's `docker:` block.
fn demo_project(scenario: &Scenario, extra: &str) -> Project {
    let name = scenario.name();
    let port = scenario.ports(4);
    let project = Project::with_docker();
    copy_demo_app(&project);
    project.file(
        "shipit.yaml",
        format!(
            "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker:\n      replicas: 2\n      port: {port}\n      env: {{ GREETING: first }}\n      health:\n        http: {{ path: /health, expect_status: 200 }}\n        interval: 500ms\n        retries: 3\n        start_period: 1s\n{extra}"
        ),
    );
    project.commit();
    project
}

/// The ports of the replicas stage `id` (`deploy:web`, `rollback:web`) started.
fn deployed_ports(result: &serde_json::Value, id: &str) -> Vec<u16> {
    let deploy = stage(result, id);
    deploy["outputs"]["containers"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_u64().map(|p| p as u16))
        .collect()
}

#[test]
fn a_healthy_deploy_serves_from_every_replica_and_the_next_one_replaces_it() {
    let scenario = Scenario::new("e2e-deploy");
    let project = demo_project(&scenario, "");
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let first = run.json();
    let ports = deployed_ports(&first, "deploy:web");
    assert_eq!(ports.len(), 2, "{first}");
    for port in &ports {
        assert_eq!(
            http_get(*port, "/greeting.txt").as_deref(),
            Some("first\n"),
            "replica on {port}"
        );
    }

    project
        .file("web/www/index.html", "<h1>second version</h1>\n")
        .commit();
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let second = run.json();
    let new_ports = deployed_ports(&second, "deploy:web");
    for port in &new_ports {
        assert_eq!(
            http_get(*port, "/").as_deref(),
            Some("<h1>second version</h1>\n")
        );
    }
    let deploy = stage(&second, "deploy:web").clone();
    assert_eq!(
        deploy["outputs"]["replaced"].as_array().unwrap().len(),
        2,
        "the previous replicas were removed: {deploy}"
    );
    assert_eq!(
        scenario.containers(None).len(),
        2,
        "only the new version's containers remain: {:?}",
        scenario.containers(None)
    );
}

#[test]
fn a_deploy_whose_health_check_fails_is_rolled_back_and_exits_3() {
    let scenario = Scenario::new("e2e-rollback");
    let project = demo_project(&scenario, "");
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let old_ports = deployed_ports(&run.json(), "deploy:web");

    // The new version has no /health: the probe gets 404, never 200.
    std::fs::remove_file(project.path().join("web/www/health")).unwrap();
    project.commit();
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("rolled back"), "{run:?}");
    assert!(
        run.stderr.contains("the previous version still runs"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("demo web listening"),
        "the container's last log lines are shown: {run:?}"
    );
    let result = run.json();
    assert_eq!(result["status"], "rolled_back");
    assert_eq!(result["exit_code"], 3);
    for port in old_ports {
        assert!(
            http_get(port, "/health").is_some(),
            "the previous replica on {port} still serves"
        );
    }
    assert_eq!(
        scenario.containers(None).len(),
        2,
        "the new containers are gone: {:?}",
        scenario.containers(None)
    );
}

#[test]
fn a_deploy_not_healthy_before_its_deadline_exits_4() {
    let scenario = Scenario::new("e2e-deadline");
    let project = demo_project(&scenario, "      timeout: 3s\n");
    // Never healthy, but never out of retries either: only the deadline ends the wait.
    std::fs::remove_file(project.path().join("web/www/health")).unwrap();
    let text = std::fs::read_to_string(project.path().join("shipit.yaml"))
        .unwrap()
        .replace("retries: 3", "retries: 1000");
    project.file("shipit.yaml", text).commit();
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.json()["status"], "timed_out");
    assert!(
        scenario.containers(None).is_empty(),
        "nothing is left running: {:?}",
        scenario.containers(None)
    );
}

/// An HTTP endpoint on 127.0.0.1 that answers 503 until the test opens it, and 200 after: an
/// app that waits on it before it listens is ready when the test says so, not after a guess.
struct StartGate {
    port: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl StartGate {
    fn new() -> StartGate {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the gate");
        let port = listener.local_addr().expect("gate address").port();
        let open = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (open, stop) = (Arc::clone(&open), Arc::clone(&stop));
            std::thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request);
                    let status = if open.load(Ordering::SeqCst) {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.0 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            })
        };
        StartGate {
            port,
            open,
            stop,
            server: Some(server),
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for StartGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the server out of accept so that it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

#[test]
fn a_deploy_killed_mid_way_is_finished_by_resume_without_orphans() {
    let scenario = Scenario::new("e2e-resume");
    let gate = StartGate::new();
    let project = demo_project(&scenario, "      timeout: 2m\n");
    // The app starts listening only once the gate opens, and until then the health gate's
    // start period (90 s, within the 2 min deadline) keeps the failed probes from counting:
    // shipit is still waiting on its gate when it is killed, however slow the machine.
    let dockerfile = std::fs::read_to_string(project.path().join("web/Dockerfile")).unwrap();
    let gated = dockerfile.replace(
        "CMD [\"sh\", \"/serve.sh\"]",
        "CMD [\"sh\", \"-c\", \"until wget -q -O /dev/null http://127.0.0.1:$START_GATE/; do sleep 0.2; done; exec sh /serve.sh\"]",
    );
    assert_ne!(
        gated, dockerfile,
        "the demo Dockerfile's CMD changed; update this test"
    );
    project.file("web/Dockerfile", gated);
    let pipeline = std::fs::read_to_string(project.path().join("shipit.yaml")).unwrap();
    let gated = pipeline
        .replace(
            "env: { GREETING: first }",
            &format!("env: {{ GREETING: first, START_GATE: \"{}\" }}", gate.port),
        )
        .replace("start_period: 1s", "start_period: 90s");
    assert_ne!(
        gated, pipeline,
        "demo_project's pipeline changed; update this test"
    );
    project.file("shipit.yaml", gated).commit();

    let mut child = project
        .command(&["run", "--no-progress"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    project.wait_for(
        "deploy:web to start its containers",
        Duration::from_secs(120),
        |p| {
            p.latest_stage("deploy:web")
                .is_some_and(|s| s["status"] == "running" && s["outputs"]["started"] == true)
                && scenario.containers(None).len() == 2
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    gate.open();

    let resumed = project.shipit(&["resume", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let result = resumed.json();
    assert_eq!(result["status"], "succeeded");
    let deploy = stage(&result, "deploy:web").clone();
    assert_eq!(deploy["attempts"], 2, "{deploy}");
    assert_eq!(deploy["outputs"]["containers"].as_array().unwrap().len(), 2);
    assert_eq!(
        scenario.containers(None).len(),
        2,
        "no orphans: {:?}",
        scenario.containers(None)
    );
    for port in deployed_ports(&result, "deploy:web") {
        assert!(
            http_get(port, "/health").is_some(),
            "replica on {port} serves"
        );
    }
}

#[test]
fn rollback_returns_the_target_to_the_version_deployed_before_the_live_one() {
    let scenario = Scenario::new("e2e-rollback-cmd");
    let project = demo_project(&scenario, "");
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let first_run = run.json()["run_id"].as_str().unwrap().to_owned();
    project
        .file("web/www/index.html", "<h1>second version</h1>\n")
        .commit();
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");

    let run = project.shipit(&["rollback", "deploy:web", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let rollback = stage(&result, "rollback:web");
    assert_eq!(rollback["status"], "succeeded", "{result}");
    let returned_to = stage(&result, "deploy:web");
    assert_eq!(returned_to["reused_from"], first_run.as_str(), "{result}");
    let ports = deployed_ports(&result, "rollback:web");
    assert_eq!(ports.len(), 2, "{result}");
    for port in ports {
        let page = http_get(port, "/").unwrap_or_default();
        assert!(
            !page.contains("second version"),
            "the replica on {port} serves the first version again: {page}"
        );
    }
    assert_eq!(
        scenario.containers(None).len(),
        2,
        "the second version is gone"
    );

    // The first version is the oldest deploy: there is nothing before it.
    let run = project.shipit(&["rollback", "web"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no earlier version"), "{run:?}");
}
