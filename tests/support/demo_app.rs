//! The demo app (pipelines/demo/web) copied into a test project.

use super::scenario::Scenario;
use super::{Project, repo_root};

/// Copies the demo app into the project's `web/` folder.
pub fn copy_demo_app(project: &Project) {
    let app = repo_root().join("pipelines/demo/web");
    for file in ["Dockerfile", "serve.sh", "www/index.html", "www/health"] {
        project.file(
            &format!("web/{file}"),
            std::fs::read(app.join(file)).unwrap(),
        );
    }
}

/// The demo app as two docker targets of the scenario's pipeline: `web` (two replicas) and
/// `admin` (one), on ports the scenario holds.
pub fn two_target_project(scenario: &Scenario) -> Project {
    let project = Project::with_docker();
    copy_demo_app(&project);
    let (name, web, admin) = (scenario.name(), scenario.ports(4), scenario.ports(2));
    project.file(
        "shipit.yaml",
        format!(
            "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker: {{ replicas: 2, port: {web}, health: {{ http: {{ path: /health }}, interval: 500ms }} }}\n  admin:\n    image: web\n    docker: {{ replicas: 1, port: {admin}, health: {{ http: {{ path: /health }}, interval: 500ms }} }}\n"
        ),
    );
    project.commit();
    project
}
