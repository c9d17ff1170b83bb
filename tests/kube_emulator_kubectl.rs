//! Cross-checks the Kubernetes API emulator with clients nobody here wrote: real `kubectl`
//! (server-side apply and its conflicts, get, rollout status/undo, diff) and kube-rs (a list
//! and a watcher following a rollout).

#[path = "support/kube_emulator/mod.rs"]
mod kube_emulator;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube_emulator::{KubeEmulator, PodScenario, Timing};

const KUBECTL: &str = "/usr/bin/kubectl";
const TOKEN: &str = "k8s-aws-v1.emulator-test-token";

fn kubectl_present() {
    assert!(
        Path::new(KUBECTL).exists(),
        "{KUBECTL} is missing: install kubectl v1.32 (see scripts/README) to run this cross-check"
    );
}

struct Cluster {
    emulator: KubeEmulator,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn cluster(timing: Timing) -> Cluster {
    kubectl_present();
    let emulator = KubeEmulator::start_with(timing);
    emulator.require_token(|token| token == TOKEN);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    emulator
        .write_kubeconfig(&kubeconfig, "emulator", TOKEN)
        .expect("the kubeconfig is written");
    Cluster {
        emulator,
        dir,
        kubeconfig,
    }
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    fn manifest(&self, name: &str, image: &str, progress_deadline: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!(
            r#"{{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": "shop"}}}}
---
{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "web", "namespace": "shop"}},
    "spec": {{"replicas": 3, "progressDeadlineSeconds": {progress_deadline},
      "selector": {{"matchLabels": {{"app": "web"}}}},
      "template": {{"metadata": {{"labels": {{"app": "web"}}}},
        "spec": {{"containers": [{{"name": "web", "image": "{image}", "ports": [{{"containerPort": 8080}}]}}]}}}}}}}}
---
{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web", "namespace": "shop"}},
    "spec": {{"selector": {{"app": "web"}}, "ports": [{{"port": 80, "targetPort": 8080}}]}}}}
"#
        );
        std::fs::write(&path, text).expect("the manifest is written");
        path
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fast() -> Timing {
    Timing {
        step: std::time::Duration::from_millis(50),
        seconds_per_step: 6,
    }
}

#[test]
fn kubectl_applies_rolls_out_diffs_and_undoes() {
    let cluster = cluster(fast());
    let v1 = cluster.manifest("v1.json", "registry.example/web:1", 600);
    let applied = cluster.kubectl(&["apply", "--server-side", "-f", v1.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        String::from_utf8_lossy(&applied.stdout).contains("deployment.apps/web serverside-applied"),
        "{}",
        text(&applied)
    );

    let status = cluster.kubectl(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=20s",
    ]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("successfully rolled out"),
        "{}",
        text(&status)
    );

    let got = cluster.kubectl(&["-n", "shop", "get", "deploy,rs,po", "-o", "json"]);
    assert!(got.status.success(), "{}", text(&got));
    let list: serde_json::Value = serde_json::from_slice(&got.stdout).expect("kubectl prints JSON");
    let items = list["items"].as_array().expect("a list");
    let kinds = |kind: &str| items.iter().filter(|i| i["kind"] == kind).count();
    assert_eq!(
        (kinds("Deployment"), kinds("ReplicaSet"), kinds("Pod")),
        (1, 1, 3),
        "{list:#}"
    );
    let deployment = items.iter().find(|i| i["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["status"]["updatedReplicas"], 3);
    assert_eq!(deployment["status"]["availableReplicas"], 3);
    let rs = items.iter().find(|i| i["kind"] == "ReplicaSet").unwrap();
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert!(cluster.emulator.completed_at("shop", "web", 1).is_some());

    // Another manager setting the image conflicts, unless it forces.
    let other = cluster.manifest("other.json", "registry.example/web:other", 600);
    let conflict = cluster.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        other.to_str().unwrap(),
    ]);
    assert_eq!(conflict.status.code(), Some(1), "{}", text(&conflict));
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        stderr.contains(
            r#"conflict with "kubectl": .spec.template.spec.containers[name="web"].image"#
        ),
        "{}",
        text(&conflict)
    );

    // diff: unchanged exits 0, a changed image exits 1 with the change.
    let same = cluster.kubectl(&["diff", "--server-side", "-f", v1.to_str().unwrap()]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let v2 = cluster.manifest("v2.json", "registry.example/web:2", 600);
    let changed = cluster.kubectl(&["diff", "--server-side", "-f", v2.to_str().unwrap()]);
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed));
    assert!(
        String::from_utf8_lossy(&changed.stdout).contains("+      - image: registry.example/web:2"),
        "{}",
        text(&changed)
    );

    let forced = cluster.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        other.to_str().unwrap(),
    ]);
    assert!(forced.status.success(), "{}", text(&forced));
    let status = cluster.kubectl(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=20s",
    ]);
    assert!(status.status.success(), "{}", text(&status));

    // Undo brings the first template back under a new revision.
    let undo = cluster.kubectl(&["-n", "shop", "rollout", "undo", "deploy/web"]);
    assert!(undo.status.success(), "{}", text(&undo));
    let status = cluster.kubectl(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=20s",
    ]);
    assert!(status.status.success(), "{}", text(&status));
    let deployment = cluster
        .emulator
        .object("apps/v1", "Deployment", "shop", "web")
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/web:1"
    );
    let first = cluster
        .emulator
        .object("apps/v1", "ReplicaSet", "shop", &format!("web-{hash}"))
        .unwrap();
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert!(
        cluster
            .emulator
            .requests()
            .iter()
            .all(|r| r.token.as_deref() == Some(TOKEN))
    );
}

