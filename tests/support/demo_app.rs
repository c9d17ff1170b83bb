//! The demo app (pipelines/demo/web) copied into a test project.

use super::{Project, free_ports, repo_root};

/// The demo app as two docker targets of one pipeline: `web` (two replicas) and `admin`.
pub fn two_target_project(name: &str) -> Project {
    let project = Project::with_docker();
    let app = repo_root().join("pipelines/demo/web");
    for file in ["Dockerfile", "serve.sh", "www/index.html", "www/health"] {
        project.file(
            &format!("web/{file}"),
            std::fs::read(app.join(file)).unwrap(),
        );
    }
    let (web, admin) = (free_ports(4), free_ports(2));
    project.file(
        "shipit.yaml",
        format!(
            "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker: {{ replicas: 2, port: {web}, health: {{ http: {{ path: /health }}, interval: 500ms }} }}\n  admin:\n    image: web\n    docker: {{ replicas: 1, port: {admin}, health: {{ http: {{ path: /health }}, interval: 500ms }} }}\n"
        ),
    );
    project.commit();
    project
}
