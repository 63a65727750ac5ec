//! One app's backends at one service port: where each live task is reached,
//! and whether it may take new work.

use crate::error::RenderError;
use crate::state::{App, Networking, PortSpec, Task, TaskPhase};
use schemas::{Backend, Endpoint, Health};

/// The running and draining tasks of `app` at `spec`.
pub fn backends(app: &App, spec: &PortSpec, errors: &mut Vec<RenderError>) -> Vec<Backend> {
    let mut out = Vec::new();
    for task in &app.tasks {
        let health = match task.phase {
            TaskPhase::Running if task.healthy => Health::Healthy,
            TaskPhase::Running => Health::Unhealthy,
            TaskPhase::Killing => Health::Draining,
            TaskPhase::NotRunning => continue,
        };
        match address(app.networking, spec, task) {
            Ok(address) => out.push(Backend {
                address,
                task: task.id.clone(),
                weight: 1,
                health,
            }),
            Err(why) => errors.push(RenderError::TaskWithoutAddress {
                app: app.id.to_string(),
                task: task.id.to_string(),
                port: spec.service_port.0,
                why,
            }),
        }
    }
    out
}

fn address(networking: Networking, spec: &PortSpec, task: &Task) -> Result<Endpoint, &'static str> {
    if networking == Networking::Container {
        // Prefer IPv4, as Marathon lists it first when a task has both.
        let ip = task
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(task.addresses.first())
            .ok_or("the task has no ipAddresses yet")?;
        let port = spec
            .container_port
            .ok_or("the port mapping has no containerPort")?;
        return Ok(Endpoint {
            host: ip.to_string(),
            port,
        });
    }
    let port = task
        .ports
        .get(spec.index)
        .copied()
        .filter(|p| *p != 0)
        .ok_or("the task has no host port at this index")?;
    if task.host.is_empty() {
        return Err("the task has no host");
    }
    Ok(Endpoint {
        host: task.host.clone(),
        port,
    })
}
