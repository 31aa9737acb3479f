//! `strata admin generation ...`: turns an operator's generation action into a Raft command and says, in
//! words, what happened and what to do next. Refusals come from `meta::generations` and name the reason.

use strata_proto::{ErrorCode, GenerationOp, NodeState, WireError};

use crate::context::NodeContext;
use crate::meta::authority::Origin;
use crate::meta::command::{GenerationStep, MetaCommand, MetaResponse};

/// Carries out one generation action; returns the message for the operator.
pub async fn handle(ctx: &NodeContext, origin: Origin, op: GenerationOp) -> Result<String, WireError> {
    let (cmd, name) = match &op {
        GenerationOp::Add { name, profile } => (MetaCommand::AddGeneration { name: name.clone(), profile: *profile }, name.clone()),
        GenerationOp::Drain { name } => step(name, GenerationStep::Drain),
        GenerationOp::Pause { name } => step(name, GenerationStep::Pause),
        GenerationOp::Resume { name } => step(name, GenerationStep::Resume),
        GenerationOp::Cancel { name } => step(name, GenerationStep::Cancel),
        GenerationOp::Drop { name, force } => step(name, GenerationStep::Drop { force: *force }),
        GenerationOp::SetRate { bytes_per_sec } => {
            let cmd = MetaCommand::SetMigrationRate { bytes_per_sec: Some(*bytes_per_sec) };
            (cmd, String::new())
        }
    };
    match ctx.meta.write_as(origin, cmd).await.map_err(|e| e.to_wire())? {
        MetaResponse::Ok | MetaResponse::Epoch(_) => {}
        other => return Err(WireError::new(ErrorCode::Internal, format!("unexpected result {other:?}"))),
    }
    let map = ctx.meta.reader.map();
    let generation = map.generation_by_name(&name);
    let counts = generation.map(|g| map.generation_partitions(g.id)).unwrap_or_default();
    Ok(match op {
        GenerationOp::Add { name, profile } => {
            format!("added generation {name} ({profile}); start its nodes with `strata-node join --generation {name}`")
        }
        GenerationOp::Drain { name } => format!(
            "draining {name}: {} partitions will move off it; follow with `strata admin generation list`",
            counts.placed + counts.moving_out
        ),
        GenerationOp::Pause { name } => format!("paused moves of {name}"),
        GenerationOp::Resume { name } => format!("resumed moves of {name}"),
        GenerationOp::Cancel { name } => {
            format!("{name} is Active again; {} partitions that were leaving it are coming back", counts.moving_in)
        }
        GenerationOp::Drop { name, .. } => {
            let nodes: Vec<String> = generation
                .map(|g| {
                    map.nodes.values().filter(|n| n.generation == g.id && n.state == NodeState::Removed).map(|n| n.id.to_string()).collect()
                })
                .unwrap_or_default();
            format!("dropped {name}; its nodes ({}) hold no data any more and can be stopped", nodes.join(", "))
        }
        GenerationOp::SetRate { bytes_per_sec: 0 } => "moves are no longer rate-limited".to_owned(),
        GenerationOp::SetRate { bytes_per_sec } => format!("each node now moves at most {bytes_per_sec} bytes per second"),
    })
}

fn step(name: &str, step: GenerationStep) -> (MetaCommand, String) {
    (MetaCommand::GenerationStep { name: name.to_owned(), step }, name.to_owned())
}
