//! Path confinement: the lexical rules on plain strings, then whole pipeline files in a
//! temporary checkout (symlinks included).

use std::path::Path;

use super::*;

fn escape(path: &str) -> Option<String> {
    lexical_escape(Path::new("/w/runs/1"), Path::new("/w/runs/1/app"), path)
}

#[test]
fn paths_inside_the_checkout_pass() {
    for path in [
        "web",
        "./web/Dockerfile",
        "../shared",
        "a/../b",
        "k8s/*.yaml",
        "..",
    ] {
        assert_eq!(escape(path), None, "{path}");
    }
}

#[test]
fn parent_steps_out_of_the_checkout_are_refused() {
    for path in [
        "../../outside",
        "../..",
        "a/../../../etc/passwd",
        "../../runs/2",
    ] {
        assert_eq!(
            escape(path).as_deref(),
            Some("leads out of the checkout with `..`"),
            "{path}"
        );
    }
}

#[test]
fn absolute_and_home_paths_are_refused() {
    for path in [
        "/etc/passwd",
        "~/.kube/config",
        "/w/runs/1/app/inside-but-absolute",
    ] {
        assert_eq!(escape(path).as_deref(), Some("is absolute"), "{path}");
    }
}

#[test]
fn expressions_are_refused_as_their_value_is_unknown_here() {
    assert!(escape("${{ vars.dir }}").unwrap().contains("expression"));
}

/// A temporary folder with a checkout in it and room beside it for "the host's" files.
struct Checkout {
    dir: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Self {
        let checkout = Checkout {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(checkout.root()).unwrap();
        checkout
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("checkout")
    }

    /// Writes `path` (relative to the temporary folder, so `checkout/…` or outside it).
    fn file(&self, path: &str) -> &Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "FROM scratch\n").unwrap();
        self
    }

    /// Makes `link` (in the checkout) a symlink to `target` (in the temporary folder).
    fn link(&self, link: &str, target: &str) -> &Self {
        let link = self.root().join(link);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(self.dir.path().join(target), link).unwrap();
        self
    }

    fn load(&self, yaml: &str) -> Pipeline {
        std::fs::write(self.root().join("shipit.yaml"), yaml).unwrap();
        crate::app::load_pipeline(&self.root().join("shipit.yaml"), None).unwrap()
    }
}

const EKS: &str = "version: 1
name: shop
images:
  web:
    context: web
    dockerfile: ../docker/web.Dockerfile
    secrets:
      npm: { file: secrets/npm }
    push: { registry: registry.example, repository: shop/web }
deploy:
  web:
    image: web
    eks:
      kubeconfig: kube/config
      container: web
      manifests: [k8s/*.yaml, extra.yaml]
";

fn eks_checkout() -> Checkout {
    let checkout = Checkout::new();
    for file in [
        "web/Dockerfile",
        "docker/web.Dockerfile",
        "secrets/npm",
        "kube/config",
        "k8s/a.yaml",
        "extra.yaml",
    ] {
        checkout.file(&format!("checkout/{file}"));
    }
    checkout
}

#[test]
fn every_path_the_file_names_is_listed_with_its_field_and_base() {
    let checkout = eks_checkout();
    let pipeline = checkout.load(EKS);
    let root = pipeline.base_dir.clone();
    let listed: Vec<(String, PathBuf, String, bool)> = named_paths(&pipeline)
        .into_iter()
        .map(|n| (n.field, n.base, n.path, n.glob))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "images.web.context".into(),
                root.clone(),
                "web".into(),
                false
            ),
            (
                "images.web.dockerfile".into(),
                root.join("web"),
                "../docker/web.Dockerfile".into(),
                false
            ),
            (
                "images.web.secrets.npm.file".into(),
                root.clone(),
                "secrets/npm".into(),
                false
            ),
            (
                "deploy.web.eks.kubeconfig".into(),
                root.clone(),
                "kube/config".into(),
                false
            ),
            (
                "deploy.web.eks.manifests[0]".into(),
                root.clone(),
                "k8s/*.yaml".into(),
                true
            ),
            (
                "deploy.web.eks.manifests[1]".into(),
                root.clone(),
                "extra.yaml".into(),
                true
            ),
        ]
    );
}

#[test]
fn a_pipeline_that_stays_inside_its_checkout_passes() {
    let checkout = eks_checkout();
    let pipeline = checkout.load(EKS);
    confine(&pipeline, &checkout.root()).unwrap();
}

#[test]
fn a_context_outside_the_checkout_is_refused_naming_the_field() {
    let checkout = Checkout::new();
    checkout.file("outside/Dockerfile");
    let pipeline =
        checkout.load("version: 1\nname: shop\nimages:\n  web:\n    context: ../outside\n");
    let err = confine(&pipeline, &checkout.root()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the pipeline file's images.web.context names `../outside`, which leads out of the checkout with `..`: a daemon run reads files from its checkout only"
    );
}

#[test]
fn a_symlinked_dockerfile_leading_out_is_refused() {
    let checkout = Checkout::new();
    checkout
        .file("host-secret")
        .link("web/Dockerfile", "host-secret");
    let pipeline = checkout.load("version: 1\nname: shop\nimages:\n  web:\n    context: web\n");
    let err = confine(&pipeline, &checkout.root()).unwrap_err();
    assert_eq!(err.field, "images.web.dockerfile");
    assert_eq!(err.reason, "is a symlink leading out of the checkout");
}

#[test]
fn a_symlinked_context_folder_leading_out_is_refused() {
    let checkout = Checkout::new();
    checkout.file("host/Dockerfile").link("web", "host");
    let pipeline = checkout.load("version: 1\nname: shop\nimages:\n  web:\n    context: web\n");
    let err = confine(&pipeline, &checkout.root()).unwrap_err();
    assert_eq!(err.field, "images.web.context");
}

#[test]
fn a_manifest_glob_matching_a_symlink_out_is_refused() {
    let checkout = eks_checkout();
    checkout
        .file("passwd.yaml")
        .link("k8s/b.yaml", "passwd.yaml");
    let pipeline = checkout.load(EKS);
    let err = confine(&pipeline, &checkout.root()).unwrap_err();
    assert_eq!(err.field, "deploy.web.eks.manifests[0]");
}
