//! The stage graph: which stages a pipeline has and what each one needs first.

use std::collections::{BTreeMap, BTreeSet};

use crate::pipeline::interpolate::references_in;
use crate::pipeline::{DocPath, Pipeline};

use super::stage_id::{StageId, StageKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageNode {
    pub id: StageId,
    pub needs: Vec<StageId>,
}

/// Stages in an order where every stage comes after the ones it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageGraph {
    pub stages: Vec<StageNode>,
}

impl StageGraph {
    pub fn from_pipeline(pipeline: &Pipeline) -> StageGraph {
        let file = &pipeline.file;
        let last_stage_of = |image: &str| match file.images.get(image).and_then(|i| i.push.as_ref())
        {
            Some(_) => StageId::push(image),
            None => StageId::build(image),
        };
        let mut nodes = Vec::new();
        for (name, image) in &file.images {
            nodes.push(StageNode {
                id: StageId::build(name),
                needs: vec![],
            });
            if image.push.is_some() {
                nodes.push(StageNode {
                    id: StageId::push(name),
                    needs: vec![StageId::build(name)],
                });
            }
        }
        for (name, target) in &file.deploy {
            let mut needs: BTreeSet<StageId> = BTreeSet::new();
            needs.extend(target.images().into_iter().map(last_stage_of));
            needs.extend(target.needs.iter().map(|n| StageId::deploy(n)));
            // `${{ images.X.digest }}` anywhere in the target makes it wait for image X.
            if let Some(raw) = pipeline.raw(&DocPath::root().key("deploy").key(name.clone())) {
                let mut found = Vec::new();
                references_in(raw, &DocPath::root(), &mut found);
                for reference in found.into_iter().filter_map(|(_, r)| r.ok()) {
                    if reference.namespace() == "images"
                        && file.images.contains_key(&reference.parts[1])
                    {
                        needs.insert(last_stage_of(&reference.parts[1]));
                    }
                }
            }
            nodes.push(StageNode {
                id: StageId::deploy(name),
                needs: needs.into_iter().collect(),
            });
        }
        StageGraph {
            stages: topological_order(nodes),
        }
    }

    /// The graph of `shipit down`: one `down:<target>` stage per target, none needing another.
    pub fn for_take_down(targets: &[String]) -> StageGraph {
        StageGraph {
            stages: targets
                .iter()
                .map(|name| StageNode {
                    id: StageId::down(name),
                    needs: vec![],
                })
                .collect(),
        }
    }

    /// The graph of `shipit rollback`: one `rollback:<target>` stage, needing the earlier
    /// `deploy:<target>` it returns to. That deploy is not a stage of this graph: the rollback
    /// run's record holds it, reused from the earlier run.
    pub fn for_rollback(target: &str) -> StageGraph {
        StageGraph {
            stages: vec![StageNode {
                id: StageId::rollback(target),
                needs: vec![StageId::deploy(target)],
            }],
        }
    }

    pub fn get(&self, id: &StageId) -> Option<&StageNode> {
        self.stages.iter().find(|s| &s.id == id)
    }

    pub fn contains(&self, id: &StageId) -> bool {
        self.get(id).is_some()
    }

    /// Every stage that (transitively) needs `id`.
    pub fn downstream_of(&self, id: &StageId) -> BTreeSet<StageId> {
        let mut found: BTreeSet<StageId> = BTreeSet::new();
        // Stages are in topological order, so one pass in order finds every descendant.
        for stage in &self.stages {
            if stage.needs.iter().any(|n| n == id || found.contains(n)) {
                found.insert(stage.id.clone());
            }
        }
        found
    }

    /// Every stage `id` (transitively) needs.
    pub fn upstream_of(&self, id: &StageId) -> BTreeSet<StageId> {
        let mut found = BTreeSet::new();
        let mut pending = vec![id.clone()];
        while let Some(current) = pending.pop() {
            for need in self
                .get(&current)
                .map(|s| s.needs.clone())
                .unwrap_or_default()
            {
                if found.insert(need.clone()) {
                    pending.push(need);
                }
            }
        }
        found
    }
}

/// Kahn's algorithm with a deterministic tie-break (kind, then name). Validation has already
/// refused cycles, so every node is emitted; a node in a cycle would be left out rather than loop.
fn topological_order(nodes: Vec<StageNode>) -> Vec<StageNode> {
    let mut remaining: BTreeMap<(StageKind, String), StageNode> = nodes
        .into_iter()
        .map(|n| ((n.id.kind, n.id.name.clone()), n))
        .collect();
    let mut done: BTreeSet<StageId> = BTreeSet::new();
    let mut ordered = Vec::new();
    loop {
        let ready = remaining
            .iter()
            .find(|(_, node)| node.needs.iter().all(|n| done.contains(n)))
            .map(|(key, _)| key.clone());
        let Some(key) = ready else { break };
        let node = remaining.remove(&key).expect("key was just found");
        done.insert(node.id.clone());
        ordered.push(node);
    }
    ordered
}