#[test]
fn kubectl_rollout_status_fails_past_the_progress_deadline() {
    let cluster = cluster(fast());
    cluster
        .emulator
        .set_scenario("shop", "web", PodScenario::NeverReady);
    let manifest = cluster.manifest("v1.json", "registry.example/web:1", 12);
    let applied = cluster.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied));
    let status = cluster.kubectl(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=20s",
    ]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("exceeded its progress deadline"),
        "{}",
        text(&status)
    );
}

#[test]
fn a_wrong_token_is_refused() {
    let cluster = cluster(fast());
    cluster
        .emulator
        .write_kubeconfig(&cluster.kubeconfig, "emulator", "not-the-token")
        .unwrap();
    let got = cluster.kubectl(&["get", "ns"]);
    assert_eq!(got.status.code(), Some(1), "{}", text(&got));
    assert!(
        String::from_utf8_lossy(&got.stderr).contains("provide credentials"),
        "{}",
        text(&got)
    );
}

#[tokio::test]
async fn kube_rs_lists_and_watches_a_rollout() {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::runtime::watcher;

    // kube-rs takes the process-wide rustls provider; shipit builds rustls with ring only.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = cluster(fast());
    cluster.emulator.seed(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("the kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client config");
    let client = kube::Client::try_from(config).expect("a client");
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client, "shop");
    let mut events = watcher(deployments.clone(), watcher::Config::default()).boxed();

    let manifest = cluster.manifest("v1.json", "registry.example/web:1", 600);
    let applied = tokio::task::spawn_blocking({
        let kubeconfig = cluster.kubeconfig.clone();
        move || {
            Command::new(KUBECTL)
                .env("KUBECONFIG", kubeconfig)
                .args(["apply", "--server-side", "-f", manifest.to_str().unwrap()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(applied.status.success(), "{}", text(&applied));

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut available_seen = false;
    while !available_seen {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the watcher sees the rollout complete in time")
            .expect("the watch goes on")
            .expect("no watch error");
        if let watcher::Event::Apply(deployment) = event {
            available_seen = deployment.status.and_then(|s| s.available_replicas) == Some(3);
        }
    }
    let listed = deployments
        .list(&Default::default())
        .await
        .expect("kube-rs lists");
    assert_eq!(listed.items.len(), 1);
    assert!(
        cluster
            .emulator
            .count("GET", "/apis/apps/v1/namespaces/shop/deployments")
            >= 2
    );
}

/// A Job manifest whose pod runs `check`; `backoffLimit: 0`, so one failed pod fails it.
fn job_manifest(cluster: &Cluster, name: &str) -> PathBuf {
    let path = cluster.dir.path().join(format!("{name}.json"));
    let text = format!(
        r#"{{"apiVersion": "batch/v1", "kind": "Job", "metadata": {{"name": "{name}", "namespace": "shop"}},
    "spec": {{"backoffLimit": 0, "template": {{"spec": {{"restartPolicy": "Never",
      "containers": [{{"name": "check", "image": "registry.example/curl:8", "args": ["http://web-preview/health"]}}]}}}}}}}}"#
    );
    std::fs::write(&path, text).expect("the job manifest is written");
    path
}

#[test]
fn kubectl_waits_for_jobs_to_complete_or_fail_and_lists_them() {
    let cluster = cluster(fast());
    cluster.emulator.seed(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    cluster.emulator.set_scenario(
        "shop",
        "smoke-bad",
        PodScenario::job_fails(7, &["GET /health: 500"]),
    );
    for name in ["smoke-ok", "smoke-bad"] {
        let manifest = job_manifest(&cluster, name);
        let applied =
            cluster.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
        assert!(applied.status.success(), "{}", text(&applied));
        assert!(
            String::from_utf8_lossy(&applied.stdout).contains(&format!("job.batch/{name}")),
            "{}",
            text(&applied)
        );
    }
    let complete = cluster.kubectl(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=complete",
        "job/smoke-ok",
        "--timeout=20s",
    ]);
    assert!(complete.status.success(), "{}", text(&complete));
    let failed = cluster.kubectl(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=failed",
        "job/smoke-bad",
        "--timeout=20s",
    ]);
    assert!(failed.status.success(), "{}", text(&failed));

    let got = cluster.kubectl(&["-n", "shop", "get", "jobs", "-o", "json"]);
    assert!(got.status.success(), "{}", text(&got));
    let list: serde_json::Value = serde_json::from_slice(&got.stdout).expect("kubectl prints JSON");
    let jobs = list["items"].as_array().expect("a list");
    let status_of = |name: &str| {
        jobs.iter()
            .find(|job| job["metadata"]["name"] == name)
            .map(|job| job["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(status_of("smoke-ok")["succeeded"], 1, "{list:#}");
    assert_eq!(status_of("smoke-bad")["failed"], 1, "{list:#}");

    // The failed pod is the Job's, by the label the Job controller sets, with its exit code
    // and its logs.
    let pods = cluster.kubectl(&[
        "-n",
        "shop",
        "get",
        "pods",
        "-l",
        "job-name=smoke-bad",
        "-o",
        "jsonpath={.items[0].metadata.name} {.items[0].status.phase} {.items[0].status.containerStatuses[0].state.terminated.exitCode}",
    ]);
    assert!(pods.status.success(), "{}", text(&pods));
    let line = String::from_utf8_lossy(&pods.stdout).to_string();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[1..], ["Failed", "7"], "{}", text(&pods));
    let logs = cluster.kubectl(&["-n", "shop", "logs", fields[0]]);
    assert!(logs.status.success(), "{}", text(&logs));
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "GET /health: 500\n");

    // Deleting the Job takes its pods with it.
    let deleted = cluster.kubectl(&["-n", "shop", "delete", "job", "smoke-bad"]);
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert!(
        cluster
            .emulator
            .pods("shop", "job-name=smoke-bad")
            .is_empty()
    );
}

#[test]
fn kubectl_reaches_the_service_proxy_and_sees_a_switched_selector() {
    let cluster = cluster(fast());
    // Pods ready after 2s: long enough for kubectl to ask before.
    cluster
        .emulator
        .set_scenario("shop", "web", PodScenario::Slow { steps_per_pod: 40 });
    let manifest = cluster.manifest("v1.json", "registry.example/web:1", 600);
    // Before any pod is ready the API server has no endpoint to proxy to.
    let applied = cluster.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied));
    let early = cluster.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/shop/services/web:80/proxy/health",
    ]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("no endpoints available for service"),
        "{}",
        text(&early)
    );
    let status = cluster.kubectl(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=20s",
    ]);
    assert!(status.status.success(), "{}", text(&status));
    let ok = cluster.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/shop/services/web:80/proxy/health",
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok\n");
    cluster
        .emulator
        .set_proxy_answer("shop", "web", 500, "database unreachable");
    let failing = cluster.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/shop/services/web:80/proxy/health",
    ]);
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing));
    let missing = cluster.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/shop/services/nope:80/proxy/",
    ]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        text(&missing)
    );

    // A server-side apply of the selector, as a blue/green switch does it, is what kubectl reads.
    let switched = cluster.dir.path().join("switch.json");
    std::fs::write(
        &switched,
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"selector": {"app": "web", "shipit.dev/slot": "green"}, "ports": [{"port": 80, "targetPort": 8080}]}}"#,
    )
    .unwrap();
    let applied = cluster.kubectl(&["apply", "--server-side", "-f", switched.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied));
    let selector = cluster.kubectl(&[
        "-n",
        "shop",
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.selector.shipit\\.dev/slot}",
    ]);
    assert!(selector.status.success(), "{}", text(&selector));
    assert_eq!(String::from_utf8_lossy(&selector.stdout), "green");
    // No pod carries the slot label: the Service has no endpoint any more.
    let none = cluster.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/shop/services/web:80/proxy/health",
    ]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
}

