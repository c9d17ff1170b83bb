//! One step of the cluster: the kubelet moves every pod along its scenario, the ReplicaSet
//! controller matches pods to replicas, the Deployment controller rolls out, and the
//! ReplicaSet controller runs again so a scale-up's pods appear in the same step. The Job
//! controller follows the kubelet, so a pod that just ended ends its Job in the same step.

use super::world::World;

pub fn tick(world: &mut World) {
    world.steps += 1;
    super::kubelet::step(world);
    super::job_controller::sync(world);
    super::replica_set_controller::sync(world);
    super::deployment_controller::sync(world);
    super::stateful_set_controller::sync(world);
    super::daemon_set_controller::sync(world);
    super::replica_set_controller::sync(world);
}