fn workload_manifest(cluster: &Cluster, kind: &str, name: &str, image: &str) -> PathBuf {
    let path = cluster.dir.path().join(format!("{kind}-{name}.json"));
    let replicas = if kind == "StatefulSet" {
        r#""replicas": 2, "serviceName": "db","#
    } else {
        ""
    };
    let text = format!(
        r#"{{"apiVersion": "apps/v1", "kind": "{kind}", "metadata": {{"name": "{name}", "namespace": "shop"}},
    "spec": {{{replicas} "selector": {{"matchLabels": {{"app": "{name}"}}}},
      "template": {{"metadata": {{"labels": {{"app": "{name}"}}}},
        "spec": {{"containers": [{{"name": "{name}", "image": "{image}"}}]}}}}}}}}"#
    );
    std::fs::write(&path, text).expect("the manifest is written");
    path
}

#[test]
fn kubectl_rolls_stateful_and_daemon_sets_out_and_undoes_them_by_controller_revision() {
    let cluster = cluster(fast());
    cluster.emulator.seed(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    for (kind, name, short) in [
        ("StatefulSet", "db", "sts/db"),
        ("DaemonSet", "agent", "ds/agent"),
    ] {
        for image in ["registry.example/x:1", "registry.example/x:2"] {
            let manifest = workload_manifest(&cluster, kind, name, image);
            let applied =
                cluster.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
            assert!(applied.status.success(), "{}", text(&applied));
            let status =
                cluster.kubectl(&["-n", "shop", "rollout", "status", short, "--timeout=20s"]);
            assert!(status.status.success(), "{}", text(&status));
        }
        let history = cluster.kubectl(&["-n", "shop", "rollout", "history", short]);
        assert!(history.status.success(), "{}", text(&history));
        let listed = String::from_utf8_lossy(&history.stdout).to_string();
        assert!(
            listed.lines().any(|l| l.starts_with("1 "))
                && listed.lines().any(|l| l.starts_with("2 ")),
            "{}",
            text(&history)
        );
        let undo = cluster.kubectl(&["-n", "shop", "rollout", "undo", short]);
        assert!(undo.status.success(), "{}", text(&undo));
        let status = cluster.kubectl(&["-n", "shop", "rollout", "status", short, "--timeout=20s"]);
        assert!(status.status.success(), "{}", text(&status));
        let object = cluster
            .emulator
            .object("apps/v1", kind, "shop", name)
            .unwrap();
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/x:1",
            "{kind}"
        );
        let images: Vec<String> = cluster
            .emulator
            .pods("shop", &format!("app={name}"))
            .iter()
            .map(|pod| {
                pod["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert!(
            !images.is_empty() && images.iter().all(|i| i == "registry.example/x:1"),
            "{kind}: {images:?}"
        );
    }
}
